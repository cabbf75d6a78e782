/**
 * The cluster record as a gateway uses it: learned at start (bootstrap), kept fresh, and
 * changed only through the register. It decides what each store is (identity, role) and
 * so what every request to it expects: a store object is told the identity the record
 * names for it, and a store that answers as another (a wiped disk) is refused.
 *
 * Bootstrap, without trusting any store yet:
 * 1. probe every store (identity, role) and read the raw acceptor state of the record from
 *    every reachable head holder;
 * 2. none anywhere: a new cluster, made only if every configured store answered (so a
 *    store that is merely down is never mistaken for a fresh one);
 * 3. otherwise take the identities from the highest record seen, make every store expect
 *    them, and read the record again through the register, where a holder with another
 *    identity cannot vote; repeat if that record names other identities.
 */
import type { ChunkStore, StoreProbe } from "../../chunkstore/chunk-store.ts";
import { Listeners } from "../_listeners.ts";
import { compareBallots, decodeAcceptorState } from "../register/acceptor-state.ts";
import { QuorumRegister } from "../register/quorum-register.ts";
import { keep, type Register, write } from "../register/register.ts";
import {
  addDamage,
  CLUSTER_KEY,
  type ClusterRecord,
  decodeClusterRecord,
  leavingStores,
  newClusterRecord,
  removeDamage,
  withStore,
} from "./cluster-record.ts";
import { withDeadline } from "./store-health.ts";
import type { StoreMember } from "./store-member.ts";

/** A configured store before the cluster record gives it a role. */
export interface ConfiguredStore {
  readonly id: string;
  readonly url: string;
  readonly store: ChunkStore;
}

/** Startup failed for a reason an operator must act on (one clear line). */
export class ClusterConfigError extends Error {
  override readonly name = "ClusterConfigError";
}

/** How long a bootstrap probe may take before the store counts as unreachable. */
const BOOTSTRAP_PROBE_MS = 3000;
/** How often the record is re-read in the background (maintenance, damage, identities). */
const REFRESH_MS = 2000;

/** What {@link bootstrapCluster} returns: the record, the members with their roles, and the register over the holders. */
export interface Bootstrapped {
  readonly record: ClusterRecord;
  readonly members: StoreMember[];
  readonly register: QuorumRegister;
  /** Each store's probe at start (an error: it was unreachable). */
  readonly probes: ReadonlyMap<string, StoreProbe | Error>;
}

