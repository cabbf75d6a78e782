/**
 * The cluster record: the register key `cluster`, beside the image heads. It names the
 * store set with each store's identity and role, which stores are in maintenance, and
 * which chunks are known damaged on which store. Every gateway reads it at start and
 * keeps it fresh; every change goes through the register.
 *
 * FROZEN format 1 (add fields, never rename):
 *   {"format":1,"id":UUID,"generation":n,"createdAt":ISO,"stores":{ID:{"identity","chunks","refs",
 *    "identitySince","previousIdentity"?,"maintenance":{since,by}|null,
 *    "damaged":{"chunks":[hash...],"overflow":n,"since"}|null,
 *    "url"?:URL,"draining"?:{since,by}|null}},
 *    "gcEpoch"?:n,"placementEpoch"?:n}
 *
 * Placement: chunks are placed by rendezvous hashing over the data stores that are not
 * draining (`placementStores`); `placementEpoch` (absent: 0) is bumped by every change of
 * that set (a store added, drained, a drain cancelled). Replica state in heads is recorded
 * per epoch: what a store held in full under another placement counts as nothing.
 */
import { isHash } from "../../chunkstore/hash.ts";
import { isIdentity } from "../../chunkstore/identity.ts";

/** The register key of the cluster record. */
export const CLUSTER_KEY = "cluster";

/** Damaged chunk hashes kept per store; past this only a count is kept (and a full scrub must clear it). */
export const MAX_DAMAGED_LISTED = 256;

/** Chunks known corrupt or missing on a store (found by scrub or a read) and not yet repaired. */
export interface DamageRecord {
  readonly chunks: readonly string[];
  /** Damaged chunks beyond the listed ones. */
  readonly overflow: number;
  readonly since: string;
}

/** A store as the cluster knows it. */
export interface ClusterStore {
  /** The identity heads' replica state is recorded against (chunk-store.ts, StoreProbe). */
  readonly identity: string;
  readonly identitySince: string;
  /** The identity before the last replacement, if there was one. */
  readonly previousIdentity?: string;
  readonly chunks: boolean;
  readonly refs: boolean;
  /** In maintenance (leaving): new commits do not count this store toward minReplicas. */
  readonly maintenance: { readonly since: string; readonly by: string } | null;
  readonly damaged: DamageRecord | null;
  /** Where gateways reach it (set for stores added by `store add`; others use their `--store` URL). */
  readonly url?: string;
  /** Being drained: out of placement (no new chunks placed on it); its copies stay readable until removed. */
  readonly draining?: { readonly since: string; readonly by: string } | null;
}

/** The whole record. */
export interface ClusterRecord {
  readonly format: 1;
  readonly id: string;
  /** Bumped by every change. */
  readonly generation: number;
  readonly createdAt: string;
  readonly stores: Readonly<Record<string, ClusterStore>>;
  /**
   * Garbage collection's barrier counter (gateway/gc/): bumped by a collector after it
   * condemned chunks. A commit reads it before putting chunks; if a head it commits to
   * carries a higher stamp, its chunks are put again (which revives condemned ones).
   */
  readonly gcEpoch?: number;
  /** Bumped by every change of the placement set (absent: 0). */
  readonly placementEpoch?: number;
}

/** A new record for stores that all answered with their identity and role. */
export function newClusterRecord(
  stores: readonly { id: string; identity: string; chunks: boolean; refs: boolean }[],
): ClusterRecord {
  const now = new Date().toISOString();
  return {
    format: 1,
    id: crypto.randomUUID(),
    generation: 1,
    createdAt: now,
    stores: Object.fromEntries(
      stores.map((s) => [
        s.id,
        {
          identity: s.identity,
          identitySince: now,
          chunks: s.chunks,
          refs: s.refs,
          maintenance: null,
          damaged: null,
        } satisfies ClusterStore,
      ]),
    ),
  };
}

