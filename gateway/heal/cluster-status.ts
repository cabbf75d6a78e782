/**
 * The answers of the status routes (`/v1/stores`, `/v1/heal`, safe-to-remove), for the
 * whole cluster from any gateway: each is computed from the cluster record and every head
 * read fresh from the register, what this gateway sees of each store, and the heals (run
 * here, or published by the gateway that runs them in its lease).
 */
import { type Head, liveHead } from "../image/head.ts";
import type { HeadWriter } from "../image/head-writer.ts";
import type { InflightCommit } from "../image/image-context.ts";
import type { Cluster } from "../replication/cluster.ts";
import { placementEpochOf, placementStores } from "../replication/cluster-record.ts";
import { type StoreHealth, unknownStatus } from "../replication/store-health.ts";
import type { StoreSet } from "../replication/store-set.ts";
import type { HealProgress, HealScheduler } from "./heal-scheduler.ts";
import type { RepairQueue } from "./read-repair.ts";
import { currentStores, type ReplicaInputs, type StoreState, storeStates } from "./replica-state.ts";
import { type SafeToRemove, safeToRemove } from "./safe-to-remove.ts";
import type { Scrubber, ScrubStatus } from "./scrub.ts";
import type { HealLimits, HealThrottle } from "./throttle.ts";

/** What the status answers are made from. */
export interface StatusDeps {
  readonly cluster: Cluster;
  readonly heads: HeadWriter;
  readonly health: StoreHealth;
  readonly stores: StoreSet;
  readonly inflight: () => InflightCommit[];
  readonly heal: HealScheduler;
  readonly scrub: Scrubber;
  readonly repairs: RepairQueue;
  readonly throttle: HealThrottle;
  /** Head holders this gateway's register keeps out of its quorums now; absent: none. */
  readonly registerExcluded?: () => ReadonlySet<string>;
}

/** One store in `GET /v1/stores`. */
export interface StoreAnswer {
  readonly id: string;
  readonly url: string;
  readonly role: "data" | "witness";
  readonly state: StoreState;
  readonly reasons: readonly string[];
  /** Whether new chunks are placed on it (a data store not draining). */
  readonly placement: boolean;
  /** `{since, by}` while it is being drained, else null. */
  readonly draining: { readonly since: string; readonly by: string } | null;
  readonly since: string;
  readonly identity: string;
  readonly observedIdentity: string | null;
  readonly maintenance: { readonly since: string; readonly by: string } | null;
  readonly damagedChunks: number;
  readonly chunks: number | null;
  readonly bytes: number | null;
  readonly freeBytes: number | null;
  /** Bytes on disk held by deleted chunks, which compaction frees (file stores; else null). */
  readonly reclaimableBytes: number | null;
  /** How fast its used bytes grow, bytes per second (smoothed over about a minute; null until known). */
  readonly fillBytesPerSecond: number | null;
  /** Why it is full (state `full`), or null. */
  readonly fullReason: string | null;
  readonly failures: number;
  readonly lag: readonly { image: string; syncedGeneration: number; generation: number; reason: string }[];
}

/** The whole of `GET /v1/stores`. */
export interface StoresAnswer {
  readonly replicas: number;
  readonly minReplicas: number;
  readonly placementEpoch: number;
  readonly placement: string[];
  readonly stores: StoreAnswer[];
}

/** One data store in `GET /v1/heal`. */
export interface StoreHealAnswer {
  readonly id: string;
  readonly state: StoreState;
  readonly imagesBehind: number;
  readonly running: boolean;
  /** The gateway running (or that last ran) its heal. */
  readonly gateway: string | null;
  readonly missingBytes: number;
  readonly copiedBytes: number;
  readonly rateBytesPerSecond: number;
  readonly etaSeconds: number | null;
  readonly converges: boolean;
  readonly lostChunks: number;
  readonly lastError: string | null;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  readonly images: HealProgress["images"];
}

/** Builds the status answers. */
export class ClusterStatus {
  readonly #d: StatusDeps;

  constructor(deps: StatusDeps) {
    this.#d = deps;
  }

  /** Fresh inputs: the record and every head from the register; with `probe`, every store probed now. */
  async inputs(options: { probe?: boolean } = {}): Promise<ReplicaInputs> {
    const [record, scanned] = await Promise.all([
      this.#d.cluster.fresh(),
      this.#d.heads.scan(),
      options.probe ? this.#d.health.probeAll() : Promise.resolve(),
    ]);
    const heads = [...scanned.values()].map(liveHead).filter((h): h is Head => h !== null);
    return {
      record,
      heads,
      up: (id) => !this.#d.health.isDown(id),
      observed: (id) => this.#d.health.status(id)?.identity ?? null,
      full: (id) => this.#d.health.isFull(id),
      inflight: this.#d.inflight(),
      registerExcluded: (id) => this.#d.registerExcluded?.().has(id) ?? false,
    };
  }

