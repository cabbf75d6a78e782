/**
 * "Can store X be taken down now?", from inputs read fresh (the caller reads the cluster
 * record and every head from the register and probes every store right before): true only
 * if, with X gone, every chunk of every version a head names (current root, snapshots,
 * the roots clones share) has a copy on a store that holds it in full, new writes can
 * still get `minReplicas` copies, and a majority of the head holders remains.
 *
 * Chunks are placed by rendezvous hashing over the placement stores (the data stores not
 * draining), so some chunk may sit on any `replicas` of them: the worst-case number of
 * copies of a chunk without X is `replicas` minus the placement stores that are not
 * current for the image (behind, down, replaced, damaged, recorded under another
 * placement, or X itself). A draining store's copies are never counted.
 *
 * A true answer is for this moment. With X in maintenance (and every head stamped with it,
 * so no commit can count X any more) it stays true while nothing else fails.
 */
import { leavingStores, placementStores } from "../replication/cluster-record.ts";
import { currentStores, headHolders, isReplaced, type ReplicaInputs } from "./replica-state.ts";

/** The answer of `GET /v1/stores/{id}/safe-to-remove`. */
export interface SafeToRemove {
  readonly store: string;
  readonly safe: boolean;
  readonly reasons: string[];
  /** Whether X is leaving: in maintenance or draining (a true answer then stays true). */
  readonly maintenance: boolean;
  /** Images some of whose chunks would have no current copy left. */
  readonly wouldLoseLastCurrentCopy: string[];
  /** Images some of whose chunks would have fewer than minReplicas current copies. */
  readonly wouldFallBelowMinReplicas: string[];
  /** Heals running now that read from this store (it holds copies they need). */
  readonly healSources: { store: string; images: string[] }[];
  /** Images whose head does not yet carry X's maintenance stamp (commits there may still count X). */
  readonly unstamped: string[];
}

/** Replication settings plus which stores heal which images now. */
export interface SafetyInputs extends ReplicaInputs {
  readonly replicas: number;
  readonly minReplicas: number;
  readonly healing: ReadonlyMap<string, readonly string[]>;
}

/** Decides whether `store` can be removed; throws a RangeError for an unknown store. */
export function safeToRemove(store: string, input: SafetyInputs): SafeToRemove {
  const recorded = input.record.stores[store];
  if (!recorded) throw new RangeError(`No store "${store}" in the cluster`);
  const data = placementStores(input.record);
  const leaving = leavingStores(input.record);
  const reasons: string[] = [];
  const lose: string[] = [];
  const below: string[] = [];
  const sources = new Map<string, string[]>();
  const unstamped: string[] = [];
  if (recorded.chunks) {
    for (const head of input.heads) {
      const current = currentStores(input, head);
      const others = current.filter((id) => id !== store);
      const notCurrent = data.length - others.length;
      const worstCopies = Math.max(0, input.replicas - notCurrent);
      if (worstCopies === 0) lose.push(head.name);
      else if (worstCopies < input.minReplicas) below.push(head.name);
      if (current.includes(store)) {
        for (const [healed, images] of input.healing) {
          if (healed !== store && images.includes(head.name))
            sources.set(healed, [...(sources.get(healed) ?? []), head.name]);
        }
      }
      if (leaving.has(store) && !head.leaving.includes(store)) unstamped.push(head.name);
    }
    if (lose.length)
      reasons.push(`${lose.length} image(s) would lose their last current copy: ${lose.join(", ")}`);
    if (below.length)
      reasons.push(
        `${below.length} image(s) would fall below ${input.minReplicas} current copies: ${below.join(", ")}`,
      );
    for (const [s, images] of sources) reasons.push(`store "${s}" is healing from it (${images.join(", ")})`);
    const writable = data.filter(
      (id) => id !== store && input.up(id) && !leaving.has(id) && !isReplaced(input, id) && !input.full?.(id),
    ).length;
    if (writable < input.minReplicas)
      reasons.push(
        `without it ${writable} data store(s) would take new writes (up, not leaving, not full), fewer than minReplicas ${input.minReplicas}: writes would fail`,
      );
    if (unstamped.length)
      reasons.push(
        `maintenance is still being recorded in ${unstamped.length} image head(s): ${unstamped.join(", ")}`,
      );
  }
  const holders = headHolders(input);
  const majority = Math.floor(holders.length / 2) + 1;
  // A holder this gateway's register keeps out (replaced, not rejoined here yet) cannot vote
  // here, whatever the record says: counting it would call a store safe whose loss leaves
  // this gateway without a majority (soak seed 754).
  const excluded = holders.filter((id) => id !== store && input.registerExcluded?.(id));
  const remaining = holders.filter(
    (id) => id !== store && input.up(id) && !isReplaced(input, id) && !input.registerExcluded?.(id),
  ).length;
  if (recorded.refs || remaining < majority) {
    if (remaining < majority)
      reasons.push(
        `without it ${remaining} of ${holders.length} head holders answer: no majority (need ${majority})${excluded.length ? `; ${excluded.join(", ")} not rejoined the register on this gateway yet` : ""}`,
      );
  }
  return {
    store,
    safe: reasons.length === 0,
    reasons,
    maintenance: leaving.has(store),
    wouldLoseLastCurrentCopy: lose,
    wouldFallBelowMinReplicas: below,
    healSources: [...sources].map(([s, images]) => ({ store: s, images })),
    unstamped,
  };
}
