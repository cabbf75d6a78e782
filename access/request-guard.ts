/**
 * Defences of an HTTP listener against the browsers of its own users: a web page must not
 * be able to drive a blockmend API on loopback (or on a private network) through the
 * user's browser.
 *
 * - DNS rebinding: a page's own name made to resolve to 127.0.0.1 reaches the listener
 *   with `Host: evil.example`. A `Host` other than the listener's own names is refused
 *   (403 `forbidden_host`). The names: the listen address, `localhost`, `127.0.0.1`,
 *   `[::1]`, every `--public-name`, and on a wildcard address (0.0.0.0, ::) the
 *   machine's interface addresses. The check is on for a loopback listener and for any
 *   listener given a public name; a listener on another address without one requires a
 *   token anyway, which a rebinding page does not have.
 * - Cross-site requests: a state-changing request (POST, PUT, PATCH, DELETE) whose
 *   `Origin` is not the listener's own origin is refused (403 `forbidden_origin`);
 *   requests without an `Origin` (curl, the CLI, gateways) pass that check. A POST whose
 *   body type a browser sends cross-site without a preflight (`text/plain`,
 *   `application/x-www-form-urlencoded`, `multipart/form-data`) is refused too (403
 *   `forbidden_content_type`), whatever its Origin says (old browsers send none):
 *   blockmend's POST routes take JSON and `application/octet-stream`. PUT, PATCH and
 *   DELETE need a CORS preflight from any web page, which these servers never grant, so
 *   a browser cannot send them cross-site at all; their body types are the routes' business.
 *
 * @module
 */

import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import type { MiddlewareHandler } from "hono";
import { ACCESS_ERROR, AccessRefusedError } from "./access-errors.ts";

/** Methods that change something. */
const STATE_CHANGING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** The one state-changing method a browser sends cross-site without a preflight (Fetch standard, "CORS-safelisted method"). */
const NO_PREFLIGHT_METHOD = "POST";

/** Body types a browser sends cross-site without a CORS preflight (Fetch standard, "CORS-safelisted request-header"). */
const NO_PREFLIGHT_TYPES = new Set([
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data",
]);

/** Names every listener answers to, besides its listen address. */
const LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1"] as const;

/** Where a listener listens and the names it is reached by. */
export interface GuardOptions {
  /** The listen address (`127.0.0.1`, `0.0.0.0`, `::`, a name); unset: no Host rule (an app served elsewhere, tests). */
  readonly hostname?: string;
  /** Names clients use for it (`--public-name`): a proxy's name, a DNS name, an address. */
  readonly publicNames?: readonly string[];
  /** Also accept every subdomain of these (the S3 endpoint's virtual-host buckets under `--s3-domain`). */
  readonly subdomainsOf?: readonly string[];
  /** Check Origin and body types too (default true; the S3 endpoint's requests are signed, so it checks Host only). */
  readonly browserRules?: boolean;
}

/** A lowercase host name or address without brackets or a trailing dot. */
function normalHost(host: string): string {
  return host
    .replace(/^\[|\]$/g, "")
    .replace(/\.$/, "")
    .toLowerCase();
}

/** True for addresses only this machine can reach. */
function isLoopbackAddress(host: string): boolean {
  const h = normalHost(host);
  if (h === "localhost") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  return h === "::1";
}

/** The host name of a `Host` header value (`name:port`, `[v6]:port`), or null if malformed. */
export function hostOfHeader(value: string): string | null {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]\s]+)(?::\d{1,5})?$/.exec(value.trim());
  return m ? normalHost(m[1]!) : null;
}

/**
 * The names a listener accepts in `Host`, or null when the Host check is off (see the
 * module doc).
 */
export function allowedHosts(options: GuardOptions): ReadonlySet<string> | null {
  if (options.hostname === undefined) return null;
  const publicNames = (options.publicNames ?? []).map(normalHost);
  const listen = normalHost(options.hostname);
  if (!isLoopbackAddress(listen) && publicNames.length === 0 && !options.subdomainsOf?.length) return null;
  const names = new Set<string>([
    listen,
    ...LOOPBACK_NAMES,
    ...publicNames,
    ...(options.subdomainsOf ?? []).map(normalHost),
  ]);
  if (listen === "0.0.0.0" || listen === "::") {
    for (const list of Object.values(networkInterfaces()))
      for (const a of list ?? []) names.add(normalHost(a.address));
  }
  return names;
}

/**
 * The guard as hono middleware; put it first, before authentication, so a refused request
 * costs nothing.
 *
 * @example
 * app.use("*", requestGuard({ hostname: "127.0.0.1", publicNames: ["blockmend.example"] }));
 */
export function requestGuard(options: GuardOptions): MiddlewareHandler {
  const hosts = allowedHosts(options);
  const parents = (options.subdomainsOf ?? []).map((d) => `.${normalHost(d)}`);
  const browserRules = options.browserRules !== false;
  return async (c, next) => {
    const hostHeader = c.req.header("host") ?? new URL(c.req.url).host;
    if (hosts) {
      const host = hostOfHeader(hostHeader);
      if (host === null || !(hosts.has(host) || parents.some((p) => host.endsWith(p)))) {
        throw new AccessRefusedError(
          403,
          ACCESS_ERROR.FORBIDDEN_HOST,
          `Host "${hostHeader}" is not a name of this server (DNS rebinding?); use ${[...hosts].slice(0, 4).join(", ")}, or start it with --public-name NAME`,
        );
      }
    }
    if (browserRules && STATE_CHANGING.has(c.req.method)) {
      const origin = c.req.header("origin");
      if (origin !== undefined && !sameOrigin(origin, new URL(c.req.url).protocol, hostHeader)) {
        throw new AccessRefusedError(
          403,
          ACCESS_ERROR.FORBIDDEN_ORIGIN,
          `A ${c.req.method} from origin ${origin} is refused: only this server's own pages and clients without an Origin may change anything`,
        );
      }
      const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
      if (c.req.method === NO_PREFLIGHT_METHOD && NO_PREFLIGHT_TYPES.has(type)) {
        throw new AccessRefusedError(
          403,
          ACCESS_ERROR.FORBIDDEN_CONTENT_TYPE,
          `A ${c.req.method} with Content-Type ${type} is refused (web pages send it cross-site unasked); send application/json or application/octet-stream`,
        );
      }
    }
    await next();
  };
}

/** True if `origin` is `protocol//host` of the request itself. */
function sameOrigin(origin: string, protocol: string, host: string): boolean {
  try {
    return new URL(origin).origin === new URL(`${protocol}//${host}`).origin;
  } catch {
    return false; // "null" (a sandboxed page, a file) or garbage
  }
}
