/**
 * On-disk format of the `file:` backend's segment files: frozen constants and pure
 * record encode/decode functions. No I/O here.
 *
 * ==========================================================================
 *  FROZEN FORMAT. These values never change: every segment ever written is read
 *  with them. A new layout gets a new record kind or a new magic, never an edit.
 * ==========================================================================
 *
 * A segment (`segments/NNNNNNNN.seg`) is a sequence of records with no file header:
 *
 * | offset | size | field                                        |
 * | ------ | ---- | -------------------------------------------- |
 * | 0      | 4    | magic, the ASCII bytes "BMRC"                |
 * | 4      | 1    | record kind                                  |
 * | 5      | 3    | reserved, zero                               |
 * | 8      | 32   | raw BLAKE3-256 of the data                   |
 * | 40     | 4    | data length, u32 little-endian               |
 * | 44     | n    | data                                         |
 *
 * Each record carries its hash and length, so a scan can tell a whole record from a
 * torn or foreign one without any index.
 */
import { HASH_BYTES } from "./hash.ts";
import { MAX_CHUNK_BYTES } from "./limits.ts";

/** Record header layout (byte offsets and sizes); see the table above. */
export const RECORD = {
  /** "BMRC" = BlockMend ReCord; read big-endian so the file shows the ASCII. */
  MAGIC: 0x424d5243,
  MAGIC_OFFSET: 0,
  KIND_OFFSET: 4,
  HASH_OFFSET: 8,
  LENGTH_OFFSET: 40,
  /** 4 magic + 1 kind + 3 reserved + 32 hash + 4 length. */
  HEADER_BYTES: 44,
} as const;

/** Record kinds. Only chunks exist; the field leaves room for more without a new magic. */
export const RECORD_KIND = {
  CHUNK: 1,
} as const;

/** Segment file names: 8 zero-padded decimal digits (room for 10^8 segments), `.seg`. */
export const SEGMENT_NAME = /^(\d{8})\.seg$/;

/** File name of segment number `n`. */
export function segmentFileName(n: number): string {
  return `${String(n).padStart(8, "0")}.seg`;
}

/** Segment number of a file name, or null for any other file. */
export function parseSegmentFileName(name: string): number | null {
  const m = SEGMENT_NAME.exec(name);
  return m ? Number(m[1]) : null;
}

/** Bytes a record of `length` data bytes occupies in a segment. */
export function recordBytes(length: number): number {
  return RECORD.HEADER_BYTES + length;
}

/** Writes the header of a chunk record into `out` (at least HEADER_BYTES long) at `offset`. */
export function encodeHeader(out: Uint8Array, offset: number, rawHash: Uint8Array, length: number): void {
  const view = new DataView(out.buffer, out.byteOffset + offset, RECORD.HEADER_BYTES);
  view.setUint32(RECORD.MAGIC_OFFSET, RECORD.MAGIC, false);
  view.setUint32(RECORD.KIND_OFFSET, RECORD_KIND.CHUNK << 24, false); // kind then 3 zero bytes
  out.set(rawHash.subarray(0, HASH_BYTES), offset + RECORD.HASH_OFFSET);
  view.setUint32(RECORD.LENGTH_OFFSET, length, true);
}

/** A decoded header. `hash` is a view into the input. */
export interface RecordHeader {
  readonly kind: number;
  readonly hash: Uint8Array;
  readonly length: number;
}

/**
 * Decodes the header at `offset`, or returns null if it is not a valid chunk record
 * header (too short, bad magic, unknown kind, nonzero reserved bytes, length over
 * the chunk limit). Whether the data is complete and matches the hash is the caller's check.
 */
export function decodeHeader(bytes: Uint8Array, offset: number): RecordHeader | null {
  if (bytes.byteLength - offset < RECORD.HEADER_BYTES) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, RECORD.HEADER_BYTES);
  if (view.getUint32(RECORD.MAGIC_OFFSET, false) !== RECORD.MAGIC) return null;
  if (view.getUint32(RECORD.KIND_OFFSET, false) !== RECORD_KIND.CHUNK << 24) return null;
  const length = view.getUint32(RECORD.LENGTH_OFFSET, true);
  if (length > MAX_CHUNK_BYTES) return null;
  const start = offset + RECORD.HASH_OFFSET;
  return { kind: RECORD_KIND.CHUNK, hash: bytes.subarray(start, start + HASH_BYTES), length };
}
