/**
 * Garbage collection's two steps inside one store: `condemn` marks chunks the collector
 * found unreferenced; any put of a condemned chunk (a commit that deduplicated against it)
 * revives it; `sweep` later deletes only those still condemned. Checked and changed
 * synchronously, so no put can slip between a sweep's check and its delete. Kept in memory:
 * a restart forgets the marks, and the next sweep then deletes nothing (never too much).
 */
import type { Hash } from "./chunk-store.ts";
import { assertHash } from "./hash.ts";

/** Chunks condemned and not yet revived or swept. */
export class CondemnedSet {
  readonly #set = new Set<Hash>();

  /** Marks `hashes` (those `present` says are stored); returns how many are condemned now. */
  condemn(hashes: readonly Hash[], present: (hash: Hash) => boolean): number {
    let n = 0;
    for (const h of hashes) {
      assertHash(h);
      if (present(h)) {
        this.#set.add(h);
        n++;
      }
    }
    return n;
  }

  /** A put of these chunks: they are referenced again. */
  revive(hashes: Iterable<Hash>): void {
    if (this.#set.size === 0) return;
    for (const h of hashes) this.#set.delete(h);
  }

  /** Removes and returns those of `hashes` that are still condemned (the caller deletes them at once). */
  take(hashes: readonly Hash[]): Hash[] {
    const out: Hash[] = [];
    for (const h of hashes) {
      assertHash(h);
      if (this.#set.delete(h)) out.push(h);
    }
    return out;
  }

  get size(): number {
    return this.#set.size;
  }
}
