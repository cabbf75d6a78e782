/**
 * Streams one uploaded part into chunks as it arrives. Chunk boundaries are those of the
 * image at the part's assumed offset (`phase` = assumed offset mod chunk size): the bytes
 * up to the first boundary (the head seam) and after the last (the tail seam) become
 * pieces of their own; everything between is cut into whole chunks, hashed in the worker
 * pool a batch at a time and put on the stores (zero blocks are holes, chunks already
 * stored are not sent again). Only the hashes are kept. Memory per part in flight: at
 * most MAX_BATCHES_IN_FLIGHT + 1 batches, plus 16 kept for reuse by all parts.
 */

import type { Hash } from "../../chunkstore/chunk-store.ts";
import { HASH_BYTES, hashBytes, toHex } from "../../chunkstore/hash.ts";
import { hashedBlock } from "../../chunkstore/hashed-here.ts";
import { BufferPool } from "../../runtime/buffer-pool.ts";
import type { ImportSession } from "./image-catalog.ts";

/** Bytes hashed per worker task: enough to amortize the hand-off (as the image's commit does). */
export const BATCH_BYTES = 1024 * 1024;
/** Batches hashed or stored at once per part: overlaps hashing and store writes; bounds memory. */
export const MAX_BATCHES_IN_FLIGHT = 4;

/**
 * Batch buffers kept for reuse across parts (16 MiB at most): a fresh one per batch cost 5x
 * the copy into a reused one (page faults), 14 % of the gateway's thread during an import.
 * A buffer comes back only once no store put still reads it (`settled`), and the chunks cut
 * from it are new views each time, so a remembered hash (`hashed-here.ts`) never names bytes
 * written over since.
 */
const batches = new BufferPool(16);

/** A part as staged: sizes and hashes of its pieces. */
export interface StagedPart {
  readonly size: number;
  /** The assumed offset of the part modulo the chunk size. */
  readonly phase: number;
  readonly chunkSize: number;
  /** Piece before the first chunk boundary (null when the part starts on one). */
  readonly head: Hash | null;
  readonly headLength: number;
  /** Raw hashes of the whole chunks, 32 bytes each (zero = hole). */
  readonly full: Uint8Array;
  /** Piece after the last boundary (null when the part ends on one). */
  readonly tail: Hash | null;
  readonly tailLength: number;
  /** Quoted; derived from the pieces, so equal parts have equal ETags. */
  readonly etag: string;
  /** Verified `x-amz-checksum-*` values of the part. */
  readonly checksums: Readonly<Record<string, string>>;
  readonly lastModified: Date;
}

/** Takes staging budget as bytes arrive; throws when the gateway holds too much staged data. */
export type StagingBudget = (bytes: number) => void;

