/**
 * Garbage collection's two steps inside one store: `condemn` marks chunks the collector
 * found unreferenced; any put of a condemned chunk (a commit that deduplicated against it)
 * revives it; `sweep` later deletes only those still condemned. Checked and changed
 * synchronously, so no put can slip between a sweep's check and its delete. Kept in memory:
 * a restart forgets the marks, and the next sweep then deletes nothing (never too much).
 *
 * Each mark carries the token of the collection pass that made it, and a sweep deletes only
 * marks of its own pass: a collector that was stopped and resumes cannot delete what a
 * later pass condemned on evidence the stopped one never saw.
 */
import type { Hash } from "./chunk-store.ts";
import { assertHash } from "./hash.ts";

/** Chunks condemned and not yet revived or swept. */
export class CondemnedSet {
  /** Hash -> token of the pass that condemned it. */
  readonly #set = new Map<Hash, string>();

  /** Marks `hashes` (those `present` says are stored) for pass `token`; returns how many are condemned now. */
  condemn(hashes: readonly Hash[], token: string, present: (hash: Hash) => boolean): number {
    assertToken(token);
    let n = 0;
    for (const h of hashes) {
      assertHash(h);
      if (present(h)) {
        this.#set.set(h, token);
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

  /** Removes and returns those of `hashes` still condemned by pass `token` (the caller deletes them at once). */
  take(hashes: readonly Hash[], token: string): Hash[] {
    assertToken(token);
    const out: Hash[] = [];
    for (const h of hashes) {
      assertHash(h);
      if (this.#set.get(h) === token) {
        this.#set.delete(h);
        out.push(h);
      }
    }
    return out;
  }

  get size(): number {
    return this.#set.size;
  }
}

/** A pass token: 1 to 64 characters of [A-Za-z0-9._-] (a UUID in practice). */
export function assertToken(token: string): void {
  if (typeof token !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(token))
    throw new TypeError("A garbage collection token must be 1 to 64 characters of [A-Za-z0-9._-]");
}
