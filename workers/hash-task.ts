/**
 * Task: BLAKE3-256 of each block in one buffer. Plain data in, plain data out, so it
 * runs the same in a worker thread or on the calling thread.
 */
import { hashBytes } from "../chunkstore/hash.ts";

/** Input of {@link hashBlocks}: `data` holds consecutive blocks of `blockSize` bytes (the last may be short). */
export interface HashBlocksInput {
  readonly data: Uint8Array;
  readonly blockSize: number;
  /** Give all-zero blocks the zero hash (a hole) instead of their BLAKE3. */
  readonly zeroIsHole?: boolean;
}

/** Output: 32 raw hash bytes per block, and the input data handed back (it was transferred in). */
export interface HashBlocksOutput {
  readonly hashes: Uint8Array;
  readonly data: Uint8Array;
}

/** Hashes every block of `input.data`. */
export function hashBlocks(input: HashBlocksInput): HashBlocksOutput {
  const { data, blockSize, zeroIsHole = false } = input;
  if (!Number.isInteger(blockSize) || blockSize <= 0) throw new RangeError(`Invalid block size ${blockSize}`);
  const count = Math.ceil(data.byteLength / blockSize);
  const hashes = new Uint8Array(count * 32);
  for (let i = 0; i < count; i++) {
    const block = data.subarray(i * blockSize, Math.min((i + 1) * blockSize, data.byteLength));
    if (!(zeroIsHole && isZero(block))) hashes.set(hashBytes(block), i * 32);
  }
  return { hashes, data };
}

/** True when every byte is zero; compares four bytes at a time where aligned. */
export function isZero(bytes: Uint8Array): boolean {
  let i = 0;
  if (bytes.byteOffset % 4 === 0) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
    for (let w = 0; w < words.length; w++) if (words[w] !== 0) return false;
    i = words.length * 4;
  }
  for (; i < bytes.byteLength; i++) if (bytes[i] !== 0) return false;
  return true;
}
