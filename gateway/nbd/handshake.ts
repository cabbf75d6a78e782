/**
 * The NBD fixed-newstyle handshake (option haggling) as a sans-IO state
 * machine. It never touches a socket and never awaits: bytes go in through
 * {@link Handshake.feed}, and every call returns a {@link HandshakeStep}: the
 * bytes to send, in order, and what happens next. When the handshake needs to
 * know something about exports it stops and asks ("list" or "lookup"); the
 * caller finds out (asynchronously) and answers with {@link Handshake.answerList}
 * or {@link Handshake.answerLookup}, which continue where it stopped. Bytes fed
 * while an answer is pending are kept and processed after the answer.
 *
 * Supported options (proto.md "Option types"): EXPORT_NAME, ABORT, LIST, INFO,
 * GO, STRUCTURED_REPLY, LIST_META_CONTEXT and SET_META_CONTEXT (only
 * `base:allocation`), and STARTTLS when TLS is configured. Everything else gets
 * NBD_REP_ERR_UNSUP.
 *
 * TLS (proto.md "TLS support"): with `{ tls: "none" }` (the default) the server
 * is in NOTLS mode and STARTTLS gets NBD_REP_ERR_POLICY. With
 * `{ tls: "required" }` it is in FORCEDTLS mode: until STARTTLS succeeds every
 * option but STARTTLS and ABORT is answered NBD_REP_ERR_TLS_REQD (its data
 * skipped, never buffered) and EXPORT_NAME ends the session. STARTTLS is
 * acknowledged and the step says "starttls": the caller sends the ACK,
 * upgrades the connection, calls {@link Handshake.tlsStarted} and feeds the
 * decrypted bytes from then on; option haggling starts over inside TLS.
 *
 * @example
 * const hs = new Handshake({ tls: "required" });
 * socket.write(hs.start());
 * socket.on("data", (chunk) => drive(hs.feed(chunk)));
 *
 * @module
 */
import {
  type BlockDeviceCapabilities,
  type BlockSizes,
  type ExportEntry,
  exportFlags,
} from "./block-device.ts";
import {
  BASE_ALLOCATION,
  NBD_CLIENT_FLAG,
  NBD_HANDSHAKE_FLAG,
  NBD_INFO,
  NBD_MAGIC,
  NBD_OPT,
  NBD_REP,
  NBD_SIZE,
} from "./constants.ts";
import { Reader, utf8, Writer } from "./cursor.ts";

/**
 * Largest option payload kept in memory: an export name of the spec's maximum
 * 4 KiB plus info requests and several meta-context queries fit with room to
 * spare. Larger options are skipped without buffering and refused with
 * NBD_REP_ERR_TOO_BIG (NBD_OPT_EXPORT_NAME cannot be refused: disconnect).
 */
export const MAX_OPTION_BYTES = 16 * 1024;

/** The metadata context ID we give `base:allocation` on NBD_OPT_SET_META_CONTEXT (any u32 is allowed). */
export const BASE_ALLOCATION_ID = 1;

/** What the handshake needs to know about an export to describe it. */
export interface ExportDetails {
  readonly size: number;
  readonly capabilities: BlockDeviceCapabilities;
  readonly blockSizes: BlockSizes;
  readonly description?: string;
}

/** What was agreed when the handshake ends in the transmission phase. */
export interface NegotiatedSession {
  /** Export name the client chose. */
  readonly name: string;
  readonly details: ExportDetails;
  /** Transmission flags sent to the client. */
  readonly flags: number;
  /** NBD_OPT_STRUCTURED_REPLY was acknowledged. */
  readonly structuredReplies: boolean;
  /** ID of `base:allocation` if the client selected it for this export, else null. */
  readonly metaContextId: number | null;
  /** Bytes received after the handshake: the start of the transmission phase. */
  readonly leftover: Uint8Array;
  /** Option haggling ended inside TLS. */
  readonly tls: boolean;
}

/**
 * TLS policy of a handshake. "none": NOTLS mode, STARTTLS is refused.
 * "required": FORCEDTLS mode, nothing but STARTTLS and ABORT before TLS.
 */
export type HandshakeTls = "none" | "required";

