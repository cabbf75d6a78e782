/**
 * Calls to the gateway's API with the bearer token the user pasted, if any. The token
 * lives in this tab's sessionStorage only (gone when the tab closes) and travels as an
 * `Authorization` header on `fetch`, never as a cookie: no other site can make the
 * browser send it, so there is nothing to forge (no CSRF surface). Without a stored
 * token, requests go without one (a gateway on loopback without a token file asks none).
 */

const TOKEN_KEY = "blockmend.apiToken";

/** The stored token, or null. */
export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: no token
  }
}

/** Stores `token` (trimmed) for this tab; an empty one forgets it. */
export function setToken(token) {
  const t = (token ?? "").trim();
  if (t === "") sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, t);
}

/** Request headers with the token, when there is one. */
export function authHeaders(extra = {}) {
  const token = getToken();
  return token ? { ...extra, authorization: `Bearer ${token}` } : { ...extra };
}

/** The API answered 401 or 403: a (valid) token is needed. */
export class AuthRequiredError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "AuthRequiredError";
    this.status = status;
  }
}

/** The API answered with an error; `message` is the gateway's own. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** The gateway's error message of a failed response, or a line naming the status. */
async function errorOf(res) {
  try {
    const body = await res.json();
    if (body?.error?.message) return { code: body.error.code, message: body.error.message };
  } catch {
    // not JSON
  }
  return { code: null, message: `HTTP ${res.status} ${res.statusText}` };
}

/**
 * Sends `method path` with a JSON `body`; resolves to the JSON answer (null for 204).
 * Throws AuthRequiredError on 401/403, ApiError on any other failure.
 */
export async function apiJson(method, path, body) {
  const init = { method, headers: authHeaders({ accept: "application/json" }), cache: "no-store" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401 || res.status === 403) {
    const e = await errorOf(res);
    throw new AuthRequiredError(res.status, e.message);
  }
  if (!res.ok) {
    const e = await errorOf(res);
    throw new ApiError(res.status, e.code, e.message);
  }
  return res.status === 204 ? null : res.json();
}
