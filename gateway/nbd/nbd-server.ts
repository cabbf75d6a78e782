/**
 * The NBD server: the only file of `gateway/nbd/` that touches sockets. It
 * runs the sans-IO {@link Handshake} and then, per connection, the sans-IO
 * {@link TransmissionSession} (parsing, validation, limits, reply kinds): it
 * runs the requests the session starts concurrently against the chosen
 * {@link BlockDevice} and writes the replies as they complete (out of order,
 * each reply written whole so replies never interleave).
 *
 * Backpressure: a connection stops reading its socket while more than
 * `maxInFlightBytes` of request and reply data (or `maxInFlightRequests`
 * requests) are in flight, or while the socket's send buffer is full because
 * the client is not reading replies.
 *
 * Isolation: whatever a client sends and whatever a device throws, only that
 * request or that connection fails; the server keeps serving the others.
 * Set BLOCKMEND_DEBUG_NBD=1 to log connection events and errors to stderr.
 *
 * TLS: with `tls` the server requires it (FORCEDTLS, see handshake.ts). When the
 * handshake acknowledges NBD_OPT_STARTTLS, the connection is upgraded in place
 * (`runtime/tls-server.ts`) and reads and writes go through the TLS socket from
 * then on. Limits: `maxConnections` at accept, the handshake timeout (which
 * also bounds a stalled TLS handshake), and a stall timeout that closes a
 * connection whose request stopped arriving halfway; an idle connection
 * between requests is never timed out.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { chmod, lstat, unlink } from "node:fs/promises";
import net from "node:net";
import process from "node:process";
import type tls from "node:tls";
import {
  loadTlsServerCredentials,
  type TlsServerCredentials,
  upgradeServerSocket,
} from "../../runtime/tls-server.ts";
import { assertValidDevice, type BlockDevice, type ExportProvider } from "./block-device.ts";
import { NBD_CMD, NBD_CMD_FLAG } from "./constants.ts";
import { errnoFor } from "./errno.ts";
import {
  type ExportDetails,
  Handshake,
  type HandshakeStep,
  type LookupPurpose,
  type NegotiatedSession,
} from "./handshake.ts";
import { checkNbdListen, NbdConfigError } from "./listen-policy.ts";
import { type Admission, type ReplyQueueState, TransmissionSession } from "./session.ts";
import { commandName, NbdProtocolError, type NbdRequest } from "./transmission.ts";

/** IANA port for NBD. */
export const NBD_DEFAULT_PORT = 10809;

/** Default bound on request and reply bytes in flight per connection: two 32 MiB requests. */
export const DEFAULT_MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024;

/** Default bound on requests in flight per connection: far above any client's queue depth (qemu 16, nbdcopy 64). */
export const DEFAULT_MAX_IN_FLIGHT_REQUESTS = 512;

/** Default time a client has to finish the handshake (TLS included) before it is disconnected. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30_000;

/**
 * Default cap on open connections: a hypervisor host opens one or a few per disk
 * (qemu multi-conn up to 16); 256 leaves room while bounding what a flood can hold
 * (each connection may hold up to maxInFlightBytes).
 */
export const DEFAULT_MAX_CONNECTIONS = 256;

/**
 * Default time a request may stall halfway (header or payload started, no byte for
 * this long, while the server is reading) before the connection is closed. Between
 * requests there is no timeout: a VM's disk can be idle for hours.
 */
export const DEFAULT_STALLED_REQUEST_TIMEOUT_MS = 30_000;

/** Default file mode of a unix socket: owner only, like nbdkit -U. */
export const DEFAULT_SOCKET_MODE = 0o600;

/** At most one "refused at the connection cap" line per this interval, with a count of the rest. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

/**
 * Replies are queued and written once per turn of the event loop. Buffers
 * smaller than this are copied together into one write (copying 64 KiB costs
 * less than a syscall); larger ones are written as they are, without a copy.
 */
const COALESCE_REPLY_BYTES = 64 * 1024;

