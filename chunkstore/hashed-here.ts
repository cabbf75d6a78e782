/**
 * Hash once, verify at trust boundaries. The gateway hashes each chunk once, in its worker
 * pool; a store in the same process need not hash the same bytes again on put. This module
 * remembers, per byte array object, the hash this process computed for it. `verifyPut`
 * skips hashing only when the array it is given is the very object remembered with that
 * very hash; anything else (bytes from the network, a copy, another hash) is hashed.
 *
 * What stays verified: a chunk store server hashes every chunk it receives (nothing here
 * crosses a process), and every read re-hashes what it read, so a chunk stored under a
 * wrong hash would be refused when read (`ChunkCorruptError`), never served.
 *
 * The rule for callers: remember only bytes nobody writes afterwards (a buffer handed back
 * by the worker that hashed it, owned by the caller alone).
 */
import type { Hash } from "./chunk-store.ts";
import { HASH_BYTES, toHex } from "./hash.ts";

const remembered = new WeakMap<Uint8Array, Hash>();

/** Records that `hash` is the BLAKE3 of `bytes`, as computed in this process. Returns `bytes`. */
export function rememberHash(bytes: Uint8Array, hash: Hash): Uint8Array {
  remembered.set(bytes, hash);
  return bytes;
}

/** True when this very array was remembered with this very hash. */
export function hashedHere(bytes: Uint8Array, hash: Hash): boolean {
  return remembered.get(bytes) === hash;
}

/**
 * Block `k` of a worker pool's `hashBlocks` output as a chunk to put, its hash remembered;
 * `null` for a hole (the zero hash entry, never stored). `data` must be the buffer the
 * worker handed back.
 */
export function hashedBlock(
  out: { readonly hashes: Uint8Array; readonly data: Uint8Array },
  k: number,
  blockSize: number,
): { hash: Hash; bytes: Uint8Array } | null {
  const entry = out.hashes.subarray(k * HASH_BYTES, (k + 1) * HASH_BYTES);
  if (entry.every((b) => b === 0)) return null;
  const hash = toHex(entry);
  const bytes = out.data.subarray(k * blockSize, Math.min((k + 1) * blockSize, out.data.byteLength));
  return { hash, bytes: rememberHash(bytes, hash) };
}
