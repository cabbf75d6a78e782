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

/** Writes a span's bytes into `target` from offset `at` on. */
export type SpanFill = (target: Uint8Array, at: number) => void;

/** The bytes written at one range of a block. */
interface Segment {
  readonly start: number;
  readonly bytes: Uint8Array;
}

/**
 * Bytes written over part of a block, relative to the block's committed content. Only the
 * bytes written are held (a 4 KiB write to a 64 KiB block holds 4 KiB), one buffer per
 * disjoint range; a later write shares the ranges it does not touch.
 */
export class BlockPatch {
  /** The block's size: what {@link over} returns. */
  readonly blockSize: number;
  /** Disjoint, sorted, non-adjacent ranges written, and their bytes. */
  readonly #segments: readonly Segment[];

  private constructor(blockSize: number, segments: readonly Segment[]) {
    this.blockSize = blockSize;
    this.#segments = segments;
  }

  /** A patch of one write of `length` bytes at `start` of a `blockSize` block; `fill` writes them. */
  static of(blockSize: number, start: number, length: number, fill: SpanFill): BlockPatch {
    const bytes = new Uint8Array(length);
    fill(bytes, 0);
    return new BlockPatch(blockSize, [{ start, bytes }]);
  }

  /** The ranges written, sorted, disjoint and non-adjacent. */
  get ranges(): Range[] {
    return this.#segments.map((g) => [g.start, g.start + g.bytes.byteLength] as const);
  }

  /** Bytes of data held (the sum of the ranges). */
  get byteLength(): number {
    let n = 0;
    for (const g of this.#segments) n += g.bytes.byteLength;
    return n;
  }

  /** Each range's start and its bytes, in order (views: do not modify). */
  segments(): readonly Segment[] {
    return this.#segments;
  }

  /** This patch with a later write laid over it (a new patch; this one is unchanged). */
  with(start: number, length: number, fill: SpanFill): BlockPatch {
    const end = start + length;
    const out: Segment[] = [];
    // The ranges the write overlaps or touches join it in one new buffer; the rest are shared.
    let from = start;
    let to = end;
    const joined: Segment[] = [];
    for (const g of this.#segments) {
      const gEnd = g.start + g.bytes.byteLength;
      if (gEnd < start || g.start > end) continue;
      joined.push(g);
      from = Math.min(from, g.start);
      to = Math.max(to, gEnd);
    }
    const bytes = new Uint8Array(to - from);
    for (const g of joined) bytes.set(g.bytes, g.start - from);
    fill(bytes, start - from);
    let placed = false;
    for (const g of this.#segments) {
      if (joined.includes(g)) continue;
      if (!placed && g.start > from) {
        out.push({ start: from, bytes });
        placed = true;
      }
      out.push(g);
    }
    if (!placed) out.push({ start: from, bytes });
    return new BlockPatch(this.blockSize, out);
  }

  /** Whether the ranges cover the whole of a block's first `length` bytes. */
  covers(length: number): boolean {
    const g = this.#segments;
    return g.length === 1 && g[0]!.start === 0 && g[0]!.bytes.byteLength >= length;
  }

  /** The block's content: `base` (null: a hole) with the written ranges laid over it; a new buffer. */
  over(base: Uint8Array | null): Uint8Array {
    const out = new Uint8Array(this.blockSize);
    if (base) out.set(base.subarray(0, out.byteLength));
    for (const g of this.#segments) out.set(g.bytes, g.start);
    return out;
  }
}
