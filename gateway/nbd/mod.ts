/**
 * The NBD server for hypervisors: serves any {@link BlockDevice} that an
 * {@link ExportProvider} hands out, over the NBD fixed-newstyle protocol.
 * See README.md in this folder for the support matrix.
 *
 * @example
 * // Other machines may connect only with TLS and a client certificate (else NbdConfigError).
 * const server = await startNbdServer(provider, {
 *   hostname: "0.0.0.0",
 *   port: 10809,
 *   tls: { certDir: "/etc/blockmend/pki/server", verifyPeer: true },
 * });
 *
 * @module
 */
export {
  assertValidDevice,
  type BlockDevice,
  type BlockDeviceCapabilities,
  type BlockSizes,
  type ExportEntry,
  type ExportProvider,
  type Extent,
  exportFlags,
} from "./block-device.ts";
export { errnoFor, type NbdErrno } from "./errno.ts";
export { checkNbdListen, checkTlsSupport, isLoopbackHost, NbdConfigError } from "./listen-policy.ts";
export { ALL_CAPABILITIES, MemoryDevice, type MemoryDeviceOptions } from "./memory-device.ts";
export {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_IN_FLIGHT_BYTES,
  DEFAULT_MAX_IN_FLIGHT_REQUESTS,
  DEFAULT_SOCKET_MODE,
  DEFAULT_STALLED_REQUEST_TIMEOUT_MS,
  NBD_DEFAULT_PORT,
  type NbdServer,
  type NbdServerOptions,
  type NbdTlsOptions,
  startNbdServer,
} from "./nbd-server.ts";