  /** `GET /v1/stores`; from `given` inputs when the caller read them already (the dashboard's one read a tick). */
  async stores(given?: ReplicaInputs): Promise<StoresAnswer> {
    const inputs = given ?? (await this.inputs());
    const placed = placementStores(inputs.record);
    return {
      replicas: this.#d.stores.options.replicas,
      minReplicas: this.#d.stores.options.minReplicas,
      placementEpoch: placementEpochOf(inputs.record),
      placement: placed,
      stores: storeStates(inputs).map((s) => {
        // A store the record names that this gateway could not open (yet) has no health entry.
        const h =
          this.#d.health.status(s.id) ??
          unknownStatus(s.id, inputs.record.stores[s.id]?.url ?? "", "not opened by this gateway");
        const recorded = inputs.record.stores[s.id];
        return {
          id: s.id,
          url: h.url,
          placement: placed.includes(s.id),
          draining: recorded?.draining ?? null,
          role: s.role,
          state: s.state,
          reasons: s.reasons,
          since: h.since,
          identity: s.identity,
          observedIdentity: s.observedIdentity,
          maintenance: s.maintenance,
          damagedChunks: s.damagedChunks,
          chunks: h.chunks,
          bytes: h.bytes,
          freeBytes: h.freeBytes,
          reclaimableBytes: h.reclaimableBytes,
          fillBytesPerSecond: h.fillBytesPerSecond,
          fullReason: h.fullReason,
          failures: h.failures,
          lag: s.lag,
        };
      }),
    };
  }

  /**
   * The placement epoch if, read fresh now (stores probed), every placement store holds
   * every live image in full under it, counting this gateway's commits in flight; else
   * null. Garbage collection drops surplus copies only then.
   */
  async settledEpoch(): Promise<number | null> {
    const inputs = await this.inputs({ probe: true });
    const placed = placementStores(inputs.record);
    const settled = inputs.heads.every((head) => currentStores(inputs, head).length === placed.length);
    return settled ? placementEpochOf(inputs.record) : null;
  }

  /** `GET /v1/heal`; from `given` inputs as {@link stores}. */
  async heal(given?: ReplicaInputs): Promise<{
    healing: boolean;
    limits: HealLimits;
    stores: StoreHealAnswer[];
    /** Witnesses hold heads only (nothing to heal); down, they weaken the head majority. */
    witnesses: { id: string; state: StoreState; reasons: readonly string[] }[];
    scrub: ScrubStatus[];
    repairedChunks: number;
  }> {
    const [inputs, heals] = await Promise.all([given ?? this.inputs(), this.#d.heal.status()]);
    const states = new Map(storeStates(inputs).map((s) => [s.id, s]));
    const limit = this.#d.throttle.limits().rateBytesPerSecond;
    const stores = heals.map(({ store, running, progress: p, rateBytesPerSecond: rate }) => {
      const s = states.get(store)!;
      const remaining = p ? Math.max(0, p.missingBytes - p.copiedBytes) : 0;
      return {
        id: store,
        state: s.state,
        imagesBehind: s.lag.length,
        running,
        gateway: p?.gateway ?? null,
        missingBytes: p?.missingBytes ?? 0,
        copiedBytes: p?.copiedBytes ?? 0,
        rateBytesPerSecond: running ? rate : 0,
        // Tenths of a second: rounding up to whole seconds made the last seconds' estimates
        // wrong by up to 5x (an ETA of 1 s with 0.2 s left).
        etaSeconds: running
          ? remaining === 0
            ? 0
            : Math.max(0.1, Math.round((remaining / Math.max(1, rate || limit)) * 10) / 10)
          : null,
        // The backlog only shrinks while the store is reachable (new writes reach it directly).
        converges: s.state !== "down" && s.state !== "replaced" && s.state !== "full",
        lostChunks: p?.lostChunks ?? 0,
        lastError: p?.lastError ?? null,
        startedAt: p?.startedAt ?? null,
        finishedAt: p?.finishedAt ?? null,
        images: p?.images ?? [],
      } satisfies StoreHealAnswer;
    });
    return {
      healing: stores.some((s) => s.running || s.state === "healing" || s.state === "replaced"),
      limits: this.#d.throttle.limits(),
      stores,
      witnesses: [...states.values()]
        .filter((s) => s.role === "witness")
        .map((s) => ({ id: s.id, state: s.state, reasons: s.reasons })),
      scrub: this.#d.scrub.status(),
      repairedChunks: this.#d.repairs.repairedChunks,
    };
  }

  /**
   * Safe-to-remove from a fresh probe of every store and fresh heads, or from `given`
   * inputs (the dashboard's, unprobed: as of the last probe, about a second old).
   */
  async safeToRemove(store: string, given?: ReplicaInputs): Promise<SafeToRemove> {
    const inputs = given ?? (await this.inputs({ probe: true }));
    return safeToRemove(store, {
      ...inputs,
      replicas: this.#d.stores.options.replicas,
      minReplicas: this.#d.stores.options.minReplicas,
      healing: this.#d.heal.healing(),
    });
  }
}
