/** Splitting a byte range of an image into the parts that fall in each block. */

/** The part of a request that falls in one block. */
export interface BlockSpan {
  /** Block number. */
  readonly index: number;
  /** Where the span starts inside the block. */
  readonly inBlock: number;
  /** Bytes in the span. */
  readonly length: number;
  /** Where the span starts relative to the request's offset. */
  readonly at: number;
}

/** The spans of [offset, offset + length) over blocks of `blockSize` bytes, in order. */
export function* blockSpans(offset: number, length: number, blockSize: number): Generator<BlockSpan> {
  for (let pos = offset; pos < offset + length; ) {
    const index = Math.floor(pos / blockSize);
    const inBlock = pos - index * blockSize;
    const n = Math.min(blockSize - inBlock, offset + length - pos);
    yield { index, inBlock, length: n, at: pos - offset };
    pos += n;
  }
}

/**
 * Writes span `s` of `block` (null: a hole) into `out` at `s.at`: the block's bytes, and
 * zeroes for a hole or past the block's end, so every byte of the span is written (reads
 * assemble into buffers that are not zeroed first).
 */
export function copySpan(out: Uint8Array, s: BlockSpan, block: Uint8Array | null): void {
  let at = s.at;
  if (block) {
    const piece = block.subarray(s.inBlock, Math.min(s.inBlock + s.length, block.byteLength));
    out.set(piece, at);
    at += piece.byteLength;
  }
  out.fill(0, at, s.at + s.length);
}
