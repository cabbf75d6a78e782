/**
 * A hostile HTTP client for the listener tests: raw requests over TCP or TLS that no
 * fetch would send (a body dripped a byte at a time, a header of 100 KiB, a TLS
 * handshake that never finishes, TLS to a plain port and plain HTTP to a TLS one), and
 * what came back. Every socket is closed by the helper that opened it.
 */
import net from "node:net";
import tls from "node:tls";

/** What a raw request got: the status line's code (0 if none) and everything read. */
export interface RawAnswer {
  readonly status: number;
  readonly text: string;
  /** Milliseconds from connect to the server closing (or to the timeout). */
  readonly ms: number;
  /** True if the server closed the connection before the timeout. */
  readonly closedByServer: boolean;
}

function connect(url: URL, ca?: string): net.Socket {
  const port = Number(url.port);
  if (url.protocol === "https:")
    return tls.connect({ host: url.hostname, port, ca, servername: "localhost" });
  return net.connect(port, url.hostname);
}

/**
 * Sends `parts` in order, `gapMs` apart, and reads until the server closes or answers a
 * whole response head, or `timeoutMs` passes.
 */
export function rawRequest(
  base: string,
  parts: readonly (string | Uint8Array)[],
  options: { ca?: string; gapMs?: number; timeoutMs?: number; raw?: boolean } = {},
): Promise<RawAnswer> {
  const url = new URL(base);
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = options.raw ? net.connect(Number(url.port), url.hostname) : connect(url, options.ca);
    let text = "";
    let done = false;
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : 0, text, ms: Date.now() - started, closedByServer });
    };
    const timer = setTimeout(() => finish(false), options.timeoutMs ?? 10_000);
    socket.on("data", (d) => {
      text += d.toString("latin1");
      // A whole answer with a body length known: enough (keep-alive would keep it open).
      const head = text.indexOf("\r\n\r\n");
      const length = /content-length: *(\d+)/i.exec(text.slice(0, head))?.[1];
      if (head >= 0 && length !== undefined && text.length >= head + 4 + Number(length)) finish(true);
    });
    socket.on("close", () => finish(true));
    socket.on("error", () => finish(true));
    const ready = url.protocol === "https:" && !options.raw ? "secureConnect" : "connect";
    socket.once(ready, async () => {
      for (const [i, p] of parts.entries()) {
        if (done) return;
        if (i > 0 && options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs));
        if (!done) socket.write(p);
      }
    });
  });
}

/** A request head as text (HTTP/1.1, `Connection: close`). */
export function head(method: string, path: string, headers: Record<string, string>): string {
  const lines = [`${method} ${path} HTTP/1.1`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  if (!Object.keys(headers).some((k) => k.toLowerCase() === "connection")) lines.push("Connection: close");
  return `${lines.join("\r\n")}\r\n\r\n`;
}

/**
 * Opens a TCP connection to a TLS port and sends the first bytes of a ClientHello, never
 * the rest. Resolves, once the server closes it or `timeoutMs` passed, with how long it held.
 */
export function stalledHandshake(base: string, timeoutMs: number): Promise<RawAnswer> {
  return rawRequest(base, [Uint8Array.of(0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00)], {
    raw: true,
    timeoutMs,
  });
}

/** A TLS ClientHello's first bytes sent to a plain HTTP port: what the server says. */
export function tlsToPlain(base: string): Promise<RawAnswer> {
  return rawRequest(
    base.replace(/^https:/, "http:"),
    [Uint8Array.of(0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5)],
    {
      raw: true,
      timeoutMs: 5_000,
    },
  );
}

/** Plain HTTP sent to a TLS port: the server must not answer it as a request. */
export function plainToTls(base: string): Promise<RawAnswer> {
  return rawRequest(base, [head("GET", "/v1/health", { host: new URL(base).host })], {
    raw: true,
    timeoutMs: 5_000,
  });
}