/** How long a closing connection may take to deliver its last bytes before it is destroyed. */
const CLOSE_GRACE_MS = 2000;

/** Largest buffer built by coalescing small replies. */
const MAX_COALESCED_BYTES = 1024 * 1024;

/** TLS settings (nbdkit's and qemu-nbd's conventions). */
export interface NbdTlsOptions {
  /** Directory in qemu's x509 layout: ca-cert.pem, server-cert.pem, server-key.pem. */
  certDir: string;
  /** Require a client certificate signed by ca-cert.pem (nbdkit --tls-verify-peer). */
  verifyPeer?: boolean;
  /**
   * TLS-PSK keys, psktool format (`identity:hexkey` per line). No runtime blockmend runs
   * on supports a PSK server today: startNbdServer refuses it with the reason.
   */
  psk?: { file: string };
}

export interface NbdServerOptions {
  /** Address to listen on; default 127.0.0.1. Other machines need TLS with client authentication. */
  hostname?: string;
  /** Port; 0 picks a free one. Default 10809. */
  port?: number;
  /** Listen on this unix socket instead of TCP (hostname and port are ignored). */
  path?: string;
  /** File mode of the unix socket; default 0o600 (owner only). 0o660 gives the file's group access. */
  socketMode?: number;
  /** Require TLS (FORCEDTLS). Without it STARTTLS is refused with NBD_REP_ERR_POLICY. */
  tls?: NbdTlsOptions;
  /** Open connections beyond which new ones are closed at accept; default 256. */
  maxConnections?: number;
  maxInFlightBytes?: number;
  maxInFlightRequests?: number;
  handshakeTimeoutMs?: number;
  /** See DEFAULT_STALLED_REQUEST_TIMEOUT_MS. */
  stalledRequestTimeoutMs?: number;
  /** Operator-facing warnings (connections refused at the cap); default one line on stderr. */
  onWarning?: (message: string) => void;
}

/** A running server. */
export interface NbdServer {
  /** The TCP address listened on; "" for a unix socket. */
  readonly hostname: string;
  /** The port actually listened on (useful with port 0); 0 for a unix socket. */
  readonly port: number;
  /** The unix socket listened on, or null for TCP. */
  readonly path: string | null;
  /** Clients must use TLS. */
  readonly tls: boolean;
  /** Number of open client connections. */
  readonly connections: number;
  /**
   * Stops accepting, lets requests in flight finish, closes every connection
   * and releases every device. Idempotent.
   */
  close(): Promise<void>;
}

type Log = (message: string, error?: unknown) => void;

/**
 * Starts an NBD server for the exports of `provider`.
 *
 * @example
 * const server = await startNbdServer(provider, { hostname: "127.0.0.1", port: 0 });
 * // qemu-img info nbd://127.0.0.1:${server.port}/disk
 * await server.close();
 */
