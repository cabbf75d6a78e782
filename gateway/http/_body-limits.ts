/**
 * Body limits of the API's routes, over hono's body-limit: every route that reads a body
 * says how large it may be, and every route that takes none refuses one (413 through the
 * one error mapping). `test/gateway/http/hostile-client.test.ts` sends every route of the
 * OpenAPI document a body over its limit.
 */
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { MAX_JSON_BYTES } from "./http-wire.ts";

/** Body limit for one route; overflow becomes a 413 through the one error mapping. */
export function limit(maxSize: number): MiddlewareHandler {
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new HTTPException(413, {
        message:
          maxSize === 0 ? "This route takes no request body" : `Request body is larger than ${maxSize} bytes`,
      });
    },
  });
}

/** The limit of JSON routes. */
export const jsonLimit = limit(MAX_JSON_BYTES);

/** For routes that take no body (DELETE, zeroing): any body is refused before it is read. */
export const noBody = limit(0);
