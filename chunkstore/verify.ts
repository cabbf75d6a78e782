/**
 * The two checks every backend runs: content against its address on put, and what
 * was read against its address on get. One place, so no backend forgets one.
 */
import type { ChunkPut, Hash } from "./chunk-store.ts";
import { ChunkCorruptError, HashMismatchError } from "./errors.ts";
import { assertHash, hashChunk } from "./hash.ts";
import { hashedHere } from "./hashed-here.ts";
import { MAX_CHUNK_BYTES } from "./limits.ts";

/**
 * Validates hash form and size, then content; throws before anything is stored. Content
 * this process hashed itself (`hashed-here.ts`) is not hashed again.
 */
export function verifyPut(store: string, hash: Hash, bytes: Uint8Array): void {
  assertHash(hash);
  if (!(bytes instanceof Uint8Array)) throw new TypeError(`Chunk "${hash}" bytes must be a Uint8Array`);
  if (bytes.byteLength > MAX_CHUNK_BYTES) {
    throw new RangeError(`Chunk "${hash}" is ${bytes.byteLength} bytes; the limit is ${MAX_CHUNK_BYTES}`);
  }
  if (hashedHere(bytes, hash)) return;
  const actual = hashChunk(bytes);
  if (actual !== hash) throw new HashMismatchError(store, hash, actual);
}

/** Verifies a whole batch before any of it is stored. */
export function verifyPutMany(store: string, chunks: readonly ChunkPut[]): void {
  for (const c of chunks) verifyPut(store, c.hash, c.bytes);
}

/** Checks bytes read back; throws ChunkCorruptError instead of returning wrong data. */
export function verifyRead(store: string, hash: Hash, bytes: Uint8Array): Uint8Array {
  const actual = hashChunk(bytes);
  if (actual !== hash) throw new ChunkCorruptError(store, hash, `content hashes to "${actual}"`);
  return bytes;
}
