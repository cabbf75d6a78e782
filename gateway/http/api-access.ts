/**
 * Who may call the gateway's HTTP API: the route table of what a status token may do,
 * and the middleware that stands in front of every route (`access/`): the Host and
 * Origin rules, then the bearer token (when the gateway has token files), then the body
 * deadline. `createGatewayApp` takes the result as its `guard`.
 *
 * Scopes, weakest first: `status` (tokens of `--status-token-file`: the read-only status
 * routes of {@link STATUS_ROUTES}) and `full` (tokens of `--token-file`: every route).
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { requireScopedToken } from "../../access/bearer-scopes.ts";
import { bodyDeadline } from "../../access/body-deadline.ts";
import { drainRefusedBody } from "../../access/refusal-drain.ts";
import { requestGuard } from "../../access/request-guard.ts";
import type { ScopedToken } from "../../access/token-file.ts";

/** The API's scopes, weakest first. */
export const API_SCOPES = ["status", "full"] as const;
export type ApiScope = (typeof API_SCOPES)[number];

/** A route by method and path pattern (`:name` matches one path segment). */
export interface RouteRule {
  readonly method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  readonly path: string;
}

/**
 * The routes anyone who passes the Host and Origin rules may call without a token: the
 * dashboard's page and its static files. They are the same for everyone and carry no data
 * (every datum comes from the API with the token the user pastes into the page).
 */
export const PUBLIC_ROUTES: readonly RouteRule[] = [
  { method: "GET", path: "/" },
  { method: "GET", path: "/dashboard/:file" },
];

/**
 * The routes a status token may call (HEAD counts as GET); every other route needs a full
 * token. One line per route.
 */
export const STATUS_ROUTES: readonly RouteRule[] = [
  { method: "GET", path: "/v1" },
  { method: "GET", path: "/v1/health" },
  { method: "GET", path: "/v1/events" },
  { method: "GET", path: "/v1/gc" },
  { method: "GET", path: "/v1/openapi.json" },
  { method: "GET", path: "/v1/heal" },
  { method: "GET", path: "/v1/stores" },
  { method: "GET", path: "/v1/stores/:id/safe-to-remove" },
  { method: "GET", path: "/metrics" },
];

/** True if `rule` matches the request line. */
function matches(rule: RouteRule, method: string, pathname: string): boolean {
  if (rule.method !== (method === "HEAD" ? "GET" : method)) return false;
  const want = rule.path.split("/");
  const got = pathname.split("/");
  return (
    want.length === got.length && want.every((w, i) => (w.startsWith(":") ? got[i] !== "" : w === got[i]))
  );
}

/** True if the request is to one of {@link PUBLIC_ROUTES}. */
export function isPublic(method: string, pathname: string): boolean {
  return PUBLIC_ROUTES.some((r) => matches(r, method, pathname));
}

/** The scope a request needs: `status` for the routes of {@link STATUS_ROUTES}, else `full`. */
export function scopeOf(
  method: string,
  pathname: string,
  table: readonly RouteRule[] = STATUS_ROUTES,
): ApiScope {
  return table.some((r) => matches(r, method, pathname)) ? "status" : "full";
}

/** What the API's listener admits. */
export interface ApiAccessOptions {
  /** The listen address (for the Host rule). */
  readonly hostname: string;
  /** `--public-name`s: more names clients reach it by. */
  readonly publicNames?: readonly string[];
  /** Accepted tokens; none: no authentication (only allowed on loopback, checked by the CLI). */
  readonly tokens?: readonly ScopedToken<ApiScope>[];
  /** Deadline of a request body in ms (default `BODY_DEADLINE_MS`). */
  readonly bodyDeadlineMs?: number;
}

/**
 * The middleware in front of every route, in order.
 *
 * @example
 * createGatewayApp(images, { guard: apiGuard({ hostname: "127.0.0.1", tokens }) });
 */
export function apiGuard(options: ApiAccessOptions): MiddlewareHandler[] {
  const chain: MiddlewareHandler[] = [drainRefusedBody(), requestGuard(options)];
  if (options.tokens && options.tokens.length > 0) {
    const tokenCheck = requireScopedToken<ApiScope>({
      tokens: options.tokens,
      ladder: API_SCOPES,
      needs: (c) => scopeOf(c.req.method, new URL(c.req.url).pathname),
      describe: (s) =>
        s === "status"
          ? `read-only status: ${STATUS_ROUTES.map((r) => `${r.method} ${r.path}`).join(", ")}`
          : "every route",
    });
    chain.push((c, next) =>
      isPublic(c.req.method, new URL(c.req.url).pathname) ? next() : tokenCheck(c, next),
    );
  }
  chain.push(bodyDeadline(options.bodyDeadlineMs));
  return chain;
}
