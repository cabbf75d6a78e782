/**
 * Serves a web-standard fetch handler (a Hono `app.fetch`) on a TCP port: Bun.serve on
 * Bun, Deno.serve on Deno (the runtime as `runtime-key.ts` detects it). Node.js would
 * need `@hono/node-server`, which is not a dependency, so it fails clearly.
 */
import { runtimeGlobal, runtimeKey } from "./runtime-key.ts";

/** A web-standard request handler, such as a Hono app's `fetch`. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

/** Where to listen. */
export interface ServeOptions {
  /** Interface to bind; default 127.0.0.1 (loopback: exposing a store is a decision). */
  readonly hostname?: string;
  /** Port; 0 (the default) picks a free one, reported in the result. */
  readonly port?: number;
  /**
   * Largest request body the runtime accepts before the app sees it (Bun only; Deno
   * has no such bound). Default 128 MiB: above the chunk store's largest body
   * (MAX_BATCH_BYTES, 64 MiB + 64 KiB); routes enforce their exact limits themselves.
   */
  readonly maxRequestBodySize?: number;
  /** Serve HTTPS with this certificate chain and key (PEM; `tls-files.ts` loads them from `--tls-dir`). */
  readonly tls?: HttpsCredentials;
}

/** A server certificate (and intermediates after it) and its private key, PEM. */
export interface HttpsCredentials {
  readonly cert: string;
  readonly key: string;
}

/** A listening server. */
export interface HttpServer {
  readonly hostname: string;
  readonly port: number;
  /** Base URL, for example `http://127.0.0.1:41234` (`https://` with TLS). */
  readonly url: string;
  /**
   * Stops accepting connections and lets requests in flight finish, for at most
   * CLOSE_GRACE_MS; then (on Bun) cuts what is left. Idle keep-alive connections close at once.
   */
  close(): Promise<void>;
}

const DEFAULT_MAX_BODY = 128 * 1024 * 1024;

/** How long close() waits for requests in flight: longer than a batch transfer, short enough for a restart. */
const CLOSE_GRACE_MS = 5_000;

// Minimal shapes of the runtime APIs used here, so this file type-checks on any runtime.
interface BunLike {
  serve(options: {
    fetch: FetchHandler;
    hostname: string;
    port: number;
    maxRequestBodySize: number;
    development: boolean;
    tls?: { cert: string; key: string };
    error(error: Error): Response;
  }): { hostname?: string; port?: number; stop(closeActiveConnections?: boolean): Promise<void> | void };
}
interface DenoLike {
  serve(
    options: {
      hostname: string;
      port: number;
      cert?: string;
      key?: string;
      onListen(addr: { hostname: string; port: number }): void;
      onError(error: unknown): Response;
    },
    handler: FetchHandler,
  ): { addr: { hostname: string; port: number }; shutdown(): Promise<void>; finished: Promise<void> };
}

/**
 * Starts serving `handler`.
 *
 * @example
 * const server = await serveHttp(app.fetch, { hostname: "127.0.0.1", port: 0 });
 * console.log(server.url);
 * await server.close();
 */
export async function serveHttp(handler: FetchHandler, options: ServeOptions = {}): Promise<HttpServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 0;
  const runtime = runtimeKey();

  if (runtime === "bun") {
    const server = runtimeGlobal<BunLike>("bun")!.serve({
      fetch: handler,
      hostname,
      port,
      maxRequestBodySize: options.maxRequestBodySize ?? DEFAULT_MAX_BODY,
      development: false,
      ...(options.tls ? { tls: { cert: options.tls.cert, key: options.tls.key } } : {}),
      error: (error) => internalError(error),
    });
    const bound = { hostname: server.hostname ?? hostname, port: server.port ?? port };
    return {
      ...bound,
      url: urlOf(bound.hostname, bound.port, options.tls !== undefined),
      close: async () => {
        if (!(await withinGrace(server.stop(false)))) await server.stop(true);
      },
    };
  }

  if (runtime === "deno") {
    const deno = runtimeGlobal<DenoLike>("deno")!;
    let server!: ReturnType<DenoLike["serve"]>;
    await new Promise<void>((resolve) => {
      server = deno.serve(
        {
          hostname,
          port,
          ...(options.tls ? { cert: options.tls.cert, key: options.tls.key } : {}),
          onListen: () => resolve(),
          onError: (error) => internalError(error),
        },
        handler,
      );
    });
    const bound = { hostname: server.addr.hostname, port: server.addr.port };
    return {
      ...bound,
      url: urlOf(bound.hostname, bound.port, options.tls !== undefined),
      close: async () => {
        // Deno has no forced close; after the grace period the remaining requests finish on their own.
        await withinGrace(server.shutdown().then(() => server.finished));
      },
    };
  }

  throw new Error(
    `serveHttp: no HTTP server adapter for this runtime (${runtime}); run under Bun or Deno ` +
      "(Node.js would need @hono/node-server, which blockmend does not install)",
  );
}

/** True if `work` settles within CLOSE_GRACE_MS. */
async function withinGrace(work: Promise<void> | void): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), CLOSE_GRACE_MS);
  });
  try {
    return await Promise.race([Promise.resolve(work).then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function urlOf(hostname: string, port: number, https: boolean): string {
  return `http${https ? "s" : ""}://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
}

/** Last resort when the handler itself throws (a Hono app maps its own errors). */
function internalError(error: unknown): Response {
  console.error("serveHttp: handler failed", error);
  return Response.json({ error: { code: "internal", message: "Internal error" } }, { status: 500 });
}