/** Options of a {@link Handshake}. */
export interface HandshakeOptions {
  /** Default "none". */
  readonly tls?: HandshakeTls;
}

/** Why the handshake asks for an export lookup. */
export type LookupPurpose = "info" | "go" | "meta";

/** What the caller must do after a step. */
export type HandshakeNext =
  /** Feed more bytes when they arrive. */
  | { readonly kind: "more" }
  /** An answer is still pending; the bytes were kept. */
  | { readonly kind: "wait" }
  /** Call `answerList` with the exports to list. */
  | { readonly kind: "list" }
  /** Look the export up and call `answerLookup`. With purpose "go" a positive answer ends the handshake. */
  | { readonly kind: "lookup"; readonly name: string; readonly purpose: LookupPurpose }
  /**
   * NBD_OPT_STARTTLS was acknowledged: send `send` in plaintext, upgrade the
   * connection to TLS (server side), then call `tlsStarted()` and feed only
   * decrypted bytes. Nothing was buffered past the option (that is refused).
   */
  | { readonly kind: "starttls" }
  /** The handshake is over: serve the export. */
  | { readonly kind: "transmission"; readonly session: NegotiatedSession }
  /** Close the connection (after sending `send`). */
  | { readonly kind: "close"; readonly reason: string };

/** Output of every handshake call. */
export interface HandshakeStep {
  /** Bytes to write to the client, in order, before acting on `next`. */
  readonly send: Uint8Array[];
  readonly next: HandshakeNext;
}

type Phase = "flags" | "option-header" | "option-data" | "option-skip" | "waiting" | "tls-upgrade" | "done";

type Pending =
  | { kind: "list" }
  | { kind: "export-name"; name: string }
  | { kind: "info"; option: number; name: string; infos: number[] }
  | { kind: "meta"; option: number; name: string; queries: string[] };

const EMPTY = new Uint8Array(0);
const KNOWN_CLIENT_FLAGS = NBD_CLIENT_FLAG.C_FIXED_NEWSTYLE | NBD_CLIENT_FLAG.C_NO_ZEROES;
const SERVER_HANDSHAKE_FLAGS = NBD_HANDSHAKE_FLAG.FIXED_NEWSTYLE | NBD_HANDSHAKE_FLAG.NO_ZEROES;

/** A string field that is not acceptable; `tooBig` selects NBD_REP_ERR_TOO_BIG over ERR_INVALID. */
class BadOption extends Error {
  readonly tooBig: boolean;
  constructor(message: string, tooBig = false) {
    super(message);
    this.tooBig = tooBig;
  }
}

/** Decodes a protocol string: UTF-8, no NUL, at most 4096 bytes (proto.md "Conventions"). */
function decodeString(bytes: Uint8Array, what: string): string {
  if (bytes.byteLength > NBD_SIZE.MAX_STRING) {
    throw new BadOption(`${what} is ${bytes.byteLength} bytes, more than ${NBD_SIZE.MAX_STRING}`, true);
  }
  if (bytes.includes(0)) throw new BadOption(`${what} contains a NUL byte`);
  try {
    return new Reader(bytes).string(bytes.byteLength);
  } catch {
    throw new BadOption(`${what} is not valid UTF-8`);
  }
}

/** Encodes one option reply: header plus optional data. */
export function encodeOptionReply(option: number, type: number, data: Uint8Array = EMPTY): Uint8Array {
  return new Writer(NBD_SIZE.OPTION_REPLY_HEADER + data.byteLength)
    .u64(NBD_MAGIC.REPLY)
    .u32(option)
    .u32(type)
    .u32(data.byteLength)
    .bytes(data)
    .finish();
}

/** The server's opening bytes: NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeGreeting(): Uint8Array {
  return new Writer(NBD_SIZE.GREETING)
    .u64(NBD_MAGIC.INIT)
    .u64(NBD_MAGIC.OPTS)
    .u16(SERVER_HANDSHAKE_FLAGS)
    .finish();
}

/**
 * One connection's handshake. Create one per connection, send `start()`, then
 * feed every received chunk until the step says "transmission" or "close".
 */
