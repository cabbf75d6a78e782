/**
 * Token files: the bearer tokens a listener accepts, one a line, each with an optional
 * scope word (`TOKEN`, `TOKEN read`, `TOKEN write`). Blank lines and lines starting with
 * `#` are ignored. Parsing is strict: a token too short to be secret, a character that
 * cannot travel in `Authorization: Bearer`, an unknown scope or a repeated token is an
 * error naming the file and the line, so a typo never opens or closes a door silently.
 *
 * @module
 */
import { readFile } from "node:fs/promises";

/**
 * Shortest token accepted: 16 characters of base64 carry 96 bits, beyond guessing over
 * HTTP (`scripts/make-secrets.sh` makes 64 hex characters).
 */
export const MIN_TOKEN_CHARS = 16;

/** Longest token accepted: bounds the work of comparing one; far above any generated token. */
export const MAX_TOKEN_CHARS = 512;

/** What `Authorization: Bearer` can carry (RFC 6750 `b64token`, as hono's bearer-auth checks it). */
const TOKEN_PATTERN = /^[A-Za-z0-9._~+/-]+=*$/;

/** One accepted token and the scope it grants. */
export interface ScopedToken<S extends string = string> {
  readonly token: string;
  readonly scope: S;
}

/** How a file's lines are read. */
export interface TokenFileRules<S extends string> {
  /** Scope words a line may carry after its token; empty: none (the file decides the scope). */
  readonly scopes: readonly S[];
  /** Scope of a line without a scope word. */
  readonly defaultScope: S;
}

/**
 * Parses a token file's text. `source` names it in errors (`--token-file /etc/...`).
 *
 * @example
 * parseTokenFile("0123456789abcdef0123\nfedcba9876543210fedc read\n", "--token-file t", {
 *   scopes: ["read", "write"], defaultScope: "write",
 * }); // [{ token: "0123...", scope: "write" }, { token: "fedc...", scope: "read" }]
 */
export function parseTokenFile<S extends string>(
  text: string,
  source: string,
  rules: TokenFileRules<S>,
): ScopedToken<S>[] {
  const out: ScopedToken<S>[] = [];
  const seen = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const where = `${source}, line ${i + 1}`;
    const [token, scope, ...rest] = line.split(/\s+/) as [string, string | undefined, ...string[]];
    if (!TOKEN_PATTERN.test(token))
      throw new TypeError(`${where}: a token may hold only A-Z a-z 0-9 . _ ~ + / - (and = at its end)`);
    if (token.length < MIN_TOKEN_CHARS || token.length > MAX_TOKEN_CHARS)
      throw new TypeError(
        `${where}: a token must be ${MIN_TOKEN_CHARS} to ${MAX_TOKEN_CHARS} characters (this one has ${token.length}); make one with: openssl rand -hex 32`,
      );
    if (rest.length > 0 || (scope !== undefined && !rules.scopes.includes(scope as S))) {
      const allowed = rules.scopes.length
        ? `an optional scope (${rules.scopes.join(" or ")})`
        : "nothing (this file's scope is given by the flag)";
      throw new TypeError(
        `${where}: after the token expected ${allowed}; got "${line.slice(token.length).trim()}"`,
      );
    }
    if (seen.has(token)) throw new TypeError(`${where}: this token is listed twice`);
    seen.add(token);
    out.push({ token, scope: (scope as S | undefined) ?? rules.defaultScope });
  });
  return out;
}

/** Reads and parses a token file; an unreadable or empty file is a TypeError naming it. */
export async function readTokenFile<S extends string>(
  path: string,
  source: string,
  rules: TokenFileRules<S>,
): Promise<ScopedToken<S>[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new TypeError(`${source}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  const tokens = parseTokenFile(text, `${source} ${path}`, rules);
  if (tokens.length === 0) throw new TypeError(`${source} ${path} holds no token`);
  return tokens;
}

/**
 * The token a client sends, from a file of the same format: its first token (a scope word
 * after it is ignored: the server decides what the token may do).
 */
export async function readClientToken(path: string, source: string): Promise<string> {
  const [first] = await readTokenFile<string>(path, source, {
    scopes: ["read", "write"],
    defaultScope: "write",
  });
  return first!.token;
}
