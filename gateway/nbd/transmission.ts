/**
 * The NBD transmission phase without I/O: an incremental request parser, pure
 * reply encoders and request validation. `nbd-server.ts` wires them to a
 * socket and a block device.
 *
 * @module
 */
import type { BlockSizes, Extent } from "./block-device.ts";
import {
  NBD_CMD,
  NBD_CMD_FLAG,
  NBD_ERRNO,
  NBD_FLAG,
  NBD_MAGIC,
  NBD_REPLY_FLAG,
  NBD_REPLY_TYPE,
  NBD_SIZE,
  NBD_STATE,
} from "./constants.ts";
import { utf8 } from "./cursor.ts";
import type { NbdErrno } from "./errno.ts";

const TWO_POW_32 = 0x1_0000_0000;

/** One request from the client. */
export interface NbdRequest {
  /** NBD_CMD_FLAG_* bits. */
  readonly flags: number;
  /** NBD_CMD_* value. */
  readonly type: number;
  /** Opaque 64-bit cookie, echoed in the reply. */
  readonly handle: bigint;
  /** Byte offset. Values past 2^53 are imprecise, but those are past the end of any export anyway. */
  readonly offset: number;
  readonly length: number;
  /** The NBD_CMD_WRITE payload (`length` bytes), else null. */
  readonly payload: Uint8Array | null;
  /** A WRITE payload longer than the parser's `maxPayload` was read and thrown away. */
  readonly payloadDropped: boolean;
}

/** The client broke the framing (bad magic): the only safe reaction is to disconnect. */
export class NbdProtocolError extends Error {
  override readonly name = "NbdProtocolError";
}

/**
 * Pieces of a WRITE payload smaller than this are copied into a shared segment
 * instead of being kept as views: a client trickling a payload in tiny TCP
 * segments would otherwise cost one object per segment.
 */
const SMALL_PIECE_BYTES = 16 * 1024;

/**
 * Sizes of the segments small pieces are copied into: the first is small (a flood of
 * connections that each sent a few KiB costs a few KiB each), each next one twice
 * the last, up to the maximum.
 */
const FIRST_SEGMENT_BYTES = 4 * 1024;
const MAX_SEGMENT_BYTES = 64 * 1024;

/**
 * Parses requests from a byte stream that arrives in arbitrary pieces. Leftover
 * bytes (a partial header or payload) are kept until the next `push`. WRITE
 * payloads that arrive whole inside one chunk are passed on as a view of that
 * chunk (no copy); others are kept as they arrive (views of large pieces, small
 * ones copied together) and assembled into one buffer of the exact size when
 * the last byte is in, so memory follows the bytes received, never the length a
 * header announces. Payloads longer than `maxPayload` are consumed without
 * being kept.
 *
 * @example
 * const parser = new RequestParser({ maxPayload: 32 << 20 });
 * socket.on("data", (chunk) => parser.push(chunk, handle));
 */
export class RequestParser {
  readonly #maxPayload: number;
  readonly #header = new Uint8Array(NBD_SIZE.REQUEST);
  #headerFill = 0;
  // The request whose payload is being received or dropped.
  #flags = 0;
  #type = 0;
  #handle = 0n;
  #offset = 0;
  #length = 0;
  /** Pieces of the payload being received (null when none is); `#payloadFill` bytes in all. */
  #pieces: Uint8Array[] | null = null;
  #payloadFill = 0;
  /** The segment small pieces are being copied into, and how much of it is used. */
  #segment: Uint8Array | null = null;
  #segmentFill = 0;
  #nextSegmentBytes = FIRST_SEGMENT_BYTES;
  #dropLeft = 0;

  constructor(options: { maxPayload: number }) {
    this.#maxPayload = options.maxPayload;
  }

  /** Bytes of a partial request held between pushes (for tests and accounting). */
  get buffered(): number {
    return this.#headerFill + this.#payloadFill;
  }

  /**
   * Memory held for the payload being received: the buffers its pieces keep alive and
   * the open segment. Follows the bytes received (at most about twice that, plus one
   * segment), never the length the header announced.
   */
  get retainedBytes(): number {
    let n = this.#segment?.byteLength ?? 0;
    const seen = new Set<ArrayBufferLike>();
    for (const piece of this.#pieces ?? []) {
      if (seen.has(piece.buffer)) continue;
      seen.add(piece.buffer);
      n += piece.buffer.byteLength;
    }
    return n;
  }

  /** A request has begun and not ended: part of a header, or a payload being received or dropped. */
  get midRequest(): boolean {
    return this.#headerFill > 0 || this.#pieces !== null || this.#dropLeft > 0;
  }

