/**
 * What the NBD server refuses to start with: the rules an operator meets at startup,
 * in one place, checked before anything listens. `startNbdServer` applies them; the
 * CLI calls {@link checkNbdListen} too, so a refused configuration fails before the
 * gateway opens its stores.
 *
 * @module
 */
import { isIP } from "node:net";
import { type TlsServerSupport, tlsServerSupport } from "../../runtime/tls-server.ts";

/** Longest unix socket path: `sun_path` is 108 bytes on Linux, NUL included. */
export const MAX_UNIX_SOCKET_PATH_BYTES = 107;

/**
 * A configuration the NBD server will not run with. Its message is one line meant for
 * the operator; the CLI prints it as it is.
 */
export class NbdConfigError extends Error {
  override readonly name = "NbdConfigError";
}

/** The parts of the server options the policy looks at. */
export interface NbdListenSettings {
  readonly hostname?: string;
  readonly path?: string;
  readonly tls?: {
    readonly certDir: string;
    readonly verifyPeer?: boolean;
    readonly psk?: { readonly file: string };
  };
}

/** True for host names and addresses only this machine can reach. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1" || /^::ffff:127\./.test(host);
  return false;
}

/**
 * Throws {@link NbdConfigError} if this runtime cannot do the TLS features asked for
 * (TLS-PSK, client certificate verification), naming the runtime and why.
 */
export function checkTlsSupport(
  tls: { readonly verifyPeer?: boolean; readonly psk?: unknown },
  support: TlsServerSupport = tlsServerSupport(),
): void {
  if (tls.psk && support.psk)
    throw new NbdConfigError(`TLS-PSK (--tls-psk) is not available: ${support.psk}`);
  if (tls.verifyPeer && support.verifyPeer) {
    throw new NbdConfigError(
      `Client certificate verification (--tls-verify-peer) is not available: ${support.verifyPeer}`,
    );
  }
}

/**
 * Throws {@link NbdConfigError} for a configuration the server refuses:
 * - TLS-PSK, or client certificate verification, on a runtime that cannot do it;
 * - an address other machines can reach without TLS and client authentication (anyone
 *   who can connect could read and overwrite every image);
 * - a unix socket path longer than the kernel allows.
 */
export function checkNbdListen(
  settings: NbdListenSettings,
  support: TlsServerSupport = tlsServerSupport(),
): void {
  const { tls } = settings;
  if (tls) checkTlsSupport(tls, support);
  if (settings.path !== undefined) {
    const bytes = new TextEncoder().encode(settings.path).byteLength;
    if (bytes === 0 || bytes > MAX_UNIX_SOCKET_PATH_BYTES) {
      throw new NbdConfigError(
        `Unix socket path "${settings.path}" is ${bytes} bytes; it must be 1 to ${MAX_UNIX_SOCKET_PATH_BYTES}`,
      );
    }
    return; // only this machine can reach a unix socket; its file mode decides who
  }
  const hostname = settings.hostname ?? "127.0.0.1";
  const clientAuth = tls !== undefined && (tls.verifyPeer === true || tls.psk !== undefined);
  if (!isLoopbackHost(hostname) && !clientAuth) {
    const what = tls ? "TLS without client authentication" : "without TLS";
    throw new NbdConfigError(
      `Refusing to serve NBD on ${hostname} ${what}: anyone who can reach it could read and overwrite every image. ` +
        "Use --tls-dir DIR with --tls-verify-peer (client certificates), or listen on 127.0.0.1 or a unix socket",
    );
  }
}