/** Learns (or creates) the cluster record; see the module doc. */
export async function bootstrapCluster(
  configured: readonly ConfiguredStore[],
  options: {
    gatewayId: string;
    isDown?: (id: string) => boolean;
    onFailure?: (id: string, error: unknown) => void;
  },
): Promise<Bootstrapped> {
  const probes = new Map<string, StoreProbe | Error>();
  await Promise.all(
    configured.map(async (c) => {
      try {
        probes.set(c.id, await withDeadline(c.store.probe(), BOOTSTRAP_PROBE_MS, `probe of store ${c.id}`));
      } catch (err) {
        probes.set(c.id, err instanceof Error ? err : new Error(String(err)));
      }
    }),
  );
  const reachable = configured.filter((c) => !(probes.get(c.id) instanceof Error));
  const probeOf = (id: string) => probes.get(id) as StoreProbe;
  // The highest record any reachable holder has accepted (untrusted: it only suggests identities).
  let candidate: ClusterRecord | null = null;
  let candidateBallot: readonly [number, string] | null = null;
  let anyState = false;
  await Promise.all(
    reachable
      .filter((c) => probeOf(c.id).capabilities.refs)
      .map(async (c) => {
        const entry = await c.store.getRef(CLUSTER_KEY).catch(() => null);
        if (!entry) return;
        anyState = true;
        let state: ReturnType<typeof decodeAcceptorState>;
        try {
          state = decodeAcceptorState(entry.value);
        } catch {
          return; // a store removed from the register (fenced): it suggests nothing
        }
        const value = (state.value as { d?: unknown } | null)?.d;
        if (!state.accepted || value === undefined || value === null) return;
        if (!candidateBallot || compareBallots(state.accepted, candidateBallot) > 0) {
          candidateBallot = state.accepted;
          candidate = decodeClusterRecord(value);
        }
      }),
  );

  const makeMembers = (roles: (id: string) => { chunks: boolean; refs: boolean }): StoreMember[] =>
    configured.map((c) => ({ id: c.id, url: c.url, store: c.store, ...roles(c.id) }));
  const makeRegister = (members: StoreMember[]) =>
    new QuorumRegister(
      members.filter((m) => m.refs),
      { proposer: options.gatewayId, isDown: options.isDown, onFailure: options.onFailure },
    );

  if (candidate === null) {
    // Only promises (another gateway starting at the same moment) are fine: the register
    // settles who creates the record. Heads without a record are not: refuse to guess.
    const heads = await Promise.all(
      reachable
        .filter((c) => probeOf(c.id).capabilities.refs)
        .map((c) =>
          c.store.scanRefs("head.", { limit: 1 }).then(
            (p) => p.refs.length,
            () => 0,
          ),
        ),
    );
    if (anyState && heads.some((n) => n > 0)) {
      throw new ClusterConfigError(
        "The head holders hold image heads but no cluster record (stores of an older blockmend, or a damaged register): refusing to start a new cluster over them",
      );
    }
    const down = configured.filter((c) => probes.get(c.id) instanceof Error);
    if (down.length > 0) {
      throw new ClusterConfigError(
        `No cluster record could be read from the reachable stores, and a new cluster is created only with every store reachable; not reachable: ${down
          .map((c) => `${c.id} (${(probes.get(c.id) as Error).message})`)
          .join("; ")}`,
      );
    }
    const members = makeMembers((id) => ({
      chunks: probeOf(id).capabilities.chunks,
      refs: probeOf(id).capabilities.refs,
    }));
    if (!members.some((m) => m.refs))
      throw new ClusterConfigError("No store holds refs: add a file, http or witness store");
    for (const m of members) m.store.expectIdentity(probeOf(m.id).identity);
    const register = makeRegister(members);
    const fresh = newClusterRecord(
      members.map((m) => ({ id: m.id, identity: probeOf(m.id).identity, chunks: m.chunks, refs: m.refs })),
    );
    const record = await register.update(CLUSTER_KEY, (cur) =>
      cur === null ? write(fresh, fresh) : keep(decodeClusterRecord(cur)),
    );
    checkConfiguration(record, configured);
    return { record, members, register, probes };
  }

  let record: ClusterRecord = candidate;
  for (let round = 0; ; round++) {
    checkConfiguration(record, configured);
    const current = record;
    const members = makeMembers((id) => ({
      chunks: current.stores[id]!.chunks,
      refs: current.stores[id]!.refs,
    }));
    for (const m of members) m.store.expectIdentity(current.stores[m.id]!.identity);
    const register = makeRegister(members);
    // A holder that answers with another identity would be refused anyway; keep it out of
    // the register explicitly until it has rejoined (heal/replacement.ts).
    for (const m of members) {
      const p = probes.get(m.id);
      if (m.refs && p && !(p instanceof Error) && p.identity !== current.stores[m.id]!.identity)
        register.exclude(m.id);
    }
    const read = await register.read(CLUSTER_KEY);
    if (read === null)
      throw new ClusterConfigError("The cluster record vanished from the register while starting");
    const confirmed = decodeClusterRecord(read);
    const same = Object.keys(confirmed.stores).every(
      (id) => confirmed.stores[id]!.identity === current.stores[id]?.identity,
    );
    if (same || round >= 3) return { record: confirmed, members, register, probes };
    record = confirmed;
  }
}

/** The configured store ids must be the cluster's: a different list never silently moves placement. */
function checkConfiguration(record: ClusterRecord, configured: readonly ConfiguredStore[]): void {
  const inRecord = Object.keys(record.stores).sort();
  const given = configured.map((c) => c.id).sort();
  const missing = inRecord
    .filter((id) => !given.includes(id))
    .map((id) => (record.stores[id]!.url ? `${id}=${record.stores[id]!.url}` : id));
  const extra = given.filter((id) => !inRecord.includes(id));
  if (missing.length || extra.length) {
    throw new ClusterConfigError(
      `The --store list differs from the cluster's stores (${inRecord.join(", ")}):${missing.length ? ` missing ${missing.join(", ")};` : ""}${extra.length ? ` not in the cluster: ${extra.join(", ")};` : ""} start with the cluster's stores`,
    );
  }
}

/** The cluster record of a running gateway. */
export class Cluster {
  readonly #register: Register;
  readonly #members: Map<string, StoreMember>;
  #record: ClusterRecord;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** A store's recorded identity changed (a replacement was recorded, here or by another gateway). */
  readonly identityChanged = new Listeners<[id: string, identity: string]>();
  /** A newer record was adopted (membership follows it: `membership.ts`). */
  readonly changed = new Listeners<[record: ClusterRecord, before: ClusterRecord]>();

  constructor(register: Register, members: readonly StoreMember[], record: ClusterRecord) {
    this.#register = register;
    this.#members = new Map(members.map((m) => [m.id, m]));
    this.#record = record;
  }

  /** The record as last read (no I/O). */
  get record(): ClusterRecord {
    return this.#record;
  }

  /** The identity the record names for `store`. */
  identity(store: string): string | null {
    return this.#record.stores[store]?.identity ?? null;
  }

