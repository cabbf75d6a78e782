/**
 * A partial write to a block whose content is not in memory: the bytes written and the
 * ranges they cover, laid over the block's committed content only when that is needed (by
 * the next commit, or by a read). A small write therefore never waits for its block to be
 * read from the stores: the read-modify-write moves off the write's path into the commit,
 * which fetches the blocks it patches together.
 *
 * Immutable: a later write to the block makes a new patch ({@link BlockPatch.with}), since
 * a commit or a read may hold this one.
 */

/** A half-open byte range [start, end) inside a block. */
type Range = readonly [start: number, end: number];

/** Bytes written over part of a block, relative to the block's committed content. */
export class BlockPatch {
  /** A block-sized buffer; only the bytes inside {@link ranges} mean anything. */
  readonly bytes: Uint8Array;
  /** Disjoint, sorted, non-adjacent ranges written. */
  readonly ranges: readonly Range[];

  private constructor(bytes: Uint8Array, ranges: readonly Range[]) {
    this.bytes = bytes;
    this.ranges = ranges;
  }

  /** A patch of one write of `length` bytes at `start` of a `blockSize` block; `fill` writes them. */
  static of(blockSize: number, start: number, length: number, fill: (block: Uint8Array) => void): BlockPatch {
    const bytes = new Uint8Array(blockSize);
    fill(bytes);
    return new BlockPatch(bytes, [[start, start + length]]);
  }

  /** This patch with a later write laid over it (a new patch; this one is unchanged). */
  with(start: number, length: number, fill: (block: Uint8Array) => void): BlockPatch {
    const bytes = this.bytes.slice();
    fill(bytes);
    return new BlockPatch(bytes, mergeRange(this.ranges, [start, start + length]));
  }

  /** Whether the ranges cover the whole of a block's first `length` bytes. */
  covers(length: number): boolean {
    const r = this.ranges;
    return r.length === 1 && r[0]![0] === 0 && r[0]![1] >= length;
  }

  /** The block's content: `base` (null: a hole) with the written ranges laid over it; a new buffer. */
  over(base: Uint8Array | null): Uint8Array {
    const out = new Uint8Array(this.bytes.byteLength);
    if (base) out.set(base.subarray(0, out.byteLength));
    for (const [s, e] of this.ranges) out.set(this.bytes.subarray(s, e), s);
    return out;
  }
}

/** `ranges` with `add` merged in (sorted, overlapping and touching ranges joined). */
function mergeRange(ranges: readonly Range[], add: Range): Range[] {
  const out: Range[] = [];
  let [s, e] = add;
  for (const r of ranges) {
    if (r[1] < s) out.push(r);
    else if (r[0] > e) {
      out.push([s, e]);
      [s, e] = r;
    } else {
      s = Math.min(s, r[0]);
      e = Math.max(e, r[1]);
    }
  }
  out.push([s, e]);
  return out;
}
