/**
 * `fetch` that trusts a given CA (PEM) for `https://` URLs, on each runtime: Bun takes
 * `tls: { ca }` in the request options; Deno takes an HTTP client made with
 * `Deno.createHttpClient({ caCerts })`. Without a CA it is the runtime's own `fetch`
 * (the system's CAs). Either way a certificate that does not verify is refused: there is
 * no option to skip verification.
 *
 * @module
 */
import { runtimeGlobal, runtimeKey } from "./runtime-key.ts";

/** A fetch function (the web standard's signature). */
export type Fetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

interface DenoHttp {
  createHttpClient(options: { caCerts: string[] }): unknown;
}

/**
 * A fetch that verifies servers against `ca` (PEM) instead of the system's CAs.
 *
 * @example
 * const f = fetchTrusting(await loadCaFile("/etc/blockmend/ca-cert.pem", "--store-ca"));
 * await f("https://store-a.example:9400/v1/health");
 */
export function fetchTrusting(ca?: string): Fetch {
  if (ca === undefined) return (input, init) => fetch(input, init);
  const runtime = runtimeKey();
  if (runtime === "bun") {
    return (input, init) => fetch(input, { ...init, tls: { ca } } as RequestInit);
  }
  if (runtime === "deno") {
    const client = runtimeGlobal<DenoHttp>("deno")!.createHttpClient({ caCerts: [ca] });
    return (input, init) => fetch(input, { ...init, client } as RequestInit);
  }
  throw new Error(`A private CA for fetch is not supported on ${runtime}: run under Bun or Deno`);
}

/**
 * True if `error` (thrown by fetch) is a failed TLS handshake or certificate check:
 * Bun's OpenSSL-style codes, Deno's rustls messages.
 */
export function isTlsError(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown; cause?: unknown } | null;
  const text = `${String(e?.code ?? "")} ${String(e?.message ?? "")} ${String((e?.cause as { message?: unknown })?.message ?? "")}`;
  return /CERT|SSL|TLS|certificate|self[- ]signed|UnknownIssuer|handshake|unable to verify|corrupt message|InvalidContentType/i.test(
    text,
  );
}

/** The most specific words of a fetch error: Deno's cause ("invalid peer certificate: UnknownIssuer"), else its message. */
export function fetchErrorDetail(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown; cause?: { message?: unknown } } | null;
  const cause = typeof e?.cause?.message === "string" ? e.cause.message : undefined;
  const message = typeof e?.message === "string" ? e.message : String(error);
  const code = typeof e?.code === "string" ? `${e.code}: ` : "";
  return cause && message === "fetch failed" ? cause : `${code}${message}`;
}
