/**
 * The one place that decides what each store holds: from the cluster record (identities,
 * damage, maintenance), the heads, what this gateway sees of each store (reachable, the
 * identity it answers with) and the commits in flight here. Status, heal and
 * safe-to-remove all ask this file; none decides "in sync" by itself.
 */

import { type Head, holdsCurrent } from "../image/head.ts";
import type { InflightCommit } from "../image/image-context.ts";
import type { ClusterRecord } from "../replication/cluster-record.ts";
import {
  damagedCount,
  leavingStores,
  placementEpochOf,
  placementStores,
} from "../replication/cluster-record.ts";

/** The states an operator sees. */
export type StoreState = "in-sync" | "healing" | "full" | "draining" | "drained" | "down" | "replaced";

/** Everything the decision needs, read fresh by the caller. */
export interface ReplicaInputs {
  readonly record: ClusterRecord;
  /** Live heads (tombstones left out). */
  readonly heads: readonly Head[];
  /** Whether this gateway reaches the store now (with the recorded identity). */
  readonly up: (store: string) => boolean;
  /** The identity the store last answered with (null: never reached). */
  readonly observed: (store: string) => string | null;
  /** Whether the store is at its high-water mark (takes no new chunks); absent: none is. */
  readonly full?: (store: string) => boolean;
  /** Commits in flight on this gateway: stores pending on them are behind for that image. */
  readonly inflight: readonly InflightCommit[];
  /** Head holders this gateway's register keeps out of its quorums now (not rejoined yet); absent: none. */
  readonly registerExcluded?: (store: string) => boolean;
}

/** Why a store is not current for one image. */
export interface Lag {
  readonly image: string;
  readonly syncedGeneration: number;
  readonly generation: number;
  readonly reason: string;
}

/** A store's replica state, as `GET /v1/stores` reports it. */
export interface StoreReplicaState {
  readonly id: string;
  readonly role: "data" | "witness";
  readonly state: StoreState;
  readonly identity: string;
  readonly observedIdentity: string | null;
  readonly maintenance: { readonly since: string; readonly by: string } | null;
  readonly damagedChunks: number;
  /** Images this store does not hold in full now, and why. */
  readonly lag: readonly Lag[];
  readonly reasons: readonly string[];
}

/** True if the recorded identity differs from what the store answers with (a wiped or replaced disk). */
export function isReplaced(inputs: ReplicaInputs, store: string): boolean {
  const observed = inputs.observed(store);
  return observed !== null && observed !== inputs.record.stores[store]?.identity;
}

/**
 * Why `store` does not hold what `head` names in full now, or null if it does: it must be
 * reachable, answer as the store the head's replica state was recorded for, have it
 * recorded at the head's generation, have no known damaged chunks, and have received every
 * commit in flight here.
 */
export function notCurrentBecause(inputs: ReplicaInputs, head: Head, store: string): string | null {
  const recorded = inputs.record.stores[store];
  if (!recorded) return "not in the cluster";
  if (isReplaced(inputs, store))
    return "answers with a new identity (a wiped or replaced disk): holds nothing until a full heal";
  if (!inputs.up(store)) return "unreachable";
  const placement = placementEpochOf(inputs.record);
  if (!holdsCurrent(head, store, { identity: recorded.identity, placement })) {
    const s = head.synced[store];
    if (s && s.identity !== recorded.identity)
      return "recorded for a previous identity of this store (replaced): a full heal is needed";
    if (s && (s.placement ?? 0) !== placement)
      return `recorded under placement ${s.placement ?? 0}; the store set changed (placement ${placement}): a full walk moves what is now placed on it`;
    return `holds generation ${s?.generation ?? 0} of ${head.generation}`;
  }
  const damaged = damagedCount(inputs.record, store);
  if (damaged > 0) return `${damaged} chunk(s) found corrupt or missing and not yet repaired`;
  if (inputs.inflight.some((c) => c.image === head.name && c.pending.has(store)))
    return "a commit in flight has not reached it yet";
  return null;
}

