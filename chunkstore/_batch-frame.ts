/**
 * Binary framing of chunk batches on the wire, shared by the chunk store server
 * (`server.ts`) and its client (`http-store.ts`). Pure encode and decode, no I/O.
 *
 * ============================================================================
 *  FROZEN WIRE FORMAT. Peers of different versions exchange these bytes: never
 *  change a value or a layout below. A new layout gets a new magic.
 * ============================================================================
 *
 * A frame is a header followed by `count` records; every integer is big-endian.
 *
 *   header  (8 bytes)
 *     magic   4 bytes  "BMB1" (0x42 0x4d 0x42 0x31): blockmend batch, layout 1
 *     count   u32      number of records (at most MAX_BATCH_HASHES)
 *   record  (37 bytes + length)
 *     hash    32 bytes raw BLAKE3-256 (the 64-hex address, decoded)
 *     status  u8       RECORD_STATUS: 0 present, 1 absent, 2 corrupt, 3 omitted
 *     length  u32      bytes that follow; at most MAX_CHUNK_BYTES, 0 unless present
 *     bytes   length   the chunk
 *
 * Used by
 *   POST /v1/chunks/batch-put  request body: every record `present`, any order.
 *   POST /v1/chunks/batch-get  response body: one record per requested hash, in
 *     request order. `absent`: the store does not hold it. `corrupt`: the stored copy
 *     failed verification (bytes never sent). `omitted`: left out so the response
 *     stays within MAX_BATCH_BYTES; the client asks again for those.
 *
 * The hash is repeated in every record (even where order already identifies it) so a
 * frame is self-describing and a reordering bug cannot pair bytes with a wrong address.
 * The 37-byte record header times MAX_BATCH_HASHES (37 KiB) fits in the 64 KiB of
 * framing slack that MAX_BATCH_BYTES reserves above its 64 MiB of chunk data.
 */
import type { Hash } from "./chunk-store.ts";
import { fromHex, HASH_BYTES, isHash, toHex } from "./hash.ts";
import { MAX_BATCH_HASHES, MAX_CHUNK_BYTES } from "./limits.ts";

/** Layout constants of the batch frame. Frozen: see the banner above. */
export const BATCH_FRAME = {
  /** "BMB1" read as a big-endian u32. */
  MAGIC: 0x424d4231,
  /** magic (4) + count (4). */
  HEADER_BYTES: 8,
  /** hash (32) + status (1) + length (4). */
  RECORD_HEADER_BYTES: HASH_BYTES + 1 + 4,
} as const;

/** Per-record status byte. Frozen: see the banner above. */
export const RECORD_STATUS = {
  PRESENT: 0,
  ABSENT: 1,
  CORRUPT: 2,
  OMITTED: 3,
} as const;

export type RecordStatus = (typeof RECORD_STATUS)[keyof typeof RECORD_STATUS];

/** One record of a frame. `bytes` is empty unless `status` is PRESENT. */
export interface BatchRecord {
  readonly hash: Hash;
  readonly status: RecordStatus;
  readonly bytes: Uint8Array;
}

/** A record to encode; `status` defaults to PRESENT, `bytes` to empty. */
export interface BatchRecordInput {
  readonly hash: Hash;
  readonly status?: RecordStatus;
  readonly bytes?: Uint8Array;
}

const EMPTY = new Uint8Array(0);

/** Encoded size of a frame holding records with these chunk sizes (0 for non-present records). */
export function frameBytes(chunkSizes: Iterable<number>): number {
  let total: number = BATCH_FRAME.HEADER_BYTES;
  for (const n of chunkSizes) total += BATCH_FRAME.RECORD_HEADER_BYTES + n;
  return total;
}

/**
 * Encodes records into one frame, copying each chunk exactly once.
 * Throws TypeError on a malformed hash or a non-present record carrying bytes.
 */
