/**
 * Refusals of a request for who sent it or from where, before any route runs. Each
 * server maps them to its own wire codes in its one error mapping (`gateway/http/http-errors.ts`,
 * `chunkstore/server.ts`); the `code` values are the same on both.
 *
 * @module
 */

/** Why a request was refused, as the `error.code` both APIs send. Add, never rename. */
export const ACCESS_ERROR = {
  /** 401: no `Authorization: Bearer` header, a malformed one, or a token this listener does not know. */
  UNAUTHORIZED: "unauthorized",
  /** 403: a known token whose scope does not cover the route (a read or status token writing). */
  FORBIDDEN_SCOPE: "forbidden_scope",
  /** 403: a `Host` header naming none of this listener's names (DNS rebinding). */
  FORBIDDEN_HOST: "forbidden_host",
  /** 403: a state-changing request from another origin (a web page's cross-site request). */
  FORBIDDEN_ORIGIN: "forbidden_origin",
  /** 403: a state-changing request with a body type browsers send cross-site without asking. */
  FORBIDDEN_CONTENT_TYPE: "forbidden_content_type",
  /** 408: the request body did not arrive within the deadline (a slow-drip client). */
  REQUEST_TIMEOUT: "request_timeout",
} as const;

export type AccessErrorCode = (typeof ACCESS_ERROR)[keyof typeof ACCESS_ERROR];

/** A request refused before its route ran; nothing was read or changed. */
export class AccessRefusedError extends Error {
  override readonly name = "AccessRefusedError";
  readonly status: 401 | 403 | 408;
  readonly code: AccessErrorCode;
  /** Response headers the refusal needs (`WWW-Authenticate` on a 401). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    status: 401 | 403 | 408,
    code: AccessErrorCode,
    message: string,
    headers: Record<string, string> = {},
  ) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}
