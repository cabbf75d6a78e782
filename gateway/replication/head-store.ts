/**
 * Heads on every head-holding store, kept consistent by compare-and-set and majorities:
 * a read takes the newest head among the first majority to answer (any two majorities
 * share a holder, so it sees the last commit); a commit must be accepted by a majority
 * and returns as soon as one has, so a hung holder never holds up a commit; a holder
 * with a newer owner epoch fences us off (StaleEpochError). Holders known to be down
 * are not asked.
 */
import { NotEnoughReplicasError, StaleEpochError } from "../errors.ts";
import { decodeHead, encodeHead, type Head, headRef, newer } from "../image/head.ts";
import type { HealthView, StoreMember } from "./store-set.ts";

/** A head as read, with the ref version each holder had (absent: holder lacks it or did not answer). */
export interface HeadState {
  readonly head: Head;
  readonly versions: ReadonlyMap<string, string | null>;
}

/**
 * Runs `task` on every holder and resolves once `enough(results)` holds or all settled.
 * Stragglers keep running; their results are dropped.
 */
function firstQuorum<T>(
  holders: readonly StoreMember[],
  task: (m: StoreMember) => Promise<T>,
  enough: (done: Map<string, T>) => boolean,
): Promise<{ done: Map<string, T>; errors: Map<string, unknown> }> {
  const done = new Map<string, T>();
  const errors = new Map<string, unknown>();
  return new Promise((resolve) => {
    let settled = 0;
    const check = () => {
      if (enough(done) || settled === holders.length)
        resolve({ done: new Map(done), errors: new Map(errors) });
    };
    if (holders.length === 0) check();
    for (const m of holders) {
      task(m)
        .then(
          (v) => done.set(m.id, v),
          (e) => errors.set(m.id, e),
        )
        .finally(() => {
          settled++;
          check();
        });
    }
  });
}

/** Reads and writes image heads across the head holders. */
export class HeadStore {
  readonly holders: readonly StoreMember[];
  readonly majority: number;
  health: Pick<HealthView, "isDown"> = { isDown: () => false };

  constructor(members: readonly StoreMember[]) {
    this.holders = members.filter((m) => m.store.capabilities.refs);
    if (this.holders.length === 0)
      throw new RangeError("No store holds refs: add a file, http or witness store for heads");
    this.majority = Math.floor(this.holders.length / 2) + 1;
  }

  /** Holders to ask: those not known to be down, or all of them if that is not a majority. */
  #reachable(): readonly StoreMember[] {
    const up = this.holders.filter((m) => !this.health.isDown(m.id));
    return up.length >= this.majority ? up : this.holders;
  }

  /** The newest head among a majority of holders, or null if that majority has none. */
  async read(image: string): Promise<HeadState | null> {
    const { done } = await firstQuorum(
      this.#reachable(),
      (m) => m.store.getRef(headRef(image)),
      (d) => d.size >= this.majority,
    );
    if (done.size < this.majority) {
      throw new NotEnoughReplicasError(
        `only ${done.size} of ${this.holders.length} head holders answered reading "${image}"`,
      );
    }
    const versions = new Map<string, string | null>();
    let best: Head | null = null;
    for (const [id, entry] of done) {
      versions.set(id, entry?.version ?? null);
      if (entry) {
        const h = decodeHead(entry.value);
        if (!best || newer(h, best)) best = h;
      }
    }
    return best ? { head: best, versions } : null;
  }

  /** Names of all images (heads found on any holder that answered). */
  async list(): Promise<string[]> {
    const { done } = await firstQuorum(
      this.#reachable(),
      (m) => m.store.listRefs("head."),
      (d) => d.size >= this.majority,
    );
    const names = new Set<string>();
    for (const list of done.values()) for (const n of list) names.add(n.slice(5));
    return [...names].sort();
  }

  /**
   * Writes `next` over `prev` (null: create) on every reachable holder, resolving with
   * the new versions once a majority accepted. A holder that lags (older generation, same
   * or older epoch) is brought forward; one with a newer epoch means we are fenced.
   */
  async commit(prev: HeadState | null, next: Head): Promise<HeadState> {
    const ref = headRef(next.name);
    const value = encodeHead(next);
    let fencedBy = 0;
    const write = async (m: StoreMember): Promise<string | null> => {
      let expected = prev ? (prev.versions.get(m.id) ?? null) : null;
      for (let attempt = 0; attempt < 3; attempt++) {
        const r = await m.store.casRef(ref, expected, value);
        if (r.ok) return r.version;
        if (!r.current) {
          expected = null;
          continue;
        }
        const theirs = decodeHead(r.current.value);
        if (theirs.epoch > next.epoch) {
          fencedBy = Math.max(fencedBy, theirs.epoch);
          return null;
        }
        if (!prev || (theirs.epoch === next.epoch && theirs.generation >= next.generation)) return null; // a concurrent writer won
        expected = r.current.version; // the holder lags: write over its older head
      }
      return null;
    };
    const accepted = (d: Map<string, string | null>) => [...d.values()].filter((v) => v !== null).length;
    const { done } = await firstQuorum(
      this.#reachable(),
      write,
      (d) => accepted(d) >= this.majority || fencedBy > 0,
    );
    const versions = new Map<string, string | null>();
    for (const [id, v] of done) if (v !== null) versions.set(id, v);
    if (fencedBy > 0 && versions.size < this.majority)
      throw new StaleEpochError(next.name, next.epoch, fencedBy);
    if (versions.size < this.majority) {
      throw new NotEnoughReplicasError(
        `head of "${next.name}" generation ${next.generation} accepted by ${versions.size} of ${this.holders.length} head holders (need ${this.majority})`,
      );
    }
    return { head: next, versions };
  }

  /**
   * Deletes an image's head on every holder (each with the version it holds now), unless a
   * holder has a head newer than the one we read (someone wrote since: refused).
   */
  async remove(state: HeadState): Promise<void> {
    const ref = headRef(state.head.name);
    const results = await Promise.allSettled(
      this.holders.map(async (m) => {
        const entry = await m.store.getRef(ref);
        if (!entry) return;
        if (newer(decodeHead(entry.value), state.head))
          throw new Error(`head of "${state.head.name}" changed on ${m.id}`);
        const r = await m.store.deleteRef(ref, entry.version);
        if (!r.ok) throw new Error(`head of "${state.head.name}" changed on ${m.id}`);
      }),
    );
    const ok = results.filter((r) => r.status === "fulfilled").length;
    if (ok < this.majority)
      throw new NotEnoughReplicasError(`deleting "${state.head.name}" reached ${ok} head holders`);
  }
}
