/**
 * A deadline for receiving a request body: a client that drips its body a byte at a
 * time is cut off with 408 instead of holding a request (and its buffer) for hours.
 * The body is passed on as a stream, never buffered here; the limit on its size is
 * hono's body-limit, per route.
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { ACCESS_ERROR, AccessRefusedError } from "./access-errors.ts";

/**
 * Default deadline for a whole body: 60 s carries the largest body blockmend takes
 * (64 MiB) at 1.1 MB/s, and the CLI's 4 MiB pieces at 70 KB/s.
 */
export const BODY_DEADLINE_MS = 60_000;

/**
 * The middleware: the body must have arrived `ms` after the request started, else reading
 * it fails with a 408 refusal (mapped by the server's error mapping).
 */
export function bodyDeadline(ms: number = BODY_DEADLINE_MS): MiddlewareHandler {
  if (!(ms > 0)) throw new RangeError(`Body deadline must be positive; got ${ms}`);
  return async (c, next) => {
    const body = c.req.raw.body;
    if (!body) return next();
    const reader = body.getReader();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timed = new ReadableStream<Uint8Array>({
      start(controller) {
        timer = setTimeout(() => {
          const err = new AccessRefusedError(
            408,
            ACCESS_ERROR.REQUEST_TIMEOUT,
            `The request body did not arrive within ${ms / 1000} s`,
            { connection: "close" },
          );
          controller.error(err);
          reader.cancel(err).catch(() => {});
        }, ms);
      },
      async pull(controller) {
        const r = await reader.read();
        if (r.done) {
          clearTimeout(timer);
          controller.close();
        } else controller.enqueue(r.value);
      },
      cancel(reason) {
        clearTimeout(timer);
        return reader.cancel(reason);
      },
    });
    c.req.raw = new Request(c.req.raw, { body: timed, duplex: "half" } as RequestInit);
    try {
      await next();
    } finally {
      clearTimeout(timer);
    }
  };
}