export class Handshake {
  readonly #tlsRequired: boolean;
  /** STARTTLS succeeded: every byte fed since then came out of TLS. */
  #tls = false;
  #phase: Phase = "flags";
  /** Unprocessed received bytes: a view of a received chunk or of `#storage`. */
  #buf: Uint8Array = EMPTY;
  #storage: Uint8Array = EMPTY;
  #out: Uint8Array[] = [];
  #noZeroes = false;
  #structured = false;
  #metaContextId: number | null = null;
  #metaExport: string | null = null;
  #option = 0;
  #optionLength = 0;
  #skipLeft = 0;
  #pending: Pending | null = null;
  #closed: string | null = null;

  constructor(options: HandshakeOptions = {}) {
    this.#tlsRequired = (options.tls ?? "none") === "required";
  }

  /** The greeting to send as soon as the client connects. */
  start(): Uint8Array {
    return encodeGreeting();
  }

  /** Structured replies have been negotiated so far. */
  get structuredReplies(): boolean {
    return this.#structured;
  }

  /** TLS is active (STARTTLS succeeded and {@link tlsStarted} was called). */
  get tls(): boolean {
    return this.#tls;
  }

  /** Processes received bytes. */
  feed(chunk: Uint8Array): HandshakeStep {
    if (this.#phase === "done")
      throw new Error("Handshake is over: feed transmission bytes to the request parser");
    if (this.#phase === "tls-upgrade")
      throw new Error("Handshake is waiting for the TLS upgrade: call tlsStarted() first");
    if (this.#closed !== null) return { send: [], next: { kind: "close", reason: this.#closed } };
    this.#append(chunk);
    if (this.#phase === "waiting") return { send: [], next: { kind: "wait" } };
    return this.#run();
  }

  /** Answers a "list" step. An Error is reported to the client as NBD_REP_ERR_POLICY. */
  answerList(exports: readonly ExportEntry[] | Error): HandshakeStep {
    const pending = this.#takePending("list");
    if (pending.kind !== "list") throw new Error("Handshake is not waiting for an export list");
    if (exports instanceof Error) {
      this.#error(NBD_OPT.LIST, NBD_REP.ERR_POLICY, `Cannot list exports: ${exports.message}`);
    } else {
      for (const entry of exports) {
        const name = utf8(entry.name);
        const description = utf8(entry.description ?? "");
        const w = new Writer(4 + name.byteLength + description.byteLength);
        this.#reply(
          NBD_OPT.LIST,
          NBD_REP.SERVER,
          w.u32(name.byteLength).bytes(name).bytes(description).finish(),
        );
      }
      this.#reply(NBD_OPT.LIST, NBD_REP.ACK);
    }
    return this.#run();
  }

  /**
   * Answers a "lookup" step: the export's details, `null` if there is no such
   * export, or an Error if it could not be opened (reported to the client).
   */
  answerLookup(result: ExportDetails | null | Error): HandshakeStep {
    const pending = this.#takePending("lookup");
    switch (pending.kind) {
      case "export-name":
        return this.#finishExportName(pending.name, result);
      case "info":
        return this.#finishInfo(pending, result);
      case "meta":
        return this.#finishMeta(pending, result);
      default:
        throw new Error("Handshake is not waiting for an export lookup");
    }
  }

  /**
   * Reports that the connection was upgraded after a "starttls" step. Option
   * haggling continues from a clean state inside TLS (what was negotiated in
   * plaintext was only errors); the returned step asks for more bytes.
   */
  tlsStarted(): HandshakeStep {
    if (this.#phase !== "tls-upgrade") throw new Error("Handshake did not ask for a TLS upgrade");
    this.#tls = true;
    this.#phase = "option-header";
    return this.#run();
  }

  /** FORCEDTLS and TLS not yet active: options other than STARTTLS and ABORT get ERR_TLS_REQD. */
  get #mustStartTls(): boolean {
    return this.#tlsRequired && !this.#tls;
  }

  #takePending(what: string): Pending {
    const pending = this.#pending;
    if (this.#phase !== "waiting" || pending === null)
      throw new Error(`Handshake is not waiting for a ${what} answer`);
    this.#pending = null;
    this.#phase = "option-header";
    return pending;
  }

  /** Keeps received bytes; the storage grows by doubling so a trickling client costs linear time. */
  #append(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    if (this.#buf.byteLength === 0) {
      this.#buf = chunk;
      return;
    }
    const length = this.#buf.byteLength + chunk.byteLength;
    const storage = this.#storage;
    const start = this.#buf.byteOffset - storage.byteOffset;
    const ownsBuf = this.#buf.buffer === storage.buffer && start >= 0;
    if (ownsBuf && start + length <= storage.byteLength) {
      storage.set(chunk, start + this.#buf.byteLength);
      this.#buf = storage.subarray(start, start + length);
      return;
    }
    const grown = new Uint8Array(Math.max(2 * length, 256));
    grown.set(this.#buf);
    grown.set(chunk, this.#buf.byteLength);
    this.#storage = grown;
    this.#buf = grown.subarray(0, length);
  }

  #take(n: number): Uint8Array {
    const bytes = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return bytes;
  }

  #step(next: HandshakeNext): HandshakeStep {
    const send = this.#out;
    this.#out = [];
    return { send, next };
  }

  #close(reason: string): HandshakeStep {
    this.#closed = reason;
    this.#buf = EMPTY;
    return this.#step({ kind: "close", reason });
  }

  #wait(pending: Pending, next: HandshakeNext): HandshakeStep {
    this.#pending = pending;
    this.#phase = "waiting";
    return this.#step(next);
  }