/** The placement stores holding `head` in full now (a draining store holds nothing placed on it). */
export function currentStores(inputs: ReplicaInputs, head: Head): string[] {
  return placementStores(inputs.record).filter((id) => notCurrentBecause(inputs, head, id) === null);
}

/** Images some placement store does not hold in full yet: what a rebalance or a drain still moves. */
export function imagesNotPlaced(inputs: ReplicaInputs): string[] {
  const placed = placementStores(inputs.record);
  return inputs.heads
    .filter((h) => placed.some((id) => notCurrentBecause({ ...inputs, inflight: [] }, h, id) !== null))
    .map((h) => h.name);
}

/** Ids of the data stores, in record order. */
export function dataStores(inputs: ReplicaInputs): string[] {
  return Object.entries(inputs.record.stores)
    .filter(([, s]) => s.chunks)
    .map(([id]) => id);
}

/** Ids of the head holders (register members), in record order. */
export function headHolders(inputs: ReplicaInputs): string[] {
  return Object.entries(inputs.record.stores)
    .filter(([, s]) => s.refs)
    .map(([id]) => id);
}

/**
 * Every store's state as an operator sees it. A commit in flight is not lag here (it lasts
 * milliseconds and would make every store flicker under writes); safe-to-remove counts it.
 */
export function storeStates(given: ReplicaInputs): StoreReplicaState[] {
  const inputs = { ...given, inflight: [] };
  let notPlaced: string[] | undefined;
  return Object.entries(inputs.record.stores).map(([id, s]) => {
    const reasons: string[] = [];
    const lag: Lag[] = [];
    let state: StoreState;
    if (isReplaced(inputs, id)) {
      state = "replaced";
      reasons.push(
        `answers with identity ${inputs.observed(id)}, not the recorded ${s.identity}: a wiped or replaced disk, holding nothing until it has rejoined and healed`,
      );
    } else if (!inputs.up(id)) {
      state = "down";
      reasons.push("unreachable from this gateway");
    } else if (s.chunks && s.draining) {
      // Nothing is placed on it: what matters is whether the others hold its share yet.
      notPlaced ??= imagesNotPlaced(inputs);
      const pending = notPlaced;
      if (pending.length > 0) {
        state = "draining";
        reasons.push(
          `draining: ${pending.length} image(s) not yet held in full by the other stores (${pending.slice(0, 5).join(", ")}${pending.length > 5 ? ", ..." : ""})`,
        );
      } else {
        state = "drained";
        reasons.push("drained: the other stores hold every image in full; `store remove` may take it out");
      }
    } else {
      if (s.chunks) {
        for (const head of inputs.heads) {
          const why = notCurrentBecause(inputs, head, id);
          if (why)
            lag.push({
              image: head.name,
              syncedGeneration: head.synced[id]?.generation ?? 0,
              generation: head.generation,
              reason: why,
            });
        }
      }
      const damaged = damagedCount(inputs.record, id);
      if (damaged > 0) reasons.push(`${damaged} chunk(s) found corrupt or missing, not yet repaired`);
      if (lag.length > 0) reasons.push(`${lag.length} image(s) not held in full`);
      if (inputs.full?.(id)) {
        // Reads go on; new chunks go to other stores; what it lacks is healed once it has room.
        state = "full";
        reasons.push(
          "full: at its high-water mark, it takes no new chunks (they go to the next stores) until it has room again",
        );
      } else state = reasons.length > 0 ? "healing" : "in-sync";
    }
    if (s.maintenance) reasons.push("in maintenance: new writes do not count it");
    return {
      id,
      role: s.chunks ? "data" : "witness",
      state,
      identity: s.identity,
      observedIdentity: inputs.observed(id),
      maintenance: s.maintenance,
      damagedChunks: damagedCount(inputs.record, id),
      lag,
      reasons,
    } satisfies StoreReplicaState;
  });
}
