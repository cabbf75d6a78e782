/**
 * The one mapping from errors thrown while serving the gateway's HTTP API to an HTTP
 * status and a stable `{"error": {"code", "message"}}` body (codes in `http-wire.ts`).
 * Routes throw; the app's `onError` calls {@link errorResponse}; nothing else builds
 * error responses.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { AccessRefusedError } from "../../access/access-errors.ts";
import {
  ChunkCorruptError,
  ChunkNotFoundError,
  StoreFullError,
  StoreUnavailableError,
} from "../../chunkstore/errors.ts";
import {
  ImageDeletedError,
  ImageExistsError,
  ImageNotFoundError,
  NotEnoughReplicasError,
  ReadOnlyError,
  StaleEpochError,
} from "../errors.ts";
import { RegisterUnavailableError } from "../register/register.ts";
import { API_ERROR, type ApiErrorBody, type ApiErrorCode } from "./http-wire.ts";

/** A `Range` header that starts past the end of the image (answered 416 with `Content-Range: bytes *\/size`). */
export class RangeNotSatisfiableError extends RangeError {
  override readonly name = "RangeNotSatisfiableError";
  readonly size: number;

  constructor(range: string, size: number) {
    super(`Range "${range}" is outside the image of ${size} bytes`);
    this.size = size;
  }
}

/** What an error becomes on the wire. */
export interface HttpError {
  readonly status: ContentfulStatusCode;
  readonly code: ApiErrorCode;
  readonly message: string;
  readonly headers?: Record<string, string>;
}

/** The one mapping from a thrown value to status, code and message. Unknown errors are 500 and logged. */
export function httpErrorOf(err: unknown): HttpError {
  const message = err instanceof Error ? err.message : String(err);
  // The codes of `access/` are API_ERROR codes too (the same strings on every listener).
  if (err instanceof AccessRefusedError)
    return { status: err.status, code: err.code, message, headers: { ...err.headers } };
  if (err instanceof HTTPException) {
    if (err.status === 404) return { status: 404, code: API_ERROR.NOT_FOUND, message };
    if (err.status === 413) return { status: 413, code: API_ERROR.PAYLOAD_TOO_LARGE, message };
    if (err.status >= 400 && err.status < 500) {
      return { status: err.status as ContentfulStatusCode, code: API_ERROR.BAD_REQUEST, message };
    }
  }
  if (err instanceof ImageNotFoundError) return { status: 404, code: API_ERROR.IMAGE_NOT_FOUND, message };
  if (err instanceof ImageExistsError) return { status: 409, code: API_ERROR.IMAGE_EXISTS, message };
  // 409, not 403: the refusal comes from the target's state (a frozen snapshot), not from who asks.
  if (err instanceof ReadOnlyError) return { status: 409, code: API_ERROR.READ_ONLY, message };
  if (err instanceof StaleEpochError) return { status: 409, code: API_ERROR.STALE_EPOCH, message };
  if (err instanceof ImageDeletedError) return { status: 409, code: API_ERROR.IMAGE_DELETED, message };
  if (err instanceof RegisterUnavailableError)
    return { status: 503, code: API_ERROR.REGISTER_UNAVAILABLE, message };
  if (err instanceof NotEnoughReplicasError)
    return { status: 503, code: API_ERROR.NOT_ENOUGH_REPLICAS, message };
  if (err instanceof StoreUnavailableError)
    return { status: 503, code: API_ERROR.STORE_UNAVAILABLE, message };
  if (err instanceof ChunkNotFoundError || err instanceof ChunkCorruptError) {
    return { status: 503, code: API_ERROR.CHUNK_UNAVAILABLE, message };
  }
  if (err instanceof StoreFullError) return { status: 507, code: API_ERROR.STORE_FULL, message };
  if (err instanceof RangeNotSatisfiableError) {
    return {
      status: 416,
      code: API_ERROR.RANGE_NOT_SATISFIABLE,
      message,
      headers: { "content-range": `bytes */${err.size}` },
    };
  }
  if (err instanceof RangeError) return { status: 400, code: API_ERROR.OUT_OF_RANGE, message };
  if (err instanceof TypeError || err instanceof SyntaxError) {
    return { status: 400, code: API_ERROR.BAD_REQUEST, message };
  }
  console.error("gateway HTTP API: unexpected error", err);
  return { status: 500, code: API_ERROR.INTERNAL, message: `Internal error: ${message}` };
}

/** The JSON response for `err`. */
export function errorResponse(c: Context, err: unknown): Response {
  const e = httpErrorOf(err);
  const body: ApiErrorBody = { error: { code: e.code, message: e.message } };
  return c.json(body, e.status, e.headers);
}
