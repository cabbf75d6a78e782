/**
 * Bearer tokens with scopes, over hono's bearer-auth middleware: every request needs
 * `Authorization: Bearer <token>` with a token of the listener's table, and the token's
 * scope must cover what the route needs (a route table the server declares). A missing,
 * malformed or unknown token is 401; a known token of too small a scope is 403
 * `forbidden_scope`, so a client can tell "wrong credentials" from "not allowed".
 *
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { HTTPException } from "hono/http-exception";
import { timingSafeEqual } from "hono/utils/buffer";
import { ACCESS_ERROR, AccessRefusedError } from "./access-errors.ts";
import type { ScopedToken } from "./token-file.ts";

/** Options of {@link requireScopedToken}. */
export interface ScopedTokenOptions<S extends string> {
  /** Accepted tokens and their scopes. */
  readonly tokens: readonly ScopedToken<S>[];
  /** Scopes from the weakest to the strongest: a scope covers itself and every one before it. */
  readonly ladder: readonly S[];
  /** The scope a request needs (from the server's route table). */
  readonly needs: (c: Context) => S;
  /** Says what a scope may do, for the 403 message ("read scope: GET, HEAD, has and batch-get"). */
  readonly describe: (scope: S) => string;
}

/**
 * The middleware. Tokens are compared in constant time (hono's `timingSafeEqual`), each
 * against every accepted token, so the time says nothing about which one nearly matched.
 *
 * @example
 * app.use("*", requireScopedToken({ tokens, ladder: ["read", "write"], needs: (c) => ..., describe }));
 */
export function requireScopedToken<S extends string>(options: ScopedTokenOptions<S>): MiddlewareHandler {
  const { tokens, ladder } = options;
  if (tokens.length === 0) throw new TypeError("requireScopedToken needs at least one token");
  for (const t of tokens)
    if (!ladder.includes(t.scope))
      throw new TypeError(`Token scope "${t.scope}" is not one of ${ladder.join(", ")}`);
  const scopes = new WeakMap<Context, S>();
  const auth = bearerAuth({
    verifyToken: async (presented, c) => {
      let found: S | undefined;
      for (const t of tokens)
        if ((await timingSafeEqual(t.token, presented)) && found === undefined) found = t.scope;
      if (found !== undefined) scopes.set(c, found);
      return found !== undefined;
    },
  });
  return async (c, next) => {
    let passed = false;
    try {
      await auth(c, async () => {
        passed = true;
      });
    } catch (err) {
      if (passed || !(err instanceof HTTPException)) throw err;
      throw refusalOf(c, err);
    }
    const has = scopes.get(c)!;
    const needed = options.needs(c);
    if (ladder.indexOf(has) < ladder.indexOf(needed)) {
      throw new AccessRefusedError(
        403,
        ACCESS_ERROR.FORBIDDEN_SCOPE,
        `This token has the ${has} scope (${options.describe(has)}); ${c.req.method} ${new URL(c.req.url).pathname} needs the ${needed} scope`,
      );
    }
    await next();
  };
}

/** hono's bearer-auth failure as our refusal, with its `WWW-Authenticate` challenge. */
function refusalOf(c: Context, err: HTTPException): AccessRefusedError {
  const challenge = err.getResponse().headers.get("www-authenticate") ?? "Bearer";
  const header = c.req.header("authorization");
  const message =
    header === undefined
      ? "Missing Authorization: Bearer <token> header"
      : err.status === 400
        ? "The Authorization header is not Bearer <token>"
        : "Wrong bearer token";
  return new AccessRefusedError(401, ACCESS_ERROR.UNAUTHORIZED, message, { "www-authenticate": challenge });
}