export async function startNbdServer(
  provider: ExportProvider,
  options: NbdServerOptions = {},
): Promise<NbdServer> {
  checkNbdListen(options);
  const path = options.path ?? null;
  const hostname = path === null ? (options.hostname ?? "127.0.0.1") : "";
  const maxConnections = positive(options.maxConnections ?? DEFAULT_MAX_CONNECTIONS, "maxConnections");
  let tls: TlsServerCredentials | null = null;
  if (options.tls) {
    try {
      tls = await loadTlsServerCredentials({
        certDir: options.tls.certDir,
        verifyPeer: options.tls.verifyPeer ?? false,
      });
    } catch (error) {
      throw new NbdConfigError((error as Error).message, { cause: error });
    }
  }
  const settings: Settings = {
    maxInFlightBytes: positive(options.maxInFlightBytes ?? DEFAULT_MAX_IN_FLIGHT_BYTES, "maxInFlightBytes"),
    maxInFlightRequests: positive(
      options.maxInFlightRequests ?? DEFAULT_MAX_IN_FLIGHT_REQUESTS,
      "maxInFlightRequests",
    ),
    handshakeTimeoutMs: positive(
      options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      "handshakeTimeoutMs",
    ),
    stalledRequestTimeoutMs: positive(
      options.stalledRequestTimeoutMs ?? DEFAULT_STALLED_REQUEST_TIMEOUT_MS,
      "stalledRequestTimeoutMs",
    ),
    tls,
  };
  const log: Log = process.env.BLOCKMEND_DEBUG_NBD
    ? (message, error) => console.error(`[nbd] ${message}`, ...(error === undefined ? [] : [error]))
    : () => {};
  const warn = options.onWarning ?? ((message: string) => console.error(`[nbd] ${message}`));
  const connections = new Set<Connection>();
  let nextId = 1;
  let lastRefusalReport = Number.NEGATIVE_INFINITY;
  let refusedSinceReport = 0;

  const server = net.createServer((socket) => {
    if (connections.size >= maxConnections) {
      // Refused before any byte is sent: NBD has no way to say "busy" before the greeting.
      const peer = peerOf(socket);
      socket.destroy();
      const now = Date.now();
      if (now - lastRefusalReport < REFUSAL_LOG_INTERVAL_MS) {
        refusedSinceReport++;
        return;
      }
      const more = refusedSinceReport > 0 ? ` (and ${refusedSinceReport} more since the last report)` : "";
      warn(
        `refused a connection from ${peer}: ${connections.size} connections open, the limit is ${maxConnections}${more}`,
      );
      lastRefusalReport = now;
      refusedSinceReport = 0;
      return;
    }
    try {
      const connection = new Connection(nextId++, socket, provider, settings, log, () =>
        connections.delete(connection),
      );
      connections.add(connection);
    } catch (error) {
      log("cannot set up connection", error);
      socket.destroy();
    }
  });
  server.on("error", (error) => log("server error", error));

  let port = 0;
  if (path === null) {
    await listen(server, (done) => server.listen(options.port ?? NBD_DEFAULT_PORT, hostname, done));
    const address = server.address();
    port =
      typeof address === "object" && address !== null ? address.port : (options.port ?? NBD_DEFAULT_PORT);
  } else {
    await listenUnix(server, path, options.socketMode ?? DEFAULT_SOCKET_MODE);
  }
  const where = path === null ? `${hostname}:${port}` : `unix:${path}`;
  log(
    `listening on ${where}${tls ? ` (TLS required${tls.verifyPeer ? ", client certificates verified" : ""})` : ""}`,
  );

  let closing: Promise<void> | null = null;
  return {
    hostname,
    port,
    path,
    tls: tls !== null,
    get connections() {
      return connections.size;
    },
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.all([...connections].map((c) => c.shutdown()));
        await stopped;
        // Runtimes remove the socket file on close; make sure, without failing if it is gone.
        if (path !== null) await unlink(path).catch(() => {});
        log(`stopped listening on ${where}`);
      })();
      return closing;
    },
  };
}

function positive(value: number, name: string): number {
  if (!Number.isFinite(value) || value <= 0)
    throw new RangeError(`NBD server option ${name} must be > 0, got ${value}`);
  return value;
}

function peerOf(socket: net.Socket): string {
  return socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : "a unix socket client";
}

/** Starts listening; resolves once listening, rejects with the listen error. */
function listen(server: net.Server, start: (done: () => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once("error", onError);
    start(() => {
      server.off("error", onError);
      resolve();
    });
  });
}

/**
 * Listens on a unix socket created with mode 0600 (umask set around the bind, which
 * every runtime does synchronously inside listen(), so no other code runs meanwhile),
 * then sets `mode`. A socket file left by a server that is gone is replaced; a live
 * one, or a file that is not a socket, is an error.
 */
