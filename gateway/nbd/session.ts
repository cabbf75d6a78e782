/**
 * One connection's transmission phase without I/O: which parsed requests start
 * now and which are held (the in-flight limits), what NBD_CMD_DISC does, when
 * the socket should stop being read, and which reply kind each answer takes
 * (simple or structured, as negotiated). `nbd-server.ts` feeds it requests and
 * completions, runs the device calls and writes the bytes it returns; the
 * socket's own state (replies queued, send buffer full) comes in through
 * {@link ReplyQueueState}.
 *
 * @module
 */
import type { Extent } from "./block-device.ts";
import { NBD_CMD, NBD_CMD_FLAG, NBD_ERRNO, NBD_REPLY_FLAG } from "./constants.ts";
import {
  encodeBlockStatus,
  encodeErrorChunk,
  encodeNoneChunk,
  encodeOffsetDataHeader,
  encodeSimpleReply,
  type NbdRequest,
  type RequestError,
  RequestParser,
  type TransmissionContext,
  toStatusDescriptors,
  validateRequest,
} from "./transmission.ts";

/** Per-connection bounds on work in flight. */
export interface SessionLimits {
  /** Request payloads and reply data in flight or queued, plus a request partly received. */
  readonly maxInFlightBytes: number;
  /** Requests started and not yet answered. */
  readonly maxInFlightRequests: number;
}

/** What the socket side reports about replies not yet handed to the kernel. */
export interface ReplyQueueState {
  /** Reply bytes queued for the next socket write. */
  readonly queuedBytes: number;
  /** True while the socket's send buffer is full (the client is not reading replies). */
  readonly blocked: boolean;
}

/** What to do with a request that was just parsed. */
export type Admission =
  /** Run it on the device now; it is counted until {@link TransmissionSession.finished}. */
  | { readonly kind: "start"; readonly req: NbdRequest }
  /** Invalid: send `reply` (an error) and nothing else; not counted. */
  | {
      readonly kind: "refuse";
      readonly req: NbdRequest;
      readonly reply: Uint8Array;
      readonly error: RequestError;
    }
  /** Held in order until the limits allow it ({@link TransmissionSession.next}). */
  | { readonly kind: "held" }
  /** NBD_CMD_DISC: stop reading; answer what was received, then close. */
  | { readonly kind: "disconnect" }
  /** Arrived after DISC or shutdown: proto.md says nothing may follow DISC. */
  | { readonly kind: "ignored" };

/** Started entries are dropped from the held list once this many have gone. */
const BACKLOG_COMPACT_AT = 1024;

/** The sans-IO state of one connection in the transmission phase. */
export class TransmissionSession {
  /** What requests are checked against. */
  readonly context: TransmissionContext;
  /** Parses this connection's request bytes. */
  readonly parser: RequestParser;
  readonly #limits: SessionLimits;
  readonly #replies: ReplyQueueState;
  #inFlight = 0;
  #inFlightBytes = 0;
  #disconnecting = false;
  /** Requests read but not started (limits reached); `#backlogStart` is the next one. */
  #backlog: NbdRequest[] = [];
  #backlogStart = 0;

  constructor(context: TransmissionContext, limits: SessionLimits, replies: ReplyQueueState) {
    this.context = context;
    this.#limits = limits;
    this.#replies = replies;
    this.parser = new RequestParser({ maxPayload: context.blockSizes.maximum });
  }

  /** Requests started and not finished. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Bytes those requests hold (WRITE payloads, READ replies). */
  get inFlightBytes(): number {
    return this.#inFlightBytes;
  }

  /** Requests held by the limits. */
  get held(): number {
    return this.#backlog.length - this.#backlogStart;
  }

  /** True after DISC or {@link stop}: nothing more is read or started from the client. */
  get disconnecting(): boolean {
    return this.#disconnecting;
  }

  /** True when nothing is in flight or held. */
  get idle(): boolean {
    return this.#inFlight === 0 && this.held === 0;
  }

