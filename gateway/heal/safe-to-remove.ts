/**
 * "Can store X be taken down now?" answered from the heads and store states the gateway
 * keeps current. Chunks are placed by rendezvous hashing over all data stores, so some
 * chunk of an image may be placed on any `replicas` of them: the worst-case number of
 * current copies of a chunk without X is `replicas` minus the data stores that are not
 * current for the image (lagging, down, or X itself).
 */
import type { Head } from "../image/head.ts";
import type { StoreState } from "../replication/store-health.ts";

/** The answer of `GET /v1/stores/{id}/safe-to-remove`. */
export interface SafeToRemove {
  readonly store: string;
  readonly safe: boolean;
  readonly reasons: string[];
  /** Images some of whose chunks would have no current copy left. */
  readonly wouldLoseLastCurrentCopy: string[];
  /** Images some of whose chunks would have fewer than minReplicas current copies. */
  readonly wouldFallBelowMinReplicas: string[];
  /** Heals running now that read from this store (it holds copies they need). */
  readonly healSources: { store: string; images: string[] }[];
}

/** Inputs: replication settings, every data store's state, the heads, and which stores heal which images. */
export interface SafetyInputs {
  readonly replicas: number;
  readonly minReplicas: number;
  readonly dataStores: readonly { id: string; state: StoreState }[];
  readonly heads: Iterable<Head>;
  readonly healing: ReadonlyMap<string, readonly string[]>;
}

/** Data stores holding the current version of `head` in full and reachable now. */
export function currentStores(head: Head, dataStores: SafetyInputs["dataStores"]): string[] {
  return dataStores
    .filter((s) => s.state !== "down" && head.synced[s.id]?.generation === head.generation)
    .map((s) => s.id);
}

/** Decides whether `store` can be removed without losing a current copy or dropping below minReplicas. */
export function safeToRemove(store: string, input: SafetyInputs): SafeToRemove {
  if (!input.dataStores.some((s) => s.id === store)) throw new RangeError(`No data store "${store}"`);
  const lose: string[] = [];
  const below: string[] = [];
  const sources = new Map<string, string[]>();
  for (const head of input.heads) {
    const current = currentStores(head, input.dataStores).filter((id) => id !== store);
    const notCurrent = input.dataStores.length - current.length;
    const worstCopies = Math.max(0, input.replicas - notCurrent);
    if (worstCopies === 0) lose.push(head.name);
    else if (worstCopies < input.minReplicas) below.push(head.name);
    const storeIsCurrent = head.synced[store]?.generation === head.generation;
    for (const [healed, images] of input.healing) {
      if (healed !== store && storeIsCurrent && images.includes(head.name)) {
        sources.set(healed, [...(sources.get(healed) ?? []), head.name]);
      }
    }
  }
  const reasons: string[] = [];
  if (lose.length)
    reasons.push(`${lose.length} image(s) would lose their last current copy: ${lose.join(", ")}`);
  if (below.length)
    reasons.push(
      `${below.length} image(s) would fall below ${input.minReplicas} current copies: ${below.join(", ")}`,
    );
  const healSources = [...sources].map(([s, images]) => ({ store: s, images }));
  for (const h of healSources) reasons.push(`store "${h.store}" is healing from it (${h.images.join(", ")})`);
  return {
    store,
    safe: reasons.length === 0,
    reasons,
    wouldLoseLastCurrentCopy: lose,
    wouldFallBelowMinReplicas: below,
    healSources,
  };
}
