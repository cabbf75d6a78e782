/**
 * A block's small write as a chunk of its own (the write log of docs/design.md): the
 * ranges written and their bytes, stored content-addressed like any chunk and named by the
 * block map's leaf page next to the block's base chunk (block-map.ts, "patch stacks"). A
 * 4 KiB write to a 64 KiB block then stores about 4 KiB per replica instead of the block.
 *
 * Format (frozen): "BMPATCH1", u32 range count n, n x (u32 start, u32 end), then the bytes
 * of each range in order; little-endian; ranges sorted and disjoint.
 */
import type { BlockPatch } from "./block-patch.ts";

const MAGIC = new TextEncoder().encode("BMPATCH1");
const HEADER_BYTES = MAGIC.byteLength + 4;

/** The chunk bytes of `patch`. */
export function encodePatchChunk(patch: BlockPatch): Uint8Array {
  const segments = patch.segments();
  const out = new Uint8Array(HEADER_BYTES + segments.length * 8 + patch.byteLength);
  const view = new DataView(out.buffer);
  out.set(MAGIC);
  view.setUint32(MAGIC.byteLength, segments.length, true);
  let at = HEADER_BYTES;
  for (const g of segments) {
    view.setUint32(at, g.start, true);
    view.setUint32(at + 4, g.start + g.bytes.byteLength, true);
    at += 8;
  }
  for (const g of segments) {
    out.set(g.bytes, at);
    at += g.bytes.byteLength;
  }
  return out;
}

/** Lays the patch chunk `chunk` over `block` in place; throws a RangeError if it is not a valid patch for it. */
export function applyPatchChunk(block: Uint8Array, chunk: Uint8Array): void {
  const bad = (why: string) => new RangeError(`Invalid patch chunk: ${why}`);
  if (chunk.byteLength < HEADER_BYTES) throw bad(`${chunk.byteLength} bytes`);
  for (let i = 0; i < MAGIC.byteLength; i++) if (chunk[i] !== MAGIC[i]) throw bad("no BMPATCH1 magic");
  const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  const n = view.getUint32(MAGIC.byteLength, true);
  let data = HEADER_BYTES + n * 8;
  if (data > chunk.byteLength) throw bad(`${n} ranges do not fit`);
  let last = 0;
  for (let k = 0; k < n; k++) {
    const s = view.getUint32(HEADER_BYTES + k * 8, true);
    const e = view.getUint32(HEADER_BYTES + k * 8 + 4, true);
    if (s < last || e <= s || e > block.byteLength || data + (e - s) > chunk.byteLength)
      throw bad(`range [${s}, ${e}) out of order or outside the ${block.byteLength}-byte block`);
    block.set(chunk.subarray(data, data + (e - s)), s);
    data += e - s;
    last = e;
  }
  if (data !== chunk.byteLength) throw bad(`${chunk.byteLength - data} trailing bytes`);
}

/**
 * A block's content from its base chunk (null: a hole) and its patch stack's chunks, oldest
 * first: the base itself when there are none, else a new `blockSize` buffer.
 */
export function blockWithPatches(
  base: Uint8Array | null,
  patches: readonly Uint8Array[],
  blockSize: number,
): Uint8Array | null {
  if (patches.length === 0) return base;
  const block = new Uint8Array(blockSize);
  if (base) block.set(base.subarray(0, blockSize));
  for (const p of patches) applyPatchChunk(block, p);
  return block;
}