async function listenUnix(server: net.Server, path: string, mode: number): Promise<void> {
  const bind = () =>
    listen(server, (done) => {
      const previous = process.umask(0o177);
      try {
        server.listen(path, done);
      } finally {
        process.umask(previous);
      }
    });
  try {
    await bind();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EADDRINUSE") throw error;
    const info = await lstat(path).catch(() => null);
    if (info !== null && !info.isSocket()) {
      throw new NbdConfigError(`Cannot listen on unix:${path}: the file exists and is not a socket`);
    }
    if (await isListening(path)) {
      throw new NbdConfigError(`Cannot listen on unix:${path}: another server is listening there`);
    }
    await unlink(path).catch(() => {});
    await bind();
  }
  if (mode !== 0o600) await chmod(path, mode);
}

/** True if something accepts connections on the unix socket at `path`. */
function isListening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
}

interface Settings {
  readonly maxInFlightBytes: number;
  readonly maxInFlightRequests: number;
  readonly handshakeTimeoutMs: number;
  readonly stalledRequestTimeoutMs: number;
  /** Credentials when TLS is required, else null. */
  readonly tls: TlsServerCredentials | null;
}

/** One client connection, from greeting to close. */
class Connection {
  readonly #id: number;
  /** The accepted socket. */
  readonly #raw: net.Socket;
  /** What requests are read from and replies written to: `#raw`, or the TLS socket over it. */
  #socket: net.Socket;
  readonly #provider: ExportProvider;
  readonly #limits: Settings;
  readonly #log: Log;
  readonly #onGone: () => void;
  readonly #handshake: Handshake;
  #handshakeTimer: ReturnType<typeof setTimeout> | null = null;
  /** Runs while a request is partly received and the socket is being read. */
  #stallTimer: ReturnType<typeof setTimeout> | null = null;
  /** When bytes last arrived (or reading resumed), for the stall timeout. */
  #lastProgress = 0;
  /** Device opened for an NBD_OPT_GO / EXPORT_NAME whose answer is pending. */
  #candidate: BlockDevice | null = null;
  #device: BlockDevice | null = null;
  /** The transmission phase's state: set once the handshake hands over. */
  #session: TransmissionSession | null = null;
  #paused = false;
  #waitingForDrain = false;
  #disconnecting = false;
  #closed = false;
  #idleWaiters: (() => void)[] = [];
  #released = false;
  #out: Uint8Array[] = [];
  #outBytes = 0;
  #flushScheduled = false;