/** Reads `body` to its end and stages it; throws what the body or the stores threw. */
export async function stagePart(
  session: ImportSession,
  body: {
    pump(sink: (piece: Uint8Array) => void | Promise<void>): Promise<void>;
    checksums?: Record<string, string>;
  },
  phase: number,
  budget: StagingBudget,
): Promise<StagedPart> {
  const cs = session.chunkSize;
  if (!Number.isInteger(phase) || phase < 0 || phase >= cs) throw new RangeError(`Invalid phase ${phase}`);
  const perBatch = Math.max(1, Math.floor(BATCH_BYTES / cs));
  const headWanted = phase === 0 ? 0 : cs - phase;
  const headBuf = new Uint8Array(headWanted);
  let headFill = 0;
  let batch = batches.take(perBatch * cs);
  let fill = 0;
  let size = 0;
  let batchNo = 0;
  const results = new Map<number, Uint8Array>();
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | null = null;

  const dispatch = (buf: Uint8Array, chunks: number) => {
    const no = batchNo++;
    const p: Promise<void> = (async () => {
      const hashed = await session.hashBlocks(buf.subarray(0, chunks * cs), cs);
      const puts: { hash: Hash; bytes: Uint8Array }[] = [];
      for (let k = 0; k < chunks; k++) {
        const chunk = hashedBlock(hashed, k, cs);
        if (chunk) puts.push(chunk);
      }
      const { settled } = await session.putChunks(puts);
      results.set(no, hashed.hashes);
      const buffer = hashed.data.buffer as ArrayBuffer;
      void settled.then(() => batches.give(buffer));
    })()
      .catch((error) => {
        failure ??= { error };
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };

  const nextBatch = () => {
    dispatch(batch, perBatch);
    batch = batches.take(perBatch * cs);
    fill = 0;
  };
  /** Copies `data` from `start` into the head seam and batches; async only when it must wait. */
  const consume = (data: Uint8Array, start: number): void | Promise<void> => {
    let off = start;
    while (off < data.byteLength) {
      if (headFill < headWanted) {
        const n = Math.min(headWanted - headFill, data.byteLength - off);
        headBuf.set(data.subarray(off, off + n), headFill);
        headFill += n;
        off += n;
        continue;
      }
      const n = Math.min(batch.byteLength - fill, data.byteLength - off);
      batch.set(data.subarray(off, off + n), fill);
      fill += n;
      off += n;
      if (fill === batch.byteLength) {
        if (failure) throw failure.error;
        if (inFlight.size >= MAX_BATCHES_IN_FLIGHT) return waitAndGoOn(data, off);
        nextBatch();
      }
    }
  };
  const waitAndGoOn = async (data: Uint8Array, off: number): Promise<void> => {
    while (inFlight.size >= MAX_BATCHES_IN_FLIGHT && !failure) await Promise.race(inFlight);
    if (failure) throw failure.error;
    nextBatch();
    const more = consume(data, off);
    if (more) await more;
  };
  try {
    await body.pump((data) => {
      budget(data.byteLength);
      size += data.byteLength;
      return consume(data, 0);
    });
  } catch (error) {
    failure ??= { error };
  }
  if (!failure) {
    const whole = Math.floor(fill / cs);
    const rest = fill - whole * cs;
    const tailBytes = batch.slice(whole * cs, fill);
    if (whole > 0) dispatch(batch, whole);
    await Promise.all(inFlight);
    if (!failure) {
      const [head, tail] = await Promise.all([
        headFill > 0 ? stagePiece(session, headBuf.slice(0, headFill)) : null,
        rest > 0 ? stagePiece(session, tailBytes) : null,
      ]);
      const full = new Uint8Array(Math.floor((size - headFill) / cs) * HASH_BYTES);
      let at = 0;
      for (let no = 0; no < batchNo; no++) {
        const h = results.get(no)!;
        full.set(h, at);
        at += h.byteLength;
      }
      const etag = `"${toHex(hashBytes(describe(size, phase, head, full, tail)))}"`;
      return {
        size,
        phase,
        chunkSize: cs,
        head,
        headLength: headFill,
        full,
        tail,
        tailLength: rest,
        etag,
        checksums: body.checksums ?? {},
        lastModified: new Date(),
      };
    }
  }
  await Promise.all(inFlight);
  throw failure!.error;
}

/** Hashes and stores one seam piece; resolves its hash (zero hash for zeros, which is not stored). */
async function stagePiece(session: ImportSession, bytes: Uint8Array): Promise<Hash> {
  const hashed = await session.hashBlocks(bytes, bytes.byteLength);
  const chunk = hashedBlock(hashed, 0, bytes.byteLength);
  if (chunk) await session.putChunks([chunk]);
  return chunk?.hash ?? toHex(hashed.hashes.subarray(0, HASH_BYTES));
}

/** True for the all-zero hash entry (a hole). */
export function isZeroHash(entry: Uint8Array): boolean {
  for (let i = 0; i < HASH_BYTES; i++) if (entry[i] !== 0) return false;
  return true;
}

function describe(
  size: number,
  phase: number,
  head: Hash | null,
  full: Uint8Array,
  tail: Hash | null,
): Uint8Array {
  const text = new TextEncoder().encode(`${size}:${phase}:${head ?? ""}:${tail ?? ""}:`);
  const out = new Uint8Array(text.byteLength + full.byteLength);
  out.set(text);
  out.set(full, text.byteLength);
  return out;
}