  #reply(option: number, type: number, data?: Uint8Array): void {
    this.#out.push(encodeOptionReply(option, type, data));
  }

  #error(option: number, type: number, message: string): void {
    this.#reply(option, type, utf8(message.slice(0, 1024)));
  }

  #run(): HandshakeStep {
    for (;;) {
      switch (this.#phase) {
        case "flags": {
          if (this.#buf.byteLength < 4) return this.#step({ kind: "more" });
          const flags = new Reader(this.#take(4)).u32();
          if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) {
            return this.#close(`client sent unknown client flags 0x${flags.toString(16)}`);
          }
          // proto.md "Server-side requirements": without C_FIXED_NEWSTYLE the server MUST stay in
          // NOTLS mode; such a client can only send EXPORT_NAME, which FORCEDTLS refuses anyway.
          if (this.#tlsRequired && (flags & NBD_CLIENT_FLAG.C_FIXED_NEWSTYLE) === 0) {
            return this.#close("TLS is required but the client does not use fixed newstyle");
          }
          // Fixed newstyle is honoured even without NBD_FLAG_C_FIXED_NEWSTYLE (proto.md allows it);
          // such a client only ever sends NBD_OPT_EXPORT_NAME.
          this.#noZeroes = (flags & NBD_CLIENT_FLAG.C_NO_ZEROES) !== 0;
          this.#phase = "option-header";
          break;
        }
        case "option-header": {
          if (this.#buf.byteLength < NBD_SIZE.OPTION_HEADER) return this.#step({ kind: "more" });
          const r = new Reader(this.#take(NBD_SIZE.OPTION_HEADER));
          if (r.u64() !== NBD_MAGIC.OPTS)
            return this.#close("client sent an option without the IHAVEOPT magic");
          this.#option = r.u32();
          this.#optionLength = r.u32();
          if (this.#mustStartTls) {
            // proto.md "FORCEDTLS mode": EXPORT_NAME cannot be answered with an error, so the
            // session ends. Other options are skipped unread (an unauthenticated client gets no
            // buffer) and answered when their data is past; STARTTLS without data runs at once.
            if (this.#option === NBD_OPT.EXPORT_NAME) {
              return this.#close("client sent NBD_OPT_EXPORT_NAME before NBD_OPT_STARTTLS (TLS is required)");
            }
            if (this.#option === NBD_OPT.STARTTLS && this.#optionLength === 0) {
              this.#phase = "option-data";
            } else {
              this.#skipLeft = this.#optionLength;
              this.#phase = "option-skip";
            }
            break;
          }
          if (this.#optionLength > MAX_OPTION_BYTES) {
            if (this.#option === NBD_OPT.EXPORT_NAME) {
              return this.#close(`NBD_OPT_EXPORT_NAME of ${this.#optionLength} bytes is too long`);
            }
            this.#skipLeft = this.#optionLength;
            this.#phase = "option-skip";
          } else {
            this.#phase = "option-data";
          }
          break;
        }
        case "option-skip": {
          const n = Math.min(this.#skipLeft, this.#buf.byteLength);
          this.#take(n);
          this.#skipLeft -= n;
          if (this.#skipLeft > 0) return this.#step({ kind: "more" });
          this.#phase = "option-header";
          if (this.#mustStartTls) {
            const step = this.#refuseBeforeTls(this.#option);
            if (step) return step;
          } else if (this.#isKnownOption(this.#option)) {
            this.#error(
              this.#option,
              NBD_REP.ERR_TOO_BIG,
              `Option data of ${this.#optionLength} bytes is too long`,
            );
          } else {
            this.#error(this.#option, NBD_REP.ERR_UNSUP, `Option ${this.#option} is not supported`);
          }
          break;
        }
        case "option-data": {
          if (this.#buf.byteLength < this.#optionLength) return this.#step({ kind: "more" });
          this.#phase = "option-header";
          const step = this.#handleOption(this.#option, this.#take(this.#optionLength));
          if (step) return step;
          break;
        }
        case "waiting":
          return this.#step({ kind: "wait" });
        case "tls-upgrade":
          return this.#step({ kind: "starttls" });
        case "done":
          throw new Error("Handshake is over");
      }
    }
  }

  /** FORCEDTLS before TLS: the answer to an option whose data was skipped. */
  #refuseBeforeTls(option: number): HandshakeStep | null {
    switch (option) {
      case NBD_OPT.ABORT:
        // proto.md: ABORT is allowed before TLS and MUST be acknowledged.
        this.#reply(option, NBD_REP.ACK);
        return this.#close("client sent NBD_OPT_ABORT");
      case NBD_OPT.STARTTLS:
        this.#error(option, NBD_REP.ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
        return null;
      default:
        this.#error(option, NBD_REP.ERR_TLS_REQD, "TLS is required: send NBD_OPT_STARTTLS first");
        return null;
    }
  }

  /** NBD_OPT_STARTTLS without data. */
  #startTls(): HandshakeStep | null {
    if (!this.#tlsRequired) {
      this.#error(NBD_OPT.STARTTLS, NBD_REP.ERR_POLICY, "This server does not offer TLS");
      return null;
    }
    if (this.#tls) {
      // proto.md "FORCEDTLS mode": STARTTLS when TLS is already negotiated MUST get ERR_INVALID.
      this.#error(NBD_OPT.STARTTLS, NBD_REP.ERR_INVALID, "TLS is already active");
      return null;
    }
    if (this.#buf.byteLength > 0) {
      // The client MUST wait for our reply before it starts TLS, so bytes already here were sent
      // in plaintext after STARTTLS: treating them as TLS-protected would let a man in the middle
      // inject options (the STARTTLS command-injection class of bugs). Hard disconnect.
      return this.#close("client sent data after NBD_OPT_STARTTLS before the TLS handshake");
    }
    this.#reply(NBD_OPT.STARTTLS, NBD_REP.ACK);
    this.#phase = "tls-upgrade";
    return this.#step({ kind: "starttls" });
  }

  #isKnownOption(option: number): boolean {
    return (
      option !== NBD_OPT.STARTTLS &&
      option !== NBD_OPT.EXTENDED_HEADERS &&
      Object.values(NBD_OPT).includes(option as never)
    );
  }

  /** Handles one complete option; returns a step if the handshake must stop here. */
  #handleOption(option: number, data: Uint8Array): HandshakeStep | null {
    try {
      switch (option) {
        case NBD_OPT.EXPORT_NAME: {
          let name: string;
          try {
            name = decodeString(data, "Export name");
          } catch (e) {
            return this.#close((e as Error).message);
          }
          return this.#wait({ kind: "export-name", name }, { kind: "lookup", name, purpose: "go" });
        }
        case NBD_OPT.ABORT:
          // proto.md: the server MUST reply with NBD_REP_ACK, then the client drops the connection.
          this.#reply(option, NBD_REP.ACK);
          return this.#close("client sent NBD_OPT_ABORT");
        case NBD_OPT.LIST:
          if (data.byteLength !== 0) throw new BadOption("NBD_OPT_LIST takes no data");
          return this.#wait({ kind: "list" }, { kind: "list" });
        case NBD_OPT.STARTTLS:
          if (this.#tlsRequired && data.byteLength !== 0)
            throw new BadOption("NBD_OPT_STARTTLS takes no data");
          return this.#startTls();
        case NBD_OPT.INFO:
        case NBD_OPT.GO: {
          const request = parseInfoRequest(data);
          const purpose = option === NBD_OPT.GO ? "go" : "info";
          return this.#wait(
            { kind: "info", option, name: request.name, infos: request.infos },
            { kind: "lookup", name: request.name, purpose },
          );
        }
        case NBD_OPT.STRUCTURED_REPLY:
          if (data.byteLength !== 0) throw new BadOption("NBD_OPT_STRUCTURED_REPLY takes no data");
          this.#structured = true;
          this.#reply(option, NBD_REP.ACK);
          return null;
        case NBD_OPT.LIST_META_CONTEXT:
        case NBD_OPT.SET_META_CONTEXT: {
          if (!this.#structured)
            throw new BadOption("Metadata contexts need structured replies negotiated first");
          const request = parseMetaRequest(data);
          return this.#wait(
            { kind: "meta", option, name: request.name, queries: request.queries },
            { kind: "lookup", name: request.name, purpose: "meta" },
          );
        }
        default:
          this.#error(option, NBD_REP.ERR_UNSUP, `Option ${option} is not supported`);
          return null;
      }
    } catch (e) {
      if (!(e instanceof BadOption)) throw e;
      this.#error(option, e.tooBig ? NBD_REP.ERR_TOO_BIG : NBD_REP.ERR_INVALID, e.message);
      return null;
    }
  }

  #finishExportName(name: string, result: ExportDetails | null | Error): HandshakeStep {
    if (result === null) return this.#close(`client asked for unknown export "${name}"`);
    if (result instanceof Error) return this.#close(`cannot open export "${name}": ${result.message}`);
    const flags = this.#flagsFor(result);
    const padding = this.#noZeroes ? 0 : NBD_SIZE.EXPORT_NAME_PADDING;
    this.#out.push(new Writer(10 + padding).u64(result.size).u16(flags).zeroes(padding).finish());
    return this.#enterTransmission(name, result, flags);
  }

  #finishInfo(
    pending: Extract<Pending, { kind: "info" }>,
    result: ExportDetails | null | Error,
  ): HandshakeStep {
    const { option, name, infos } = pending;
    if (result === null) {
      this.#error(option, NBD_REP.ERR_UNKNOWN, `No export named "${name}"`);
      return this.#run();
    }
    if (result instanceof Error) {
      this.#error(option, NBD_REP.ERR_UNKNOWN, `Cannot open export "${name}": ${result.message}`);
      return this.#run();
    }
    const flags = this.#flagsFor(result);
    // NBD_INFO_EXPORT is always sent (proto.md: the server MUST send it).
    this.#reply(
      option,
      NBD_REP.INFO,
      new Writer(12).u16(NBD_INFO.EXPORT).u64(result.size).u16(flags).finish(),
    );
    if (infos.includes(NBD_INFO.NAME)) {
      const bytes = utf8(name);
      this.#reply(
        option,
        NBD_REP.INFO,
        new Writer(2 + bytes.byteLength).u16(NBD_INFO.NAME).bytes(bytes).finish(),
      );
    }
    if (infos.includes(NBD_INFO.DESCRIPTION) && result.description) {
      const bytes = utf8(result.description.slice(0, 1024));
      this.#reply(
        option,
        NBD_REP.INFO,
        new Writer(2 + bytes.byteLength).u16(NBD_INFO.DESCRIPTION).bytes(bytes).finish(),
      );
    }
    // Block sizes are sent even when not requested (clients ignore unrequested info, and qemu
    // does the same): a client that knows them can avoid requests we would refuse.
    const bs = result.blockSizes;
    this.#reply(
      option,
      NBD_REP.INFO,
      new Writer(14).u16(NBD_INFO.BLOCK_SIZE).u32(bs.minimum).u32(bs.preferred).u32(bs.maximum).finish(),
    );
    this.#reply(option, NBD_REP.ACK);
    if (option === NBD_OPT.GO) return this.#enterTransmission(name, result, flags);
    return this.#run();
  }

  #finishMeta(
    pending: Extract<Pending, { kind: "meta" }>,
    result: ExportDetails | null | Error,
  ): HandshakeStep {
    const { option, name, queries } = pending;
    if (result === null || result instanceof Error) {
      const why =
        result === null ? `No export named "${name}"` : `Cannot open export "${name}": ${result.message}`;
      this.#error(option, NBD_REP.ERR_UNKNOWN, why);
      return this.#run();
    }
    const offered = result.capabilities.blockStatus;
    let selected: boolean;
    if (option === NBD_OPT.LIST_META_CONTEXT) {
      // An empty query list means "all"; "base:" alone lists the whole namespace.
      selected =
        offered && (queries.length === 0 || queries.some((q) => q === BASE_ALLOCATION || q === "base:"));
      // proto.md: context IDs in a LIST reply are reserved and SHOULD be zero.
      if (selected) this.#reply(option, NBD_REP.META_CONTEXT, metaContextData(0, BASE_ALLOCATION));
    } else {
      selected = offered && queries.includes(BASE_ALLOCATION);
      // Each SET replaces the previous selection, for this export name only.
      this.#metaContextId = selected ? BASE_ALLOCATION_ID : null;
      this.#metaExport = name;
      if (selected)
        this.#reply(option, NBD_REP.META_CONTEXT, metaContextData(BASE_ALLOCATION_ID, BASE_ALLOCATION));
    }
    this.#reply(option, NBD_REP.ACK);
    return this.#run();
  }

  #flagsFor(details: ExportDetails): number {
    return exportFlags(details.capabilities, { structuredReplies: this.#structured });
  }

  #enterTransmission(name: string, details: ExportDetails, flags: number): HandshakeStep {
    this.#phase = "done";
    // Contexts selected for another export name do not apply to this one.
    const metaContextId = this.#metaExport === name ? this.#metaContextId : null;
    const leftover = this.#buf;
    this.#buf = EMPTY;
    return this.#step({
      kind: "transmission",
      session: {
        name,
        details,
        flags,
        structuredReplies: this.#structured,
        metaContextId,
        leftover,
        tls: this.#tls,
      },
    });
  }
}