  /** Stores in maintenance, as last read. */
  leaving(): ReadonlySet<string> {
    return leavingStores(this.#record);
  }

  /** Stores in maintenance, read fresh. */
  async freshLeaving(): Promise<ReadonlySet<string>> {
    return leavingStores(await this.fresh());
  }

  /** What a commit reads before it puts chunks: stores in maintenance and the gc barrier, fresh. */
  async freshState(): Promise<{ leaving: ReadonlySet<string>; gcEpoch: number }> {
    const r = await this.fresh();
    return { leaving: leavingStores(r), gcEpoch: r.gcEpoch ?? 0 };
  }

  /** Garbage collection's barrier: bumps gcEpoch; resolves with the new value. */
  async bumpGcEpoch(): Promise<number> {
    return (await this.update((r) => ({ ...r, gcEpoch: (r.gcEpoch ?? 0) + 1 }))).gcEpoch!;
  }

  /** Reads the record now (linearizably). */
  async fresh(): Promise<ClusterRecord> {
    const v = await this.#register.read(CLUSTER_KEY);
    if (v === null) throw new Error("The cluster record is missing from the register");
    this.#adopt(decodeClusterRecord(v));
    return this.#record;
  }

  /** Changes the record with `fn` (pure; may run several times); resolves with the record after. */
  async update(fn: (record: ClusterRecord) => ClusterRecord): Promise<ClusterRecord> {
    const next = await this.#register.update(CLUSTER_KEY, (cur) => {
      if (cur === null) throw new Error("The cluster record is missing from the register");
      const record = decodeClusterRecord(cur);
      const changed = fn(record);
      if (changed === record) return keep(record);
      const next = { ...changed, generation: record.generation + 1 };
      return write(next, next);
    });
    this.#adopt(next);
    return next;
  }

  /** Puts `store` in maintenance (`by`: the gateway asking) or takes it out. */
  setMaintenance(store: string, on: boolean, by: string): Promise<ClusterRecord> {
    return this.update((r) =>
      withStore(r, store, (s) =>
        on
          ? s.maintenance
            ? s
            : { ...s, maintenance: { since: new Date().toISOString(), by } }
          : s.maintenance
            ? { ...s, maintenance: null }
            : s,
      ),
    );
  }

  /** Records chunks found corrupt or missing on `store`. */
  reportDamage(store: string, hashes: readonly string[]): Promise<ClusterRecord> {
    return this.update((r) => {
      const s = r.stores[store];
      if (!s) return r;
      const next = addDamage(s, hashes);
      return next === s ? r : withStore(r, store, () => next);
    });
  }

  /** Records chunks of `store` repaired (and, after a clean full scrub, that nothing unlisted is left). */
  clearDamage(store: string, hashes: readonly string[], cleanPass = false): Promise<ClusterRecord> {
    return this.update((r) => {
      const s = r.stores[store];
      if (!s?.damaged) return r;
      const next = removeDamage(s, hashes, cleanPass);
      return next === s ? r : withStore(r, store, () => next);
    });
  }

  /**
   * Records that `store` now is the store with `identity` (a replacement, handled), if the
   * record still names `replacing`, the identity the caller saw recorded when it began.
   */
  recordIdentity(store: string, identity: string, replacing: string): Promise<ClusterRecord> {
    return this.update((r) =>
      // Recorded already, or another gateway recorded a later replacement meanwhile (a store
      // wiped twice): a late writer must never put the older identity back.
      r.stores[store]?.identity === identity || r.stores[store]?.identity !== replacing
        ? r
        : withStore(r, store, (s) => ({
            ...s,
            identity,
            previousIdentity: s.identity,
            identitySince: new Date().toISOString(),
            damaged: null,
          })),
    );
  }

  /** A store joined (the record names it): its requests expect the recorded identity from now on. */
  addMember(member: StoreMember): void {
    this.#members.set(member.id, member);
    const identity = this.identity(member.id);
    if (identity) member.store.expectIdentity(identity);
  }

  /** A store left the record. */
  removeMember(id: string): void {
    this.#members.delete(id);
  }

  /** Keeps the record fresh in the background. */
  start(): void {
    const tick = async () => {
      await this.fresh().catch(() => {});
      if (!this.#stopped) {
        this.#timer = setTimeout(tick, REFRESH_MS);
        (this.#timer as { unref?: () => void }).unref?.();
      }
    };
    this.#timer = setTimeout(tick, REFRESH_MS);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** Takes a newer record: stores whose identity changed are told to expect the new one. */
  #adopt(record: ClusterRecord): void {
    const before = this.#record;
    if (record.generation < before.generation) return; // an answer overtaken by a newer one
    this.#record = record;
    for (const [id, s] of Object.entries(record.stores)) {
      if (before.stores[id]?.identity === s.identity) continue;
      if (!before.stores[id]) continue; // a store added: membership opens it
      this.#members.get(id)?.store.expectIdentity(s.identity);
      this.identityChanged.emit(id, s.identity);
    }
    if (record.generation > before.generation) this.changed.emit(record, before);
  }
}