/** Validates a record read from the register; throws a TypeError naming what is wrong. */
export function decodeClusterRecord(value: unknown): ClusterRecord {
  const r = value as Partial<ClusterRecord> | null;
  if (
    !r ||
    typeof r !== "object" ||
    r.format !== 1 ||
    typeof r.id !== "string" ||
    typeof r.stores !== "object"
  )
    throw new TypeError("The register's cluster record is malformed (expected format 1)");
  for (const [id, s] of Object.entries(r.stores ?? {})) {
    if (!isIdentity(s?.identity) || typeof s.chunks !== "boolean" || typeof s.refs !== "boolean")
      throw new TypeError(`The cluster record's store "${id}" is malformed`);
    for (const h of s.damaged?.chunks ?? [])
      if (!isHash(h)) throw new TypeError(`The cluster record lists a malformed damaged chunk on "${id}"`);
  }
  return r as ClusterRecord;
}

/** The placement epoch (absent: 0). */
export function placementEpochOf(record: ClusterRecord): number {
  return record.placementEpoch ?? 0;
}

/** The data stores chunks are placed on: not draining, in record order. */
export function placementStores(record: ClusterRecord): string[] {
  return Object.entries(record.stores)
    .filter(([, s]) => s.chunks && !s.draining)
    .map(([id]) => id);
}

/** Ids of the stores being drained. */
export function drainingStores(record: ClusterRecord): Set<string> {
  return new Set(
    Object.entries(record.stores)
      .filter(([, s]) => s.draining)
      .map(([id]) => id),
  );
}

/**
 * Ids of the leaving stores: in maintenance or draining. New commits count no copy on them
 * toward minReplicas (and every head is stamped with them: `heal/maintenance.ts`).
 */
export function leavingStores(record: ClusterRecord): Set<string> {
  return new Set(
    Object.entries(record.stores)
      .filter(([, s]) => s.maintenance || s.draining)
      .map(([id]) => id),
  );
}

/** How many chunks are known damaged on `store` (listed plus overflow). */
export function damagedCount(record: ClusterRecord, store: string): number {
  const d = record.stores[store]?.damaged;
  return d ? d.chunks.length + d.overflow : 0;
}

/** `record` with `store` changed by `fn` (a new object; the record is immutable). */
export function withStore(
  record: ClusterRecord,
  store: string,
  fn: (s: ClusterStore) => ClusterStore,
): ClusterRecord {
  const current = record.stores[store];
  if (!current) throw new RangeError(`No store "${store}" in the cluster`);
  return { ...record, stores: { ...record.stores, [store]: fn(current) } };
}

/** Adds chunks found damaged on a store (deduplicated; past the list limit only counted). */
export function addDamage(s: ClusterStore, hashes: readonly string[]): ClusterStore {
  const listed = new Set(s.damaged?.chunks ?? []);
  let overflow = s.damaged?.overflow ?? 0;
  for (const h of hashes) {
    if (listed.has(h)) continue;
    if (listed.size < MAX_DAMAGED_LISTED) listed.add(h);
    else overflow++;
  }
  if (listed.size === 0 && overflow === 0) return s;
  return {
    ...s,
    damaged: { chunks: [...listed].sort(), overflow, since: s.damaged?.since ?? new Date().toISOString() },
  };
}

/**
 * Removes repaired chunks. `cleanPass`: a full scrub pass found nothing beyond the listed
 * ones, so the overflow count (chunks not listed by hash) is cleared too.
 */
export function removeDamage(s: ClusterStore, repaired: readonly string[], cleanPass = false): ClusterStore {
  if (!s.damaged) return s;
  const gone = new Set(repaired);
  const chunks = s.damaged.chunks.filter((h) => !gone.has(h));
  const overflow = cleanPass ? 0 : s.damaged.overflow;
  return { ...s, damaged: chunks.length === 0 && overflow === 0 ? null : { ...s.damaged, chunks, overflow } };
}