  constructor(
    id: number,
    socket: net.Socket,
    provider: ExportProvider,
    limits: Settings,
    log: Log,
    onGone: () => void,
  ) {
    this.#id = id;
    this.#raw = socket;
    this.#socket = socket;
    this.#provider = provider;
    this.#limits = limits;
    this.#log = log;
    this.#onGone = onGone;
    this.#handshake = new Handshake({ tls: limits.tls ? "required" : "none" });
    if (socket.remoteAddress) socket.setNoDelay(true); // TCP only
    socket.on("data", this.#onData);
    socket.on("error", (error) => this.#log(`#${this.#id} socket error`, error));
    socket.on("close", () => this.#onClose());
    socket.on("drain", this.#onDrain);
    // Covers the whole handshake, the TLS upgrade included: a client that stalls anywhere
    // before transmission is cut off.
    this.#handshakeTimer = setTimeout(() => this.#abort("handshake timed out"), limits.handshakeTimeoutMs);
    (this.#handshakeTimer as { unref?: () => void }).unref?.();
    this.#log(`#${id} connected from ${peerOf(socket)}`);
    this.#write(this.#handshake.start());
  }

  /** Stops reading, waits for requests in flight, then closes and releases the device. */
  async shutdown(): Promise<void> {
    this.#disconnecting = true;
    // Requests in flight finish; held ones are refused at once (proto.md allows ESHUTDOWN for this).
    for (const { reply } of this.#session?.stop() ?? []) this.#write(reply);
    this.#updateReading();
    await this.#idle();
    this.#closeSoon();
    await this.#release();
  }

  readonly #onData = (chunk: Uint8Array): void => {
    if (this.#closed || this.#disconnecting) return;
    try {
      if (this.#session !== null) {
        this.#session.parser.push(chunk, this.#dispatch);
        this.#lastProgress = Date.now();
        // A payload still arriving counts against the in-flight limit (see #updateReading).
        if (this.#session.parser.midRequest) {
          this.#updateReading();
          this.#armStallTimer();
        }
      } else {
        this.#drive(this.#handshake.feed(chunk));
      }
    } catch (error) {
      if (error instanceof NbdProtocolError) this.#abort(error.message);
      else this.#abort("internal error", error);
    }
  };

  readonly #onDrain = (): void => {
    this.#waitingForDrain = false;
    this.#pump();
    this.#updateReading();
  };

  /**
   * Starts the stall timer if a request is partly received and the socket is read. It
   * checks when bytes last came (one timer per stall, not one per read).
   */
  #armStallTimer(): void {
    if (this.#stallTimer !== null || this.#paused || this.#closed) return;
    const check = () => {
      this.#stallTimer = null;
      const parser = this.#session?.parser;
      if (this.#closed || this.#paused || parser === undefined || !parser.midRequest) return;
      const quiet = Date.now() - this.#lastProgress;
      const limit = this.#limits.stalledRequestTimeoutMs;
      if (quiet >= limit) {
        this.#abort(
          `request stalled: no bytes for ${quiet} ms with ${parser.buffered} bytes of a request received`,
        );
        return;
      }
      this.#stallTimer = setTimeout(check, limit - quiet);
      (this.#stallTimer as { unref?: () => void }).unref?.();
    };
    this.#stallTimer = setTimeout(check, this.#limits.stalledRequestTimeoutMs);
    (this.#stallTimer as { unref?: () => void }).unref?.();
  }

  #clearStallTimer(): void {
    if (this.#stallTimer !== null) clearTimeout(this.#stallTimer);
    this.#stallTimer = null;
  }

  // -------------------------------------------------------------------------
  // Handshake

  /** Acts on handshake steps until one needs more bytes. Only one drive runs at a time. */
  #drive(first: HandshakeStep): void {
    const run = async (initial: HandshakeStep) => {
      let step = initial;
      for (;;) {
        for (const bytes of step.send) this.#write(bytes);
        const next = step.next;
        switch (next.kind) {
          case "more":
          case "wait":
            return;
          case "close":
            this.#log(`#${this.#id} handshake ended: ${next.reason}`);
            this.#endGracefully();
            return;
          case "list": {
            const exports = await this.#provider.list().catch((e: unknown) => toError(e));
            if (this.#closed || this.#disconnecting) return;
            step = this.#handshake.answerList(exports);
            break;
          }
          case "lookup": {
            const details = await this.#lookup(next.name, next.purpose);
            // Closed or shutting down meanwhile: #release() takes care of a device kept for "go".
            if (this.#closed || this.#disconnecting) return;
            step = this.#handshake.answerLookup(details);
            break;
          }
          case "starttls":
            await this.#startTls();
            if (this.#closed || this.#disconnecting) return;
            step = this.#handshake.tlsStarted();
            break;
          case "transmission":
            this.#startTransmission(next.session);
            return;
        }
      }
    };
    run(first).catch((error) => this.#abort("handshake failed", error));
  }

  /**
   * Upgrades to TLS after the STARTTLS ACK was queued. Everything here up to the wrap is
   * synchronous: the ACK is written and the TLS socket takes over within one turn of the
   * event loop, so no byte the client sends after the ACK can be read as plaintext.
   */
  async #startTls(): Promise<void> {
    const credentials = this.#limits.tls;
    if (credentials === null) throw new Error("handshake asked for TLS that is not configured");
    this.#raw.off("data", this.#onData);
    this.#raw.off("drain", this.#onDrain);
    this.#flush(); // the ACK, in plaintext
    const upgrade = upgradeServerSocket(this.#raw, credentials);
    const tls = upgrade.socket;
    this.#socket = tls;
    tls.on("error", (error) => this.#log(`#${this.#id} TLS error`, error));
    tls.on("close", () => this.#onClose());
    await upgrade.secure;
    if (this.#closed) return;
    const cipher = tls.getCipher?.()?.name ?? "?";
    const peer = credentials.verifyPeer ? `, client ${subjectOf(tls)}` : "";
    this.#log(`#${this.#id} TLS established (${tls.getProtocol?.()}, ${cipher}${peer})`);
    // Read only once TLS is up: nothing unencrypted ever reaches the handshake. The TLS socket
    // starts afresh: a full send buffer of the plain socket is now the TLS socket's to drain.
    this.#paused = false;
    this.#waitingForDrain = false;
    tls.on("data", this.#onData);
    tls.on("drain", this.#onDrain);
    this.#updateReading();
  }

  /** Opens an export for the handshake; keeps it if it is about to be served. */
  async #lookup(name: string, purpose: LookupPurpose): Promise<ExportDetails | null | Error> {
    let device: BlockDevice | null;
    try {
      device = await this.#provider.open(name);
    } catch (error) {
      this.#log(`#${this.#id} cannot open export "${name}"`, error);
      return toError(error);
    }
    if (device === null) return null;
    if (this.#released) {
      // The connection went away while the export was being opened.
      await this.#releaseDevice(device);
      return null;
    }
    let details: ExportDetails | Error;
    try {
      assertValidDevice(device);
      details = {
        size: device.size,
        capabilities: { ...device.capabilities },
        blockSizes: { ...device.blockSizes },
        ...(device.description === undefined ? {} : { description: device.description }),
      };
    } catch (error) {
      details = toError(error);
    }
    if (purpose === "go" && !(details instanceof Error)) {
      this.#candidate = device;
    } else {
      this.#releaseDevice(device);
    }
    return details;
  }

  #startTransmission(session: NegotiatedSession): void {
    const device = this.#candidate;
    this.#candidate = null;
    if (device === null) throw new Error("handshake finished without an opened device");
    if (this.#handshakeTimer !== null) clearTimeout(this.#handshakeTimer);
    this.#handshakeTimer = null;
    this.#lastProgress = Date.now();
    this.#device = device;
    const { details } = session;
    const context = {
      size: details.size,
      flags: session.flags,
      blockSizes: details.blockSizes,
      structuredReplies: session.structuredReplies,
      metaContextId: session.metaContextId,
    };
    this.#session = new TransmissionSession(context, this.#limits, this.#replyQueue());
    this.#log(
      `#${this.#id} serving "${session.name}" (${details.size} bytes, flags 0x${session.flags.toString(16)}, ` +
        `structured ${session.structuredReplies}, base:allocation ${session.metaContextId !== null}, TLS ${session.tls})`,
    );
    if (session.leftover.byteLength > 0) this.#onData(session.leftover);
  }

  // -------------------------------------------------------------------------
  // Transmission

  /** What the session needs to know of the replies queued here. */
  #replyQueue(): ReplyQueueState {
    const connection = this;
    return {
      get queuedBytes() {
        return connection.#outBytes;
      },
      get blocked() {
        return connection.#waitingForDrain;
      },
    };
  }

  /** Every parsed request comes here, in order. */
  readonly #dispatch = (req: NbdRequest): void => {
    if (this.#disconnecting) return; // closing, or nothing may follow DISC (proto.md)
    const admission = this.#session!.receive(req);
    if (admission.kind === "disconnect") {
      this.#log(`#${this.#id} client sent DISC`);
      this.#disconnecting = true;
      this.#updateReading();
      this.#idle().then(() => this.#endGracefully());
    } else if (admission.kind === "held") {
      this.#updateReading();
    } else if (admission.kind !== "ignored") {
      this.#act(admission);
    }
  };

  /** Starts held requests while the limits allow. */
  #pump(): void {
    const session = this.#session;
    if (session === null) return;
    while (!this.#closed) {
      const next = session.next();
      if (next === null) return;
      this.#act(next);
    }
  }

  /** Runs a request the session started, or sends the refusal of one it refused. */
  #act(admission: Extract<Admission, { kind: "start" | "refuse" }>): void {
    const { req } = admission;
    if (admission.kind === "refuse") {
      this.#log(`#${this.#id} refused ${commandName(req.type)}: ${admission.error.message}`);
      this.#write(admission.reply);
      return;
    }
    this.#execute(this.#session!, req);
  }

  async #execute(session: TransmissionSession, req: NbdRequest): Promise<void> {
    const device = this.#device!;
    const fua = (req.flags & NBD_CMD_FLAG.FUA) !== 0;
    try {
      switch (req.type) {
        case NBD_CMD.READ: {
          if (req.length === 0) {
            this.#write(session.ok(req));
            break;
          }
          const data = await device.read(req.offset, req.length);
          if (data.byteLength !== req.length) {
            throw new Error(`device returned ${data.byteLength} bytes for a ${req.length}-byte read`);
          }
          // Header and data back to back, so no other reply can come between them.
          this.#write(session.dataHeader(req, data));
          this.#write(data);
          break;
        }
        case NBD_CMD.WRITE:
          if (req.length > 0) await device.write(req.offset, req.payload!, { fua });
          this.#write(session.ok(req));
          break;
        case NBD_CMD.FLUSH:
          await device.flush();
          this.#write(session.ok(req));
          break;
        case NBD_CMD.TRIM:
          if (req.length > 0) await device.trim(req.offset, req.length, { fua });
          this.#write(session.ok(req));
          break;
        case NBD_CMD.WRITE_ZEROES:
          if (req.length > 0) {
            await device.writeZeroes(req.offset, req.length, {
              fua,
              noHole: (req.flags & NBD_CMD_FLAG.NO_HOLE) !== 0,
              fastZero: (req.flags & NBD_CMD_FLAG.FAST_ZERO) !== 0,
            });
          }
          this.#write(session.ok(req));
          break;
        case NBD_CMD.BLOCK_STATUS:
          this.#write(session.blockStatus(req, await device.blockStatus(req.offset, req.length)));
          break;
      }
    } catch (error) {
      const errno = errnoFor(error);
      this.#log(
        `#${this.#id} ${commandName(req.type)} at ${req.offset}+${req.length} failed (errno ${errno})`,
        error,
      );
      this.#write(session.error(req, errno, error instanceof Error ? error.message : String(error)));
    } finally {
      session.finished(req);
      this.#pump();
      this.#updateReading();
      if (session.idle) this.#wakeIdle();
    }
  }

  // -------------------------------------------------------------------------
  // Socket plumbing

  /** Queues bytes for the client; everything queued in one turn of the event loop goes out together. */
  #write(bytes: Uint8Array): void {
    if (this.#closed) return;
    this.#out.push(bytes);
    this.#outBytes += bytes.byteLength;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      // setImmediate rather than a microtask: replies completing anywhere in this turn of the
      // event loop (several socket reads, multi-step device calls) share one write.
      setImmediate(this.#flush);
    }
  }

  /**
   * Sends the queued buffers: runs of small ones are copied into one buffer
   * (one syscall instead of one per reply), large ones are written as they are
   * (no copy).
   */
  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const list = this.#out;
    this.#out = [];
    this.#outBytes = 0;
    if (this.#closed || this.#socket.destroyed || this.#socket.writableEnded) return;
    let ok = true;
    let i = 0;
    while (i < list.length) {
      const first = list[i]!;
      let total = first.byteLength;
      let j = i + 1;
      if (total < COALESCE_REPLY_BYTES) {
        while (j < list.length) {
          const n = list[j]!.byteLength;
          if (n >= COALESCE_REPLY_BYTES || total + n > MAX_COALESCED_BYTES) break;
          total += n;
          j++;
        }
      }
      if (j === i + 1) {
        ok = this.#socket.write(first);
      } else {
        const joined = Buffer.allocUnsafe(total); // every byte is overwritten below
        let at = 0;
        for (let k = i; k < j; k++) {
          joined.set(list[k]!, at);
          at += list[k]!.byteLength;
        }
        ok = this.#socket.write(joined);
      }
      i = j;
    }
    if (!ok) this.#waitingForDrain = true;
    else this.#pump(); // the queued bytes no longer count against the limit
    this.#updateReading();
  };

  /**
   * Pauses reading while too much is in flight or the client does not read replies.
   * The part of a request received so far counts too, so payloads still arriving are
   * bounded by the same limit (except when nothing else is in flight: one request always fits).
   */
  #updateReading(): void {
    if (this.#closed) return;
    const stop =
      this.#disconnecting ||
      this.#waitingForDrain ||
      (this.#session?.shouldPause() ?? this.#outBytes > this.#limits.maxInFlightBytes);
    if (stop && !this.#paused) {
      this.#paused = true;
      this.#clearStallTimer(); // a request we stopped reading is not stalled by the client
      this.#socket.pause();
    } else if (!stop && this.#paused) {
      this.#paused = false;
      this.#socket.resume();
      this.#lastProgress = Date.now();
      if (this.#session?.parser.midRequest) this.#armStallTimer();
    }
  }

  /** Resolves when no request is in flight or held (held ones are dropped once the socket closes). */
  #idle(): Promise<void> {
    if (this.#session === null || this.#session.idle) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #wakeIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }

  /** Sends what is queued, then closes (soft disconnect, NBD_OPT_ABORT, refused handshake). */
  #endGracefully(): void {
    this.#disconnecting = true;
    this.#closeSoon();
  }

  /** Sends what is queued and closes; destroys the socket if the client does not take the bytes in time. */
  #closeSoon(): void {
    if (this.#closed) return;
    this.#flush();
    // With TLS, end() sends close_notify first (proto.md: shut TLS down before the TCP session).
    this.#socket.end(() => this.#destroy());
    const timer = setTimeout(() => this.#destroy(), CLOSE_GRACE_MS);
    (timer as { unref?: () => void }).unref?.();
  }

  /** Closes at once (protocol violation, timeout, internal error). */
  #abort(reason: string, error?: unknown): void {
    this.#log(`#${this.#id} disconnecting: ${reason}`, error);
    this.#disconnecting = true;
    this.#destroy();
  }

  /** Destroys the TLS socket (if any) and the socket under it. */
  #destroy(): void {
    this.#socket.destroy();
    if (this.#raw !== this.#socket) this.#raw.destroy();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#disconnecting = true;
    if (this.#handshakeTimer !== null) clearTimeout(this.#handshakeTimer);
    this.#clearStallTimer();
    if (this.#raw !== this.#socket) this.#destroy(); // one side closed: the other goes too
    this.#log(`#${this.#id} closed`);
    this.#onGone();
    // Held requests can no longer be answered.
    this.#session?.closed();
    if (this.#session === null || this.#session.idle) this.#wakeIdle();
    // Requests in flight still complete (their replies are dropped) before the device goes.
    this.#idle().then(() => this.#release());
  }

  /** Releases the devices once no request is in flight. Idempotent. */
  async #release(): Promise<void> {
    await this.#idle();
    if (this.#released) return;
    this.#released = true;
    const devices = [this.#device, this.#candidate].filter((d): d is BlockDevice => d !== null);
    this.#device = null;
    this.#candidate = null;
    await Promise.all(devices.map((d) => this.#releaseDevice(d)));
  }

  async #releaseDevice(device: BlockDevice): Promise<void> {
    try {
      await this.#provider.release(device);
    } catch (error) {
      this.#log(`#${this.#id} release failed`, error);
    }
  }
}

/** The subject CN of a verified client certificate, for logs. */
function subjectOf(socket: tls.TLSSocket): string {
  const cn = socket.getPeerCertificate?.()?.subject?.CN;
  return typeof cn === "string" ? `CN=${cn}` : "(no CN)";
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