function metaContextData(id: number, name: string): Uint8Array {
  const bytes = utf8(name);
  return new Writer(4 + bytes.byteLength).u32(id).bytes(bytes).finish();
}

/** NBD_OPT_INFO / NBD_OPT_GO data: u32 name length, name, u16 count, count x u16 info type. */
function parseInfoRequest(data: Uint8Array): { name: string; infos: number[] } {
  const r = new Reader(data);
  if (r.remaining < 6) throw new BadOption("Info request is shorter than 6 bytes");
  const nameLength = r.u32();
  if (nameLength > r.remaining - 2) throw new BadOption("Export name length exceeds the option data");
  const name = decodeString(r.bytes(nameLength), "Export name");
  const count = r.u16();
  if (r.remaining !== count * 2)
    throw new BadOption(`Info request count ${count} does not match the option data`);
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(r.u16());
  return { name, infos };
}

/** NBD_OPT_{LIST,SET}_META_CONTEXT data: u32 name length, name, u32 count, count x (u32 length, query). */
function parseMetaRequest(data: Uint8Array): { name: string; queries: string[] } {
  const r = new Reader(data);
  if (r.remaining < 8) throw new BadOption("Meta context request is shorter than 8 bytes");
  const nameLength = r.u32();
  if (nameLength > r.remaining - 4) throw new BadOption("Export name length exceeds the option data");
  const name = decodeString(r.bytes(nameLength), "Export name");
  const count = r.u32();
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (r.remaining < 4) throw new BadOption(`Query count ${count} exceeds the option data`);
    const length = r.u32();
    if (length > r.remaining) throw new BadOption("Query length exceeds the option data");
    queries.push(decodeString(r.bytes(length), "Query"));
  }
  if (r.remaining !== 0) throw new BadOption("Meta context request has trailing bytes");
  return { name, queries };
}
