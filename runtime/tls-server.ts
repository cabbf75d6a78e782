/**
 * Server-side TLS upgrade of an accepted socket (STARTTLS), over `node:tls`, with what
 * each runtime's implementation does and does not do. The NBD server uses it after
 * acknowledging NBD_OPT_STARTTLS; it is the only place that knows these runtime limits.
 *
 * Measured (the README of gateway/nbd has the support matrix and how it was found):
 * - Bun (BoringSSL): in-place upgrade works; client certificates are checked against
 *   the CA (no certificate, or one from another CA, is refused). No TLS-PSK: Bun's
 *   node:tls has no `pskCallback`, so a PSK-only client gets NO_SHARED_CIPHER.
 * - Deno (rustls): in-place upgrade works only if the socket is paused before it is
 *   wrapped (otherwise the TLS socket hands the raw ClientHello on as data, without ever
 *   becoming secure); client certificates from ANOTHER CA are accepted, so peer
 *   verification cannot be offered; no TLS-PSK (rustls has none).
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import type net from "node:net";
import { join } from "node:path";
import tls from "node:tls";
import { currentRuntime, type RuntimeInfo, runtimeLabel } from "./runtime-info.ts";

/** File names in a credentials directory: qemu's x509 layout (qemu `tls-creds-x509,dir=`). */
export const X509_FILES = {
  /** CA certificate(s) client certificates must chain to (read only with peer verification). */
  ca: "ca-cert.pem",
  /** The server certificate (and any intermediates after it). */
  cert: "server-cert.pem",
  /** The server certificate's private key. */
  key: "server-key.pem",
} as const;

/** What this runtime can do as a TLS server; each field is null if supported, else why not. */
export interface TlsServerSupport {
  /** Client certificates checked against the CA. */
  readonly verifyPeer: string | null;
  /** TLS-PSK (TLS 1.2 PSK cipher suites or TLS 1.3 external PSK). */
  readonly psk: string | null;
}

/**
 * The TLS server features of `runtime` (default: this process's).
 *
 * @example
 * const why = tlsServerSupport().psk; // "Bun 1.4.5's node:tls has no TLS-PSK ..." or null
 */
export function tlsServerSupport(runtime: RuntimeInfo = currentRuntime()): TlsServerSupport {
  const label = runtimeLabel(runtime);
  switch (runtime.name) {
    case "bun":
      return {
        verifyPeer: null,
        psk: `${label}'s node:tls has no TLS-PSK for servers (no pskCallback: PSK cipher suites are never negotiated)`,
      };
    case "deno":
      return {
        verifyPeer: `${label}'s node:tls does not check client certificates against the CA when it upgrades a socket (a certificate from another CA is accepted); run the gateway under Bun`,
        psk: `${label}'s node:tls (rustls) has no TLS-PSK`,
      };
    case "node":
      return {
        verifyPeer: null,
        psk: "blockmend does not implement TLS-PSK on Node.js (its gateway runs on Bun or Deno)",
      };
  }
}

/** Loaded server credentials, ready for {@link upgradeServerSocket}. */
export interface TlsServerCredentials {
  readonly certDir: string;
  readonly verifyPeer: boolean;
  readonly context: tls.SecureContext;
}

/**
 * Reads `server-cert.pem` and `server-key.pem` (and `ca-cert.pem` with `verifyPeer`)
 * from `certDir`. TLS 1.2 is the oldest version offered (proto.md "TLS versions").
 * Throws an Error naming the file on anything missing or unusable.
 */
export async function loadTlsServerCredentials(options: {
  certDir: string;
  verifyPeer: boolean;
}): Promise<TlsServerCredentials> {
  const { certDir, verifyPeer } = options;
  const read = async (name: string) => {
    const path = join(certDir, name);
    try {
      return await readFile(path, "utf8");
    } catch (error) {
      throw new Error(`Cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`, {
        cause: error,
      });
    }
  };
  const cert = await read(X509_FILES.cert);
  const key = await read(X509_FILES.key);
  // The CA is passed only when client certificates are checked: some runtimes request a
  // client certificate as soon as a CA is configured.
  const ca = verifyPeer ? await read(X509_FILES.ca) : undefined;
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ cert, key, ...(ca ? { ca } : {}), minVersion: "TLSv1.2" });
  } catch (error) {
    throw new Error(
      `Cannot use the TLS credentials in ${certDir} (${X509_FILES.cert}, ${X509_FILES.key}${ca ? `, ${X509_FILES.ca}` : ""}): ${(error as Error).message}`,
      { cause: error },
    );
  }
  return { certDir, verifyPeer, context };
}

/** A socket being upgraded: `secure` settles when the TLS handshake is done or has failed. */
export interface TlsUpgrade {
  /** The TLS side: write plaintext to it, read plaintext from it (after `secure`). */
  readonly socket: tls.TLSSocket;
  /** Resolves once TLS is up (and the client certificate verified, if asked); rejects otherwise. */
  readonly secure: Promise<void>;
}

/**
 * Upgrades an accepted socket to TLS as the server. Call it after the plaintext reply
 * that announces TLS was written, with no `data` listener left on `raw`; bytes the
 * client already sent stay buffered and go to the TLS layer. Attach a `data` listener
 * to the result only after `secure` resolved, so nothing unencrypted is ever read.
 */
export function upgradeServerSocket(raw: net.Socket, credentials: TlsServerCredentials): TlsUpgrade {
  // Deno's TLSSocket only takes over a socket that is not flowing (see the module doc).
  raw.pause();
  const socket = new tls.TLSSocket(raw, {
    isServer: true,
    secureContext: credentials.context,
    requestCert: credentials.verifyPeer,
    rejectUnauthorized: credentials.verifyPeer,
  });
  const secure = new Promise<void>((resolve, reject) => {
    const fail = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onError = (error: Error) =>
      fail(new Error(`TLS handshake failed: ${error.message}`, { cause: error }));
    const onClose = () => fail(new Error("connection closed during the TLS handshake"));
    const onSecure = () => {
      cleanup();
      // Belt and braces: never report success for a socket that did not negotiate TLS or, with
      // peer verification, did not verify the client (whatever the runtime's own checks did).
      const protocol = socket.getProtocol?.();
      if (!socket.encrypted || !protocol || !/^TLSv1\.[23]$/.test(protocol)) {
        reject(new Error(`TLS handshake ended without TLS 1.2 or 1.3 (protocol ${protocol})`));
      } else if (credentials.verifyPeer && !socket.authorized) {
        reject(new Error(`client certificate not accepted: ${socket.authorizationError ?? "none sent"}`));
      } else {
        resolve();
      }
    };
    const cleanup = () => {
      socket.off("secure", onSecure);
      socket.off("error", onError);
      socket.off("close", onClose);
    };
    socket.once("secure", onSecure);
    socket.once("error", onError);
    socket.once("close", onClose);
  });
  return { socket, secure };
}
