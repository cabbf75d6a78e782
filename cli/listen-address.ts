/** Parsing of `HOST:PORT` listen addresses, and the loopback check for unauthenticated servers. */

/** A parsed listen address. */
export interface ListenAddress {
  readonly hostname: string;
  readonly port: number;
}

/** Parses `HOST:PORT` (or `[v6]:PORT`); throws a TypeError naming the flag on anything else. */
export function parseListenAddress(value: string, flag: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || port > 65535)
    throw new TypeError(`${flag} "${value}" is not HOST:PORT (for example 127.0.0.1:8080)`);
  return { hostname: (m[1] ?? m[2])!, port };
}

/** True for addresses only this machine can reach. */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}
