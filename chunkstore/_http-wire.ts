/**
 * Wire vocabulary of the chunk store HTTP API shared by `server.ts` and
 * `http-store.ts`: error codes, ref version <-> ETag, and size bounds of its bodies.
 *
 * Error codes are part of the API (other tools match on them): add, never rename.
 * Every error response is `{"error": {"code": ERROR_CODE, "message": string, ...}}`.
 */

/** Stable `error.code` values and the HTTP status each travels with. */
export const ERROR_CODE = {
  /** 400: malformed hash, JSON, frame or header; a TypeError on the client. */
  BAD_REQUEST: "bad_request",
  /** 400: a value out of range (too many hashes, bad limit); a RangeError on the client. */
  OUT_OF_RANGE: "out_of_range",
  /** 401: missing or wrong bearer token. */
  UNAUTHORIZED: "unauthorized",
  /** 403: a `read` token on a route that writes (`access/`). */
  FORBIDDEN_SCOPE: "forbidden_scope",
  /** 403: a `Host` that is none of the server's names (DNS rebinding). */
  FORBIDDEN_HOST: "forbidden_host",
  /** 403: a state-changing request from a web page of another origin. */
  FORBIDDEN_ORIGIN: "forbidden_origin",
  /** 403: a POST with a body type browsers send cross-site (text/plain, forms). */
  FORBIDDEN_CONTENT_TYPE: "forbidden_content_type",
  /** 408: the request body did not arrive in time (slow-drip client). */
  REQUEST_TIMEOUT: "request_timeout",
  /** 404: no such route. */
  NOT_FOUND: "not_found",
  /** 404: the chunk is not in the store. */
  CHUNK_NOT_FOUND: "chunk_not_found",
  /** 404: the ref does not exist. */
  REF_NOT_FOUND: "ref_not_found",
  /** 405: the store does not do this (for example refs on a store without refs). */
  UNSUPPORTED: "unsupported_operation",
  /** 405: a chunk write sent to a witness, which keeps refs only. */
  WITNESS_NO_CHUNKS: "witness_no_chunks",
  /** 409: the request expected another store identity (a wiped or replaced disk); carries `identity`. */
  IDENTITY_MISMATCH: "identity_mismatch",
  /** 412: compare-and-set lost; the body also carries `current`. */
  REF_CONFLICT: "ref_conflict",
  /** 413: body over the route's limit. */
  PAYLOAD_TOO_LARGE: "payload_too_large",
  /** 422: chunk bytes do not hash to the address; nothing was stored. Carries `hash`, `actual`. */
  HASH_MISMATCH: "hash_mismatch",
  /** 428: a ref write without If-Match or If-None-Match. */
  PRECONDITION_REQUIRED: "precondition_required",
  /** 500: the stored copy failed verification; its bytes are never sent. Carries `hash`. */
  CHUNK_CORRUPT: "chunk_corrupt",
  /** 503: the backend behind the server is unavailable. */
  STORE_UNAVAILABLE: "store_unavailable",
  /** 507: the store is full; nothing was stored. */
  STORE_FULL: "store_full",
  /** 500: anything else (a bug); the server logs it. */
  INTERNAL: "internal",
} as const;

export type ErrorCode = (typeof ERROR_CODE)[keyof typeof ERROR_CODE];

/** The JSON body of every error response. */
export interface ErrorBody {
  readonly error: { readonly code: ErrorCode; readonly message: string; readonly [extra: string]: unknown };
}

/**
 * Request header naming the store identity the client expects. The server refuses a
 * request whose header names another identity than its store's (409 identity_mismatch),
 * so nothing reaches a wiped or replaced store that the client takes for the old one.
 */
export const EXPECT_IDENTITY_HEADER = "x-blockmend-expect-identity";

/** Largest JSON request body (has, batch-get): MAX_BATCH_HASHES hashes as JSON are ~70 KiB. */
export const MAX_JSON_BYTES = 256 * 1024;

/** Default and largest page of `GET /v1/chunks`: a 10000-hash page is ~670 KiB of JSON. */
export const LIST_DEFAULT_LIMIT = 1000;
export const LIST_MAX_LIMIT = 10_000;

/**
 * A ref version as an HTTP entity tag. Versions are opaque strings; percent-encoding
 * keeps any of them within ETag syntax (no `"` or spaces) and is the identity for the
 * usual alphanumeric versions.
 */
export function etagOf(version: string): string {
  return `"${encodeURIComponent(version)}"`;
}

/**
 * A ref write's guard (chunk-store.ts `RefGuard`): `<ref name> "<version>"`, or
 * `<ref name> absent` for a ref that must not exist. The store checks it with the write.
 */
export const REF_GUARD_HEADER = "blockmend-ref-guard";

/** A guard as the header's value. */
export function encodeRefGuard(guard: { name: string; version: string | null }): string {
  return `${guard.name} ${guard.version === null ? "absent" : etagOf(guard.version)}`;
}

/** The guard in a header value, or null when it is not one (the name is checked by the store). */
export function decodeRefGuard(value: string): { name: string; version: string | null } | null {
  const m = /^\s*(\S+)\s+(absent|"[^"]*")\s*$/.exec(value);
  if (!m) return null;
  if (m[2] === "absent") return { name: m[1]!, version: null };
  const version = versionOfEtag(m[2]);
  return version === null ? null : { name: m[1]!, version };
}

/** The version inside one strong entity tag, or null when `tag` is not one. */
export function versionOfEtag(tag: string | null | undefined): string | null {
  if (!tag) return null;
  const m = /^\s*"([^"]*)"\s*$/.exec(tag);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return null;
  }
}
