/**
 * The flags of `blockmend up` and `blockmend gateway` that decide who may call the HTTP
 * API and the S3 endpoint, and over what: `--token-file`, `--status-token-file`,
 * `--public-name` (repeatable), HTTPS from the NBD flags' `--tls-dir`, and for the way
 * to the stores `--store-ca` and `--store-token-file [ID=]FILE` (repeatable). A reachable
 * `--http` without a token file is refused here, before anything starts.
 *
 * @module
 */
import { resolve } from "node:path";
import { readClientToken, readTokenFile, type ScopedToken } from "../access/token-file.ts";
import type { ApiScope } from "../gateway/http/api-access.ts";
import type { HttpsCredentials } from "../runtime/serve-http.ts";
import { loadCaFile, loadHttpsCredentials } from "../runtime/tls-files.ts";
import { isLoopback } from "./listen-address.ts";
import { UsageError } from "./strict-flags.ts";

/** citty definitions; spread into a command's `args`. */
export const API_SECURITY_ARGS = {
  "token-file": {
    type: "string",
    valueHint: "FILE",
    description:
      "Tokens (one a line) every HTTP API request must carry as Authorization: Bearer; required unless --http is loopback",
  },
  "status-token-file": {
    type: "string",
    valueHint: "FILE",
    description:
      "Tokens (one a line) admitted to the read-only status routes only (/v1/heal, /v1/stores, /metrics, ...)",
  },
  "public-name": {
    type: "string",
    valueHint: "NAME",
    description: "A name clients reach the HTTP API (and S3 endpoint) by, accepted in Host (repeat for each)",
  },
} as const;

/** citty definitions of the flags for reaching the stores; spread into `gateway`'s `args`. */
export const STORE_ACCESS_ARGS = {
  "store-token-file": {
    type: "string",
    valueHint: "[ID=]FILE",
    description: "Bearer token for the http(s) stores: FILE for all, or ID=FILE for store ID (repeatable)",
  },
  "store-ca": {
    type: "string",
    valueHint: "FILE",
    description: "CA certificate(s) (PEM) that https:// stores' certificates must chain to",
  },
} as const;

/** All values of a repeatable flag, as given (citty keeps only the last one). */
export function repeatedFlag(flag: string, argv: readonly string[]): string[] {
  const out: string[] = [];
  argv.forEach((a, i) => {
    if (a === flag && argv[i + 1] !== undefined) out.push(argv[i + 1]!);
    else if (a.startsWith(`${flag}=`)) out.push(a.slice(flag.length + 1));
  });
  return out;
}

/** What the flags give `startGateway`. */
export interface ApiSecurity {
  readonly httpAccess: { tokens?: ScopedToken<ApiScope>[]; publicNames?: string[] };
  /** HTTPS credentials from `--tls-dir`, for the HTTP API and the S3 endpoint. */
  readonly tls?: HttpsCredentials;
}

/**
 * Reads `--token-file`, `--status-token-file`, `--public-name` and the HTTPS credentials
 * of `--tls-dir`. Throws {@link UsageError} (exit 2, one line) for a reachable `--http`
 * without a token file, and a TypeError naming the file for a bad one.
 */
export async function readApiSecurityFlags(
  args: Record<string, unknown>,
  rawArgs: readonly string[],
  http: { hostname: string },
): Promise<ApiSecurity> {
  const str = (k: string) => (typeof args[k] === "string" ? (args[k] as string) : undefined);
  const tokens: ScopedToken<ApiScope>[] = [];
  const full = str("token-file");
  const status = str("status-token-file");
  if (full)
    tokens.push(
      ...(await readTokenFile(full, "--token-file", { scopes: [], defaultScope: "full" as ApiScope })),
    );
  if (status)
    tokens.push(
      ...(await readTokenFile(status, "--status-token-file", {
        scopes: [],
        defaultScope: "status" as ApiScope,
      })),
    );
  if (status && !full)
    throw new UsageError("--status-token-file needs --token-file too (else nobody could change anything)");
  if (tokens.length === 0 && !isLoopback(http.hostname)) {
    throw new UsageError(
      `--http ${http.hostname} is reachable from other machines: give --token-file FILE (one token a line; every request then needs it), or listen on 127.0.0.1`,
    );
  }
  const publicNames = repeatedFlag("--public-name", rawArgs);
  for (const n of publicNames)
    if (!/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})$/.test(n))
      throw new UsageError(`--public-name "${n}" is not a host name or address`);
  const dir = str("tls-dir");
  const tls = dir ? await loadHttpsCredentials(resolve(dir)) : undefined;
  return {
    httpAccess: { ...(tokens.length ? { tokens } : {}), ...(publicNames.length ? { publicNames } : {}) },
    ...(tls ? { tls } : {}),
  };
}

/** The tokens and CA for reaching the stores. */
export interface StoreAccess {
  readonly storeToken?: string;
  readonly storeTokens?: Record<string, string>;
  readonly storeCa?: string;
}

/**
 * Reads `--store-token-file` (each `ID=FILE` for a configured store id, or one `FILE` for
 * every store) and `--store-ca`.
 */
export async function readStoreAccessFlags(
  args: Record<string, unknown>,
  rawArgs: readonly string[],
  storeIds: readonly string[],
): Promise<StoreAccess> {
  let storeToken: string | undefined;
  const storeTokens: Record<string, string> = {};
  for (const value of repeatedFlag("--store-token-file", rawArgs)) {
    const m = /^([A-Za-z0-9_-]{1,32})=(.+)$/.exec(value);
    if (m && storeIds.includes(m[1]!)) {
      if (storeTokens[m[1]!] !== undefined)
        throw new UsageError(`--store-token-file gives store ${m[1]} twice`);
      storeTokens[m[1]!] = await readClientToken(m[2]!, `--store-token-file ${m[1]}=`);
    } else {
      if (storeToken !== undefined)
        throw new UsageError(
          "--store-token-file FILE (for every store) is given twice; use ID=FILE per store",
        );
      storeToken = await readClientToken(value, "--store-token-file");
    }
  }
  const ca = typeof args["store-ca"] === "string" ? (args["store-ca"] as string) : undefined;
  return {
    ...(storeToken !== undefined ? { storeToken } : {}),
    ...(Object.keys(storeTokens).length ? { storeTokens } : {}),
    ...(ca ? { storeCa: await loadCaFile(ca, "--store-ca") } : {}),
  };
}
