/**
 * The NBD listener flags of `blockmend up` and `blockmend gateway` (issue 9), parsed and
 * checked in one place so both commands behave the same: `--nbd HOST:PORT|unix:PATH`,
 * `--nbd-socket-mode`, `--tls-dir`, `--tls-verify-peer`, `--tls-psk`. Also how to reach
 * the listener, for the lines the commands print.
 *
 * @module
 */
import { resolve } from "node:path";
import { checkNbdListen, checkTlsSupport } from "../gateway/nbd/listen-policy.ts";
import type { NbdServerOptions } from "../gateway/nbd/nbd-server.ts";
import { parseListenAddress } from "./listen-address.ts";
import { UsageError } from "./strict-flags.ts";

/** Description of `--nbd` for both commands. */
export const NBD_LISTEN_DESCRIPTION = "HOST:PORT, or unix:PATH for a unix socket, for NBD";

/** citty definitions of the NBD flags besides `--nbd`; spread into a command's `args`. */
export const NBD_TLS_ARGS = {
  "nbd-socket-mode": {
    type: "string",
    valueHint: "MODE",
    description: "File mode of the --nbd unix: socket, octal (default 0600; 0660 lets the socket's group in)",
  },
  "tls-dir": {
    type: "string",
    valueHint: "DIR",
    description:
      "Require TLS on NBD; DIR holds ca-cert.pem, server-cert.pem, server-key.pem (qemu's x509 layout)",
  },
  "tls-verify-peer": {
    type: "boolean",
    description: "Require NBD clients to present a certificate signed by DIR/ca-cert.pem",
  },
  "tls-psk": {
    type: "string",
    valueHint: "FILE",
    description:
      "TLS-PSK keys (psktool format); refused where the runtime has no PSK server (Bun, Deno today)",
  },
} as const;

/** The parsed values of `--nbd` and {@link NBD_TLS_ARGS}. */
export interface NbdFlagValues {
  readonly nbd: string;
  readonly "nbd-socket-mode"?: string;
  readonly "tls-dir"?: string;
  readonly "tls-verify-peer"?: boolean;
  readonly "tls-psk"?: string;
}

/**
 * NBD server options from the flags. Throws {@link UsageError} for flags that cannot
 * be right, and `NbdConfigError` for what the server would refuse (checked now, before
 * the gateway opens its stores).
 *
 * @example
 * nbdServerOptions({ nbd: "unix:/run/blockmend/nbd.sock", "tls-dir": "/etc/pki/blockmend" });
 * // { path: "/run/blockmend/nbd.sock", tls: { certDir: "/etc/pki/blockmend", verifyPeer: false } }
 */
export function nbdServerOptions(flags: NbdFlagValues): NbdServerOptions {
  const psk = flags["tls-psk"];
  const verifyPeer = flags["tls-verify-peer"] === true;
  // The runtime's limits first: more flags would not help.
  checkTlsSupport({ verifyPeer, psk });
  let listen: Pick<NbdServerOptions, "hostname" | "port" | "path" | "socketMode">;
  if (flags.nbd.startsWith("unix:")) {
    const path = flags.nbd.slice("unix:".length);
    if (path === "")
      throw new UsageError('--nbd "unix:" needs a path (for example unix:/run/blockmend/nbd.sock)');
    listen = { path: resolve(path) };
    const mode = flags["nbd-socket-mode"];
    if (mode !== undefined) {
      if (!/^0?[0-7]{3}$/.test(mode))
        throw new UsageError(`--nbd-socket-mode "${mode}" is not an octal mode like 0660`);
      listen = { ...listen, socketMode: Number.parseInt(mode, 8) };
    }
  } else {
    if (flags["nbd-socket-mode"] !== undefined)
      throw new UsageError("--nbd-socket-mode needs --nbd unix:PATH");
    try {
      listen = parseListenAddress(flags.nbd, "--nbd");
    } catch (error) {
      throw new UsageError(`${(error as Error).message}, or unix:PATH`);
    }
  }
  const certDir = flags["tls-dir"];
  if (certDir === undefined && (verifyPeer || psk !== undefined)) {
    throw new UsageError(`${verifyPeer ? "--tls-verify-peer" : "--tls-psk"} needs --tls-dir DIR`);
  }
  const options: NbdServerOptions = {
    ...listen,
    ...(certDir === undefined
      ? {}
      : {
          tls: {
            certDir: resolve(certDir),
            verifyPeer,
            ...(psk === undefined ? {} : { psk: { file: psk } }),
          },
        }),
  };
  checkNbdListen(options);
  return options;
}

/** How clients reach a listener, for printing. */
export interface NbdUsage {
  /** The listener as a URI without an export: `nbd://127.0.0.1:10809`, `nbds+unix:///?socket=...`. */
  readonly where: string;
  /** The URI of one export (libnbd's form; qemu takes it too without TLS). */
  exportUri(name: string): string;
  /** Example commands for one export, one per line. */
  tryLines(name: string): string[];
}

/**
 * Describes the listener `options` configure (on `port`, as bound) the way qemu and
 * libnbd spell it: `nbd://`/`nbd+unix://` URIs, or with TLS libnbd's `nbds://` and
 * qemu's `--object tls-creds-x509 --image-opts` (qemu takes no `nbds://` URIs).
 */
export function nbdUsage(options: NbdServerOptions, port: number): NbdUsage {
  const tls = options.tls;
  const unix = options.path;
  const host = (options.hostname ?? "127.0.0.1").includes(":") ? `[${options.hostname}]` : options.hostname;
  const scheme = `nbd${tls ? "s" : ""}${unix ? "+unix" : ""}`;
  const query = (extra: string[]) => {
    const parts = [...(unix ? [`socket=${unix}`] : []), ...extra];
    return parts.length > 0 ? `?${parts.join("&")}` : "";
  };
  const base = unix ? `${scheme}://` : `${scheme}://${host ?? "127.0.0.1"}:${port}`;
  const exportUri = (name: string) => `${base}/${name}${query([])}`;
  // Without verification the server's own ca-cert.pem is all a client on this host needs.
  const clientDir = tls ? (tls.verifyPeer ? "CLIENT-DIR" : tls.certDir) : "";
  return {
    where: `${base}${unix ? "/" : ""}${query([])}`,
    exportUri,
    tryLines(name) {
      if (!tls) {
        // Quoted when it has a query (a unix socket's `?socket=`): `?` is a shell glob.
        const uri = unix ? `'${exportUri(name)}'` : exportUri(name);
        return [
          `qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' ${uri}`,
          `nbdinfo ${uri}   # size and block sizes, as a client sees them`,
        ];
      }
      const server = unix
        ? `server.type=unix,server.path=${unix},tls-hostname=localhost`
        : `host=${options.hostname ?? "127.0.0.1"},port=${port}`;
      const lines = [
        `qemu-io --object tls-creds-x509,id=tls0,dir=${clientDir},endpoint=client --image-opts driver=nbd,${server},export=${name},tls-creds=tls0 -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M'`,
        `nbdinfo '${base}/${name}${query([`tls-certificates=${clientDir}`])}'`,
      ];
      if (tls.verifyPeer)
        lines.push("# CLIENT-DIR: ca-cert.pem, client-cert.pem, client-key.pem (docs/operations.md)");
      return lines;
    },
  };
}
