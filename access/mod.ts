/**
 * Who may call blockmend's HTTP listeners (the gateway's API, its S3 endpoint, the chunk
 * store server): token files with scopes, bearer authentication over hono's middleware,
 * the Host and Origin rules against browsers, and a deadline for request bodies. Each
 * server applies these in front of its routes and maps {@link AccessRefusedError} in its
 * one error mapping. See README.md.
 *
 * @module
 */
export { ACCESS_ERROR, type AccessErrorCode, AccessRefusedError } from "./access-errors.ts";
export { requireScopedToken, type ScopedTokenOptions } from "./bearer-scopes.ts";
export { BODY_DEADLINE_MS, bodyDeadline } from "./body-deadline.ts";
export { drainRefusedBody, REFUSAL_DRAIN_BYTES, REFUSAL_DRAIN_MS } from "./refusal-drain.ts";
export { allowedHosts, type GuardOptions, hostOfHeader, requestGuard } from "./request-guard.ts";
export {
  MAX_TOKEN_CHARS,
  MIN_TOKEN_CHARS,
  parseTokenFile,
  readClientToken,
  readTokenFile,
  type ScopedToken,
  type TokenFileRules,
} from "./token-file.ts";