export function encodeBatch(records: readonly BatchRecordInput[]): Uint8Array<ArrayBuffer> {
  if (records.length > MAX_BATCH_HASHES) {
    throw new RangeError(`A batch holds at most ${MAX_BATCH_HASHES} records; got ${records.length}`);
  }
  let total: number = BATCH_FRAME.HEADER_BYTES;
  for (const r of records) total += BATCH_FRAME.RECORD_HEADER_BYTES + (r.bytes?.byteLength ?? 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, BATCH_FRAME.MAGIC);
  view.setUint32(4, records.length);
  let off: number = BATCH_FRAME.HEADER_BYTES;
  for (const r of records) {
    if (!isHash(r.hash))
      throw new TypeError(`Cannot frame chunk hash ${JSON.stringify(r.hash)}: not a chunk hash`);
    const status = r.status ?? RECORD_STATUS.PRESENT;
    const bytes = r.bytes ?? EMPTY;
    if (status !== RECORD_STATUS.PRESENT && bytes.byteLength !== 0) {
      throw new TypeError(`Cannot frame chunk "${r.hash}": status ${status} carries no bytes`);
    }
    if (bytes.byteLength > MAX_CHUNK_BYTES) {
      throw new RangeError(
        `Cannot frame chunk "${r.hash}": ${bytes.byteLength} bytes exceeds ${MAX_CHUNK_BYTES}`,
      );
    }
    out.set(fromHex(r.hash), off);
    off += HASH_BYTES;
    view.setUint8(off, status);
    view.setUint32(off + 1, bytes.byteLength);
    off += 5;
    out.set(bytes, off);
    off += bytes.byteLength;
  }
  return out;
}

/**
 * Decodes a frame. Record bytes are views into `frame` (no copy): they stay valid as
 * long as the caller does not modify `frame`. Throws TypeError on any malformation
 * (bad magic, unknown status, truncation, trailing bytes) and RangeError on too many
 * records or an oversized chunk.
 */
export function decodeBatch(frame: Uint8Array): BatchRecord[] {
  if (frame.byteLength < BATCH_FRAME.HEADER_BYTES) {
    throw new TypeError(`Malformed batch frame: ${frame.byteLength} bytes is shorter than its header`);
  }
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const magic = view.getUint32(0);
  if (magic !== BATCH_FRAME.MAGIC) {
    throw new TypeError(
      `Malformed batch frame: magic 0x${magic.toString(16).padStart(8, "0")} is not "BMB1"`,
    );
  }
  const count = view.getUint32(4);
  if (count > MAX_BATCH_HASHES) {
    throw new RangeError(`Batch frame holds ${count} records; the limit is ${MAX_BATCH_HASHES}`);
  }
  const records: BatchRecord[] = new Array(count);
  let off: number = BATCH_FRAME.HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (frame.byteLength - off < BATCH_FRAME.RECORD_HEADER_BYTES) {
      throw new TypeError(`Malformed batch frame: record ${i} of ${count} is truncated`);
    }
    const hash = toHex(frame.subarray(off, off + HASH_BYTES));
    off += HASH_BYTES;
    const status = view.getUint8(off);
    const length = view.getUint32(off + 1);
    off += 5;
    if (status > RECORD_STATUS.OMITTED) {
      throw new TypeError(`Malformed batch frame: record ${i} ("${hash}") has unknown status ${status}`);
    }
    if (status !== RECORD_STATUS.PRESENT && length !== 0) {
      throw new TypeError(
        `Malformed batch frame: record ${i} ("${hash}") has status ${status} and ${length} bytes`,
      );
    }
    if (length > MAX_CHUNK_BYTES) {
      throw new RangeError(
        `Batch frame record ${i} ("${hash}") is ${length} bytes; the limit is ${MAX_CHUNK_BYTES}`,
      );
    }
    if (frame.byteLength - off < length) {
      throw new TypeError(`Malformed batch frame: record ${i} ("${hash}") is truncated`);
    }
    records[i] = { hash, status: status as RecordStatus, bytes: frame.subarray(off, off + length) };
    off += length;
  }
  if (off !== frame.byteLength) {
    throw new TypeError(`Malformed batch frame: ${frame.byteLength - off} bytes after the last record`);
  }
  return records;
}
