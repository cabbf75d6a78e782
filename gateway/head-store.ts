/**
 * Heads on every head-holding store, kept consistent by compare-and-set and majorities:
 * a read takes the newest head a majority answered with; a commit must be accepted by a
 * majority; a store holding a newer owner epoch fences us off (StaleEpochError).
 */
import { NotEnoughReplicasError, StaleEpochError } from "./errors.ts";
import { decodeHead, encodeHead, type Head, headRef, newer } from "./head.ts";
import type { StoreMember } from "./store-set.ts";

/** A head as read, with the ref version each holder had (null: holder lacks it or did not answer). */
export interface HeadState {
  readonly head: Head;
  readonly versions: ReadonlyMap<string, string | null>;
}

/** Reads and writes image heads across the head holders. */
export class HeadStore {
  readonly holders: readonly StoreMember[];
  readonly majority: number;

  constructor(members: readonly StoreMember[]) {
    this.holders = members.filter((m) => m.store.capabilities.refs);
    if (this.holders.length === 0)
      throw new RangeError("No store holds refs: add a file, http or witness store for heads");
    this.majority = Math.floor(this.holders.length / 2) + 1;
  }

  /** The newest head among a majority of holders, or null if a majority has none. */
  async read(image: string): Promise<HeadState | null> {
    const answers = await Promise.allSettled(this.holders.map((m) => m.store.getRef(headRef(image))));
    const versions = new Map<string, string | null>();
    let best: Head | null = null;
    let answered = 0;
    answers.forEach((a, i) => {
      const id = this.holders[i]!.id;
      if (a.status === "rejected") return;
      answered++;
      versions.set(id, a.value?.version ?? null);
      if (a.value) {
        const h = decodeHead(a.value.value);
        if (!best || newer(h, best)) best = h;
      }
    });
    if (answered < this.majority) {
      throw new NotEnoughReplicasError(
        `only ${answered} of ${this.holders.length} head holders answered reading "${image}"`,
      );
    }
    return best ? { head: best, versions } : null;
  }

  /** Names of all images (heads found on any answering holder). */
  async list(): Promise<string[]> {
    const answers = await Promise.allSettled(this.holders.map((m) => m.store.listRefs("head.")));
    const names = new Set<string>();
    for (const a of answers) if (a.status === "fulfilled") for (const n of a.value) names.add(n.slice(5));
    return [...names].sort();
  }

  /**
   * Writes `next` over `prev` (null: create) on every holder, resolving with the new
   * versions once a majority accepted. A holder that lags (older generation, same or
   * older epoch) is brought forward; one with a newer epoch means we are fenced.
   */
  async commit(prev: HeadState | null, next: Head): Promise<HeadState> {
    const ref = headRef(next.name);
    const value = encodeHead(next);
    const versions = new Map<string, string | null>();
    let fencedBy = 0;
    await Promise.allSettled(
      this.holders.map(async (m) => {
        let expected = prev ? (prev.versions.get(m.id) ?? null) : null;
        for (let attempt = 0; attempt < 3; attempt++) {
          const r = await m.store.casRef(ref, expected, value);
          if (r.ok) {
            versions.set(m.id, r.version);
            return;
          }
          if (!r.current) {
            expected = null;
            continue;
          }
          const theirs = decodeHead(r.current.value);
          if (theirs.epoch > next.epoch) {
            fencedBy = Math.max(fencedBy, theirs.epoch);
            return;
          }
          if (!prev || (theirs.epoch === next.epoch && theirs.generation >= next.generation)) return; // a concurrent writer won
          expected = r.current.version; // the holder lags: write over its older head
        }
      }),
    );
    if (fencedBy > 0 && versions.size < this.majority)
      throw new StaleEpochError(next.name, next.epoch, fencedBy);
    if (versions.size < this.majority) {
      throw new NotEnoughReplicasError(
        `head of "${next.name}" generation ${next.generation} accepted by ${versions.size} of ${this.holders.length} head holders (need ${this.majority})`,
      );
    }
    return { head: next, versions };
  }

  /** Deletes an image's head on every holder that has the version we read. */
  async remove(state: HeadState): Promise<void> {
    const ref = headRef(state.head.name);
    const results = await Promise.allSettled(
      this.holders.map(async (m) => {
        const v = state.versions.get(m.id);
        if (v) {
          const r = await m.store.deleteRef(ref, v);
          if (!r.ok) throw new Error(`head changed on ${m.id}`);
        }
      }),
    );
    const ok = results.filter((r) => r.status === "fulfilled").length;
    if (ok < this.majority)
      throw new NotEnoughReplicasError(`deleting "${state.head.name}" reached ${ok} head holders`);
  }
}
