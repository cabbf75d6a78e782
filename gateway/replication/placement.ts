/**
 * Rendezvous (highest-random-weight) placement: each chunk goes to the `replicas` data
 * stores that score highest for its hash, so adding or losing a store moves only that
 * store's share of chunks.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";

/** murmur3's 32-bit finalizer: spreads the bits of a 32-bit value. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a of a store id: the per-store seed. */
function seedOf(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Orders store ids by rendezvous score for chunk hashes. */
export class Rendezvous {
  readonly #seeds: { id: string; seed: number }[];

  constructor(ids: readonly string[]) {
    this.#seeds = ids.map((id) => ({ id, seed: seedOf(id) }));
  }

  /** All store ids, best first, for `hash`. The first `replicas` are its placement. */
  order(hash: Hash): string[] {
    // Chunk hashes are uniformly random: 32 bits of one, mixed with each store's seed, is a fair score.
    const key = Number.parseInt(hash.slice(0, 8), 16);
    return this.#seeds
      .map(({ id, seed }) => ({ id, score: mix32(key ^ seed) + mix32(seed) / 2 ** 32 }))
      .sort((a, b) => b.score - a.score)
      .map((s) => s.id);
  }
}