  /** Every parsed request comes here, in order. */
  receive(req: NbdRequest): Admission {
    if (this.#disconnecting) return { kind: "ignored" };
    if (req.type === NBD_CMD.DISC) {
      // Requests before DISC are still served (proto.md: "MUST handle all outstanding requests").
      this.#disconnecting = true;
      return { kind: "disconnect" };
    }
    // Requests already read are held in order while the limits are reached, so one socket
    // read full of small requests cannot start an unbounded amount of work.
    if (this.held > 0 || this.#mustWait(req)) {
      this.#backlog.push(req);
      return { kind: "held" };
    }
    return this.#begin(req);
  }

  /** The next held request the limits now allow (started or refused), or null. */
  next(): Exclude<Admission, { kind: "held" | "disconnect" | "ignored" }> | null {
    if (this.held === 0) return null;
    const req = this.#backlog[this.#backlogStart]!;
    if (this.#mustWait(req)) return null;
    this.#backlogStart++;
    if (this.#backlogStart === this.#backlog.length) {
      this.#backlog = [];
      this.#backlogStart = 0;
    } else if (this.#backlogStart >= BACKLOG_COMPACT_AT && this.#backlogStart * 2 >= this.#backlog.length) {
      this.#backlog = this.#backlog.slice(this.#backlogStart);
      this.#backlogStart = 0;
    }
    return this.#begin(req);
  }

  /** A started request was answered (or failed): it no longer counts against the limits. */
  finished(req: NbdRequest): void {
    this.#inFlight--;
    this.#inFlightBytes -= cost(req);
  }

  /**
   * Stops taking requests (the server is shutting down): returns the held ones with
   * the error reply each gets (ESHUTDOWN, which proto.md allows for this).
   */
  stop(): { req: NbdRequest; reply: Uint8Array }[] {
    this.#disconnecting = true;
    const held = this.#backlog.slice(this.#backlogStart);
    this.#dropHeld();
    return held.map((req) => ({
      req,
      reply: this.error(req, NBD_ERRNO.ESHUTDOWN, "The server is shutting down"),
    }));
  }

  /** The socket closed: held requests can no longer be answered and are dropped. */
  closed(): void {
    this.#disconnecting = true;
    this.#dropHeld();
  }

  /**
   * True when the socket should not be read: after DISC, while the client is not reading
   * replies, while requests are held, or while the bytes in flight (the part of a request
   * received so far included, unless nothing else is in flight: one request always fits)
   * or the requests in flight are at their limit.
   */
  shouldPause(): boolean {
    const queued = this.#replies.queuedBytes;
    const busy = this.#inFlight > 0 || queued > 0;
    const partial = busy ? this.parser.buffered : 0;
    return (
      this.#disconnecting ||
      this.#replies.blocked ||
      this.held > 0 ||
      this.#inFlightBytes + queued + partial > this.#limits.maxInFlightBytes ||
      this.#inFlight >= this.#limits.maxInFlightRequests
    );
  }

  // -------------------------------------------------------------------------
  // Replies for this session's reply kind

  /** A success without data. */
  ok(req: NbdRequest): Uint8Array {
    // A simple reply is allowed for any success without data, structured or not (proto.md),
    // except a READ, which must get a structured reply once negotiated.
    if (this.context.structuredReplies && req.type === NBD_CMD.READ) return encodeNoneChunk(req.handle);
    return encodeSimpleReply(req.handle, 0);
  }

  /** The header that goes right before a READ's data. */
  dataHeader(req: NbdRequest, data: Uint8Array): Uint8Array {
    // One content chunk covering the whole request, marked final: valid with or without DF.
    return this.context.structuredReplies
      ? encodeOffsetDataHeader(req.handle, NBD_REPLY_FLAG.DONE, req.offset, data.byteLength)
      : encodeSimpleReply(req.handle, 0);
  }

  /** An error reply; errno 0 becomes EIO. */
  error(req: NbdRequest, errno: number, message: string): Uint8Array {
    const code = errno === 0 ? NBD_ERRNO.EIO : errno;
    // Simple READ error replies carry no data (proto.md allows that instead of disconnecting).
    if (this.context.structuredReplies)
      return encodeErrorChunk(req.handle, NBD_REPLY_FLAG.DONE, code, message);
    return encodeSimpleReply(req.handle, code);
  }

  /** A BLOCK_STATUS reply for the device's extents, cut to the request. */
  blockStatus(req: NbdRequest, extents: readonly Extent[]): Uint8Array {
    const descriptors = toStatusDescriptors(extents, req.length, (req.flags & NBD_CMD_FLAG.REQ_ONE) !== 0);
    return encodeBlockStatus(req.handle, NBD_REPLY_FLAG.DONE, this.context.metaContextId ?? 0, descriptors);
  }

  // -------------------------------------------------------------------------

  #begin(req: NbdRequest): Exclude<Admission, { kind: "held" | "disconnect" | "ignored" }> {
    const refused = validateRequest(req, this.context);
    if (refused !== null) {
      return { kind: "refuse", req, reply: this.error(req, refused.errno, refused.message), error: refused };
    }
    this.#inFlight++;
    this.#inFlightBytes += cost(req);
    return { kind: "start", req };
  }

  #mustWait(req: NbdRequest): boolean {
    if (this.#replies.blocked) return true;
    const queued = this.#replies.queuedBytes;
    if (this.#inFlight === 0 && queued === 0) return false; // one request always fits, however large
    return (
      this.#inFlight >= this.#limits.maxInFlightRequests ||
      // Replies queued for the next write count too: requests that complete at once (a cache
      // hit) would otherwise run the whole backlog within one turn of the event loop.
      this.#inFlightBytes + queued + cost(req) > this.#limits.maxInFlightBytes
    );
  }

  #dropHeld(): void {
    this.#backlog = [];
    this.#backlogStart = 0;
  }
}

/** Bytes a request holds while in flight: its WRITE payload or its READ reply. */
function cost(req: NbdRequest): number {
  return req.type === NBD_CMD.READ || req.type === NBD_CMD.WRITE ? req.length : 0;
}