  /**
   * Parses `chunk`, calling `onRequest` for every complete request in order.
   * Throws NbdProtocolError on a request without the request magic; the parser
   * is then unusable.
   */
  push(chunk: Uint8Array, onRequest: (request: NbdRequest) => void): void {
    const end = chunk.byteLength;
    let pos = 0;
    while (pos < end) {
      if (this.#pieces !== null) {
        const n = Math.min(this.#length - this.#payloadFill, end - pos);
        this.#keep(chunk.subarray(pos, pos + n));
        pos += n;
        if (this.#payloadFill === this.#length) this.#emit(onRequest, this.#assemble(), false);
        continue;
      }
      if (this.#dropLeft > 0) {
        const n = Math.min(this.#dropLeft, end - pos);
        this.#dropLeft -= n;
        pos += n;
        if (this.#dropLeft === 0) this.#emit(onRequest, null, true);
        continue;
      }
      if (this.#headerFill === 0 && end - pos >= NBD_SIZE.REQUEST) {
        this.#readHeader(chunk, pos);
        pos += NBD_SIZE.REQUEST;
      } else {
        const n = Math.min(NBD_SIZE.REQUEST - this.#headerFill, end - pos);
        this.#header.set(chunk.subarray(pos, pos + n), this.#headerFill);
        this.#headerFill += n;
        pos += n;
        if (this.#headerFill < NBD_SIZE.REQUEST) {
          // Refuse garbage as soon as the magic is complete rather than wait for a full header.
          if (this.#headerFill >= 4) checkMagic(this.#header, 0);
          return;
        }
        this.#headerFill = 0;
        this.#readHeader(this.#header, 0);
      }
      if (this.#type !== NBD_CMD.WRITE || this.#length === 0) {
        this.#emit(onRequest, null, false);
      } else if (this.#length > this.#maxPayload) {
        this.#dropLeft = this.#length;
      } else if (end - pos >= this.#length) {
        const payload = chunk.subarray(pos, pos + this.#length);
        pos += this.#length;
        this.#emit(onRequest, payload, false);
      } else {
        this.#pieces = [];
        this.#payloadFill = 0;
      }
    }
  }

  /** Keeps a piece of the payload: a view if it is large and most of its buffer, else a copy. */
  #keep(piece: Uint8Array): void {
    const n = piece.byteLength;
    this.#payloadFill += n;
    if (n >= SMALL_PIECE_BYTES && n * 2 >= piece.buffer.byteLength) {
      this.#closeSegment();
      this.#pieces!.push(piece);
      return;
    }
    let at = 0;
    while (at < n) {
      if (this.#segment === null) {
        // Never larger than what the payload still needs, counting this piece.
        const needed = this.#length - (this.#payloadFill - n + at);
        this.#segment = new Uint8Array(Math.min(this.#nextSegmentBytes, needed));
        this.#segmentFill = 0;
        this.#nextSegmentBytes = Math.min(2 * this.#nextSegmentBytes, MAX_SEGMENT_BYTES);
      }
      const take = Math.min(n - at, this.#segment.byteLength - this.#segmentFill);
      this.#segment.set(piece.subarray(at, at + take), this.#segmentFill);
      this.#segmentFill += take;
      at += take;
      if (this.#segmentFill === this.#segment.byteLength) this.#closeSegment();
    }
  }

  #closeSegment(): void {
    if (this.#segment === null) return;
    this.#pieces!.push(this.#segment.subarray(0, this.#segmentFill));
    this.#segment = null;
    this.#segmentFill = 0;
  }

  /** The whole payload in one buffer: the only piece as it is, else the pieces copied together. */
  #assemble(): Uint8Array {
    this.#closeSegment();
    const pieces = this.#pieces!;
    this.#pieces = null;
    this.#payloadFill = 0;
    this.#nextSegmentBytes = FIRST_SEGMENT_BYTES;
    if (pieces.length === 1) return pieces[0]!;
    const payload = new Uint8Array(this.#length);
    let at = 0;
    for (const piece of pieces) {
      payload.set(piece, at);
      at += piece.byteLength;
    }
    return payload;
  }

  #readHeader(b: Uint8Array, at: number): void {
    checkMagic(b, at);
    this.#flags = (b[at + 4]! << 8) | b[at + 5]!;
    this.#type = (b[at + 6]! << 8) | b[at + 7]!;
    this.#handle = getHandle(b, at + 8);
    this.#offset = get32(b, at + 16) * TWO_POW_32 + get32(b, at + 20);
    this.#length = get32(b, at + 24);
  }

  #emit(onRequest: (request: NbdRequest) => void, payload: Uint8Array | null, payloadDropped: boolean): void {
    onRequest({
      flags: this.#flags,
      type: this.#type,
      handle: this.#handle,
      offset: this.#offset,
      length: this.#length,
      payload,
      payloadDropped,
    });
  }
}

// ---------------------------------------------------------------------------
// Encoders. Pure: each returns a new buffer. Headers that precede bulk data
// (READ replies) are returned alone so the caller can send header and data
// without copying the data. Bytes are stored by hand rather than through a
// DataView: these run once per request, and a DataView over a fresh small
// array costs more than the whole encoding.

const scratch = new DataView(new ArrayBuffer(8));

function checkMagic(b: Uint8Array, at: number): void {
  const magic = get32(b, at);
  if (magic !== NBD_MAGIC.REQUEST) {
    throw new NbdProtocolError(
      `Request has magic 0x${magic.toString(16)}, expected 0x${NBD_MAGIC.REQUEST.toString(16)}`,
    );
  }
}

function get32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

function getHandle(b: Uint8Array, at: number): bigint {
  for (let i = 0; i < 8; i++) scratch.setUint8(i, b[at + i]!);
  return scratch.getBigUint64(0);
}

function put16(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 8;
  b[at + 1] = v;
}

function put32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = v >>> 16;
  b[at + 2] = v >>> 8;
  b[at + 3] = v;
}

function put64(b: Uint8Array, at: number, v: number): void {
  put32(b, at, Math.floor(v / TWO_POW_32));
  put32(b, at + 4, v >>> 0);
}

function putHandle(b: Uint8Array, at: number, handle: bigint): void {
  scratch.setBigUint64(0, handle);
  b[at] = scratch.getUint8(0);
  b[at + 1] = scratch.getUint8(1);
  b[at + 2] = scratch.getUint8(2);
  b[at + 3] = scratch.getUint8(3);
  b[at + 4] = scratch.getUint8(4);
  b[at + 5] = scratch.getUint8(5);
  b[at + 6] = scratch.getUint8(6);
  b[at + 7] = scratch.getUint8(7);
}

/** A buffer of `size` bytes starting with a structured reply chunk header. */
function structuredHeader(
  size: number,
  flags: number,
  type: number,
  handle: bigint,
  length: number,
): Uint8Array {
  const b = new Uint8Array(size);
  put32(b, 0, NBD_MAGIC.STRUCTURED_REPLY);
  put16(b, 4, flags);
  put16(b, 6, type);
  putHandle(b, 8, handle);
  put32(b, 16, length);
  return b;
}

/** A simple reply (16 bytes): success when `error` is 0. A READ success is followed by the data. */
export function encodeSimpleReply(handle: bigint, error: number): Uint8Array {
  const b = new Uint8Array(NBD_SIZE.SIMPLE_REPLY);
  put32(b, 0, NBD_MAGIC.SIMPLE_REPLY);
  put32(b, 4, error);
  putHandle(b, 8, handle);
  return b;
}

/** The 28 bytes that precede `dataLength` bytes of data in an NBD_REPLY_TYPE_OFFSET_DATA chunk. */
export function encodeOffsetDataHeader(
  handle: bigint,
  flags: number,
  offset: number,
  dataLength: number,
): Uint8Array {
  const H = NBD_SIZE.STRUCTURED_REPLY_HEADER;
  const b = structuredHeader(H + 8, flags, NBD_REPLY_TYPE.OFFSET_DATA, handle, 8 + dataLength);
  put64(b, H, offset);
  return b;
}

/** An NBD_REPLY_TYPE_OFFSET_HOLE chunk: `holeLength` bytes at `offset` read as zeroes. */
export function encodeOffsetHole(
  handle: bigint,
  flags: number,
  offset: number,
  holeLength: number,
): Uint8Array {
  const H = NBD_SIZE.STRUCTURED_REPLY_HEADER;
  const b = structuredHeader(H + 12, flags, NBD_REPLY_TYPE.OFFSET_HOLE, handle, 12);
  put64(b, H, offset);
  put32(b, H + 8, holeLength);
  return b;
}

/** One `base:allocation` descriptor as sent on the wire. */
export interface StatusDescriptor {
  readonly length: number;
  /** NBD_STATE_* bits. */
  readonly flags: number;
}

/** An NBD_REPLY_TYPE_BLOCK_STATUS chunk for one metadata context. */
export function encodeBlockStatus(
  handle: bigint,
  flags: number,
  contextId: number,
  descriptors: readonly StatusDescriptor[],
): Uint8Array {
  const length = 4 + 8 * descriptors.length;
  const H = NBD_SIZE.STRUCTURED_REPLY_HEADER;
  const b = structuredHeader(H + length, flags, NBD_REPLY_TYPE.BLOCK_STATUS, handle, length);
  put32(b, H, contextId);
  let at = H + 4;
  for (const d of descriptors) {
    put32(b, at, d.length);
    put32(b, at + 4, d.flags);
    at += 8;
  }
  return b;
}

/** Longest error message we send; the wire allows 65535 but the spec caps strings at 4096. */
const MAX_MESSAGE_BYTES = 1024;

function messageBytes(message: string): Uint8Array {
  let bytes = utf8(message);
  // Cut by characters so multi-byte sequences stay whole.
  for (let chars = message.length; bytes.byteLength > MAX_MESSAGE_BYTES; chars = Math.floor(chars * 0.75)) {
    bytes = utf8(message.slice(0, chars));
  }
  return bytes;
}

/** An NBD_REPLY_TYPE_ERROR chunk with an optional human-readable message. */
export function encodeErrorChunk(handle: bigint, flags: number, error: number, message = ""): Uint8Array {
  const text = messageBytes(message);
  const length = 6 + text.byteLength;
  const H = NBD_SIZE.STRUCTURED_REPLY_HEADER;
  const b = structuredHeader(H + length, flags, NBD_REPLY_TYPE.ERROR, handle, length);
  put32(b, H, error);
  put16(b, H + 4, text.byteLength);
  b.set(text, H + 6);
  return b;
}

/** An NBD_REPLY_TYPE_ERROR_OFFSET chunk: the error happened at `offset`. */
export function encodeErrorOffsetChunk(
  handle: bigint,
  flags: number,
  error: number,
  offset: number,
  message = "",
): Uint8Array {
  const text = messageBytes(message);
  const length = 14 + text.byteLength;
  const H = NBD_SIZE.STRUCTURED_REPLY_HEADER;
  const b = structuredHeader(H + length, flags, NBD_REPLY_TYPE.ERROR_OFFSET, handle, length);
  put32(b, H, error);
  put16(b, H + 4, text.byteLength);
  b.set(text, H + 6);
  put64(b, H + 6 + text.byteLength, offset);
  return b;
}

/** An NBD_REPLY_TYPE_NONE chunk: always final (DONE), no payload. */
export function encodeNoneChunk(handle: bigint): Uint8Array {
  return structuredHeader(
    NBD_SIZE.STRUCTURED_REPLY_HEADER,
    NBD_REPLY_FLAG.DONE,
    NBD_REPLY_TYPE.NONE,
    handle,
    0,
  );
}

// ---------------------------------------------------------------------------
// Block status.

/**
 * Turns a device's extents into wire descriptors for a request of `length`
 * bytes: drops empty extents, merges neighbours with the same status, cuts the
 * total to `length`, and keeps only the first with REQ_ONE. A device that
 * reported nothing usable gets one descriptor of status 0 ("allocated, contents
 * unknown", always a safe answer per proto.md).
 */
export function toStatusDescriptors(
  extents: readonly Extent[],
  length: number,
  reqOne: boolean,
): StatusDescriptor[] {
  const out: { length: number; flags: number }[] = [];
  let covered = 0;
  for (const e of extents) {
    if (covered >= length) break;
    if (!(e.length > 0) || !Number.isSafeInteger(e.length)) break;
    const n = Math.min(e.length, length - covered);
    const flags = (e.hole ? NBD_STATE.HOLE : 0) | (e.zero ? NBD_STATE.ZERO : 0);
    const last = out[out.length - 1];
    if (last !== undefined && last.flags === flags) last.length += n;
    else out.push({ length: n, flags });
    covered += n;
  }
  if (out.length === 0) return [{ length, flags: 0 }];
  if (reqOne) out.length = 1;
  return out;
}

// ---------------------------------------------------------------------------
// Validation.

/** What the server knows about the session when checking a request. */
export interface TransmissionContext {
  readonly size: number;
  /** Transmission flags sent to the client. */
  readonly flags: number;
  readonly blockSizes: BlockSizes;
  readonly structuredReplies: boolean;
  /** ID of the selected `base:allocation` context, or null if none was selected. */
  readonly metaContextId: number | null;
}

/** Why a request is refused. */
export interface RequestError {
  readonly errno: NbdErrno;
  readonly message: string;
}

const COMMAND_NAMES: Record<number, string> = {
  [NBD_CMD.READ]: "READ",
  [NBD_CMD.WRITE]: "WRITE",
  [NBD_CMD.DISC]: "DISC",
  [NBD_CMD.FLUSH]: "FLUSH",
  [NBD_CMD.TRIM]: "TRIM",
  [NBD_CMD.CACHE]: "CACHE",
  [NBD_CMD.WRITE_ZEROES]: "WRITE_ZEROES",
  [NBD_CMD.BLOCK_STATUS]: "BLOCK_STATUS",
  [NBD_CMD.RESIZE]: "RESIZE",
};

/** Human name of a command type, for messages and logs. */
export function commandName(type: number): string {
  return COMMAND_NAMES[type] ?? `command ${type}`;
}

function refuse(errno: NbdErrno, message: string): RequestError {
  return { errno, message };
}

/**
 * Checks a request against the spec and the negotiated session; null if it
 * may be executed. Follows proto.md "Error values": unknown commands and flags
 * not allowed for a command are EINVAL, writes to a read-only export EPERM,
 * writes past the end ENOSPC, reads and status queries past the end EINVAL.
 * NBD_CMD_DISC is valid (it has no reply; the server handles it).
 */
export function validateRequest(req: NbdRequest, ctx: TransmissionContext): RequestError | null {
  const { type, flags, offset, length } = req;
  const tflags = ctx.flags;
  let allowed = tflags & NBD_FLAG.SEND_FUA ? NBD_CMD_FLAG.FUA : 0; // FUA is valid on every command once advertised
  let writes = false;
  switch (type) {
    case NBD_CMD.READ:
      if (ctx.structuredReplies) allowed |= NBD_CMD_FLAG.DF;
      break;
    case NBD_CMD.WRITE:
      writes = true;
      break;
    case NBD_CMD.DISC:
      return null;
    case NBD_CMD.FLUSH:
      if (!(tflags & NBD_FLAG.SEND_FLUSH))
        return refuse(NBD_ERRNO.EINVAL, "FLUSH is not supported by this export");
      break;
    case NBD_CMD.TRIM:
      writes = true;
      break;
    case NBD_CMD.WRITE_ZEROES:
      writes = true;
      allowed |= NBD_CMD_FLAG.NO_HOLE;
      if (tflags & NBD_FLAG.SEND_FAST_ZERO) allowed |= NBD_CMD_FLAG.FAST_ZERO;
      break;
    case NBD_CMD.BLOCK_STATUS:
      allowed |= NBD_CMD_FLAG.REQ_ONE;
      if (ctx.metaContextId === null) {
        return refuse(
          NBD_ERRNO.EINVAL,
          "BLOCK_STATUS needs a metadata context selected during the handshake",
        );
      }
      break;
    default:
      return refuse(NBD_ERRNO.EINVAL, `Unknown command ${type}`);
  }
  const name = commandName(type);
  if (flags & ~allowed) {
    return refuse(NBD_ERRNO.EINVAL, `Flags 0x${(flags & ~allowed).toString(16)} are not allowed on ${name}`);
  }
  if (writes && tflags & NBD_FLAG.READ_ONLY) return refuse(NBD_ERRNO.EPERM, `${name} on a read-only export`);
  if (type === NBD_CMD.TRIM && !(tflags & NBD_FLAG.SEND_TRIM)) {
    return refuse(NBD_ERRNO.EINVAL, "TRIM is not supported by this export");
  }
  if (type === NBD_CMD.WRITE_ZEROES && !(tflags & NBD_FLAG.SEND_WRITE_ZEROES)) {
    return refuse(NBD_ERRNO.EINVAL, "WRITE_ZEROES is not supported by this export");
  }
  if (type === NBD_CMD.FLUSH) return null; // offset and length are reserved; tolerate junk there
  const bs = ctx.blockSizes;
  if ((type === NBD_CMD.READ || type === NBD_CMD.WRITE) && (length > bs.maximum || req.payloadDropped)) {
    return refuse(
      NBD_ERRNO.EINVAL,
      `${name} of ${length} bytes exceeds the maximum block size ${bs.maximum}`,
    );
  }
  if (type === NBD_CMD.BLOCK_STATUS && length === 0)
    return refuse(NBD_ERRNO.EINVAL, "BLOCK_STATUS of 0 bytes");
  if (offset + length > ctx.size) {
    return refuse(
      writes ? NBD_ERRNO.ENOSPC : NBD_ERRNO.EINVAL,
      `${name} of ${length} bytes at offset ${offset} goes past the end of the ${ctx.size}-byte export`,
    );
  }
  const min = bs.minimum;
  if (min > 1 && (offset % min !== 0 || (length % min !== 0 && offset + length !== ctx.size))) {
    return refuse(
      NBD_ERRNO.EINVAL,
      `${name} of ${length} bytes at offset ${offset} is not aligned to ${min} bytes`,
    );
  }
  return null;
}
