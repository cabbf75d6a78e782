/**
 * The data stores of a gateway as one replicated chunk store: placement, replicated
 * puts that need at least `minReplicas` copies outside stores in maintenance, and verified
 * reads that fall back to another replica on a missing, corrupt, unreachable or slow copy.
 *
 * A hung store (a cable pull, a SIGSTOP) must not freeze VM I/O: reads are hedged (the
 * next replica is asked when the first is slow), and a put that has `minReplicas` copies
 * waits only a short grace for the rest before it counts the slow store as incomplete
 * for this commit (its replica state then stays behind, and heal catches it up). Stores
 * known to be down are skipped at once, and so are full ones (at their high-water mark):
 * their chunks go to the next stores in rendezvous order, the full store stays behind
 * (it lacks what was placed on it) and catches up by a heal once it has room.
 */
import type { ChunkPut, Hash } from "../../chunkstore/chunk-store.ts";
import { ChunkCorruptError, ChunkNotFoundError, StoreFullError } from "../../chunkstore/errors.ts";
import { MAX_BATCH_HASHES } from "../../chunkstore/limits.ts";
import { Listeners } from "../_listeners.ts";
import { NotEnoughReplicasError } from "../errors.ts";
import { Rendezvous } from "./placement.ts";
import type { StoreMember } from "./store-member.ts";

/** Replication settings. */
export interface ReplicationOptions {
  /** Copies of each chunk (placement width). */
  readonly replicas: number;
  /** Copies that must be durable, outside stores in maintenance, before a write counts as done. */
  readonly minReplicas: number;
}

/** What the store set asks the health tracker, and tells it. */
export interface HealthView {
  isDown(id: string): boolean;
  /** At its high-water mark: placement skips it for new chunks (reads go on). */
  isFull(id: string): boolean;
  reportFailure(id: string, error: unknown): void;
  /**
   * Known to lack chunks it should hold (a heal is due or runs): read after the others, or
   * every VM read of a chunk not healed yet pays a miss there and queues a repair that
   * competes with the heal for its rate.
   */
  isBehind?(id: string): boolean;
}

/** Chunks per putMany call to one store: bounded so one request stays well under the batch limits. */
const PUT_BATCH = 64;
/** Once every chunk has minReplicas copies, how long to wait for slower placement stores. */
export const STRAGGLER_GRACE_MS = 500;
/** Ask the next replica when a read has not answered in this long (hedged reads). */
export const HEDGE_AFTER_MS = 150;

/** Chunks per batched read of {@link StoreSet.getChunks} (4 MiB of 64 KiB chunks), each hedged on its own. */
const READ_BATCH_CHUNKS = 64;

/**
 * How a replicated put went. A store is `complete` when it received every chunk placed on
 * it (the identity is the one its requests were conditioned on); copies per chunk tell
 * whether the put has enough outside a given set of leaving stores.
 */
export class PutOutcome {
  readonly complete: ReadonlyMap<string, string>;
  readonly failedStores: ReadonlySet<string>;
  /** The placement epoch the chunks were placed under (`complete` is relative to it). */
  readonly placementEpoch: number;
  /**
   * Resolves once every store put this call started has ended, stragglers included (the
   * call itself returns after a grace): only then may the caller write over the bytes it
   * put. Never rejects.
   */
  readonly settled: Promise<void>;
  readonly #copies: ReadonlyMap<Hash, ReadonlySet<string>>;

  constructor(
    complete: ReadonlyMap<string, string>,
    failed: ReadonlySet<string>,
    copies: ReadonlyMap<Hash, ReadonlySet<string>>,
    settled: Promise<void> = Promise.resolve(),
    placementEpoch = 0,
  ) {
    this.complete = complete;
    this.failedStores = failed;
    this.#copies = copies;
    this.settled = settled;
    this.placementEpoch = placementEpoch;
  }

  /** True if every chunk put has at least `min` copies on stores outside `leaving`. */
  enoughCopies(leaving: ReadonlySet<string>, min: number): boolean {
    for (const stores of this.#copies.values()) {
      let n = 0;
      for (const s of stores) if (!leaving.has(s)) n++;
      if (n < min) return false;
    }
    return true;
  }

  /** Both puts together (a commit's data chunks and its map pages). */
  static merge(a: PutOutcome, b: PutOutcome): PutOutcome {
    return new PutOutcomes().add(a).add(b).outcome;
  }

  /** Adds this put's copies to `into` (for {@link PutOutcomes}). */
  addCopiesTo(into: Map<Hash, Set<string>>): void {
    for (const [h, s] of this.#copies) {
      const have = into.get(h);
      if (!have) into.set(h, new Set(s));
      else for (const id of s) have.add(id);
    }
  }
}

/**
 * Many puts together (an import's or a restore's batches), in time linear in their chunks:
 * merging pairwise copies everything so far each time, which was a quarter of the
 * gateway's thread during a 1 GiB S3 import.
 */
export class PutOutcomes {
  #complete: Map<string, string> | null = null;
  #epoch = 0;
  readonly #failed = new Set<string>();
  readonly #copies = new Map<Hash, Set<string>>();
  #outcome: PutOutcome | null = null;

  /** Adds one put: a store stays complete only if it received every put in full, as the same store. */
  add(o: PutOutcome): this {
    if (this.#complete === null) {
      this.#complete = new Map(o.complete);
      this.#epoch = o.placementEpoch;
    } else if (o.placementEpoch !== this.#epoch) {
      // Placed under two placements: no store is known to hold all placed on it under either.
      this.#complete.clear();
      this.#epoch = Math.max(this.#epoch, o.placementEpoch);
    } else
      for (const [id, identity] of this.#complete)
        if (o.complete.get(id) !== identity) this.#complete.delete(id);
    for (const id of o.failedStores) this.#failed.add(id);
    o.addCopiesTo(this.#copies);
    this.#outcome = null;
    return this;
  }

  /** True once a put was added. */
  get any(): boolean {
    return this.#complete !== null;
  }

  /** Everything added so far, as one outcome (it shares this accumulator's maps until the next add). */
  get outcome(): PutOutcome {
    this.#outcome ??= new PutOutcome(
      this.#complete ?? new Map(),
      this.#failed,
      this.#copies,
      Promise.resolve(),
      this.#epoch,
    );
    return this.#outcome;
  }
}

/** A placement: its epoch (cluster record) and the data stores chunks are placed on. */
export class PlacementView {
  readonly epoch: number;
  readonly stores: readonly string[];
  readonly #rendezvous: Rendezvous;
  readonly #replicas: number;

  constructor(epoch: number, stores: readonly string[], replicas: number) {
    this.epoch = epoch;
    this.stores = stores;
    this.#replicas = replicas;
    this.#rendezvous = new Rendezvous(stores);
  }

  /** The placement stores, best first, for `hash`. */
  order(hash: Hash): string[] {
    return this.#rendezvous.order(hash);
  }

  /** The `replicas` stores of `hash`, best first. */
  placement(hash: Hash): string[] {
    return this.#rendezvous.order(hash).slice(0, this.#replicas);
  }
}

/** Replicated chunk storage over the data stores. */
export class StoreSet {
  readonly options: ReplicationOptions;
  #members: StoreMember[];
  /** `dataMembers`, until the members change. */
  #data: StoreMember[] | null = null;
  readonly #byId: Map<string, StoreMember>;
  #view: PlacementView;
  readonly #health: HealthView;
  readonly #identity: (id: string) => string | null;
  /** A read found a copy missing or corrupt on a placement store (read-repair listens). */
  readonly badCopy = new Listeners<[store: string, hash: Hash, reason: "missing" | "corrupt"]>();

  /**
   * @param identity the identity each store is expected to have now (puts are conditioned
   *   on it by the store objects; the outcome records it).
   * @param placement the placement epoch and its stores (default: epoch 0, every data store).
   */
  constructor(
    members: readonly StoreMember[],
    options: ReplicationOptions,
    health: HealthView,
    identity: (id: string) => string | null,
    placement?: { epoch: number; stores: readonly string[] },
  ) {
    this.options = options;
    this.#members = [...members];
    this.#health = health;
    this.#identity = identity;
    if (!Number.isInteger(options.replicas) || options.replicas < 1)
      throw new RangeError(`replicas must be a positive integer; got ${options.replicas}`);
    if (
      !Number.isInteger(options.minReplicas) ||
      options.minReplicas < 1 ||
      options.minReplicas > options.replicas
    ) {
      throw new RangeError(
        `minReplicas must be between 1 and replicas (${options.replicas}); got ${options.minReplicas}`,
      );
    }
    this.#byId = new Map(members.map((m) => [m.id, m]));
    this.#view = this.#checkedView(
      placement?.epoch ?? 0,
      placement?.stores ?? this.dataMembers.map((m) => m.id),
    );
  }

  /** Every configured store (data stores and witnesses). */
  get members(): readonly StoreMember[] {
    return this.#members;
  }

  /** The stores that hold chunks (draining ones included: their copies are still read). */
  get dataMembers(): readonly StoreMember[] {
    // Kept, not filtered per call: every chunk read and every put asks.
    this.#data ??= this.#members.filter((m) => m.chunks);
    return this.#data;
  }

  member(id: string): StoreMember | undefined {
    return this.#byId.get(id);
  }

  /** The placement now (take it once for work that must use one placement throughout). */
  get view(): PlacementView {
    return this.#view;
  }

  /** Moves to another placement (the cluster record's, after a store was added or drained). */
  setPlacement(epoch: number, stores: readonly string[]): void {
    if (epoch === this.#view.epoch && stores.join() === this.#view.stores.join()) return;
    this.#view = this.#checkedView(epoch, stores);
  }

  /** A store the cluster record gained (a `store add`, here or on another gateway). */
  addMember(member: StoreMember): void {
    if (this.#byId.has(member.id)) return;
    this.#members.push(member);
    this.#data = null;
    this.#byId.set(member.id, member);
  }

  /** A store the cluster record dropped (a `store remove`). It must be in no placement. */
  removeMember(id: string): void {
    if (this.#view.stores.includes(id)) throw new RangeError(`Store "${id}" is still in the placement`);
    this.#members = this.#members.filter((m) => m.id !== id);
    this.#data = null;
    this.#byId.delete(id);
  }

  #checkedView(epoch: number, stores: readonly string[]): PlacementView {
    for (const id of stores)
      if (!this.#byId.get(id)?.chunks)
        throw new RangeError(`Placement store "${id}" is not a data store here`);
    if (stores.length < this.options.replicas) {
      throw new RangeError(
        `${this.options.replicas} replicas need at least as many data stores; have ${stores.length}`,
      );
    }
    return new PlacementView(epoch, stores, this.options.replicas);
  }

  /** The placement of `hash`: its `replicas` store ids, best first. */
  placement(hash: Hash): string[] {
    return this.#view.placement(hash);
  }

  /**
   * Which of `hashes` every placement store already holds, none of them leaving: one batched
   * `has` per store (an import or a restore sends only the rest). `present` maps those to
   * their holders; `lacking` is the rest, in order; `unchecked` names stores whose check
   * failed twice (their chunks count as lacking, and their copies cannot be vouched for).
   */
  async placedCopies(
    hashes: readonly Hash[],
    leaving: ReadonlySet<string>,
  ): Promise<{ present: Map<Hash, Set<string>>; lacking: Hash[]; unchecked: Set<string> }> {
    const view = this.#view;
    const asked = new Map<string, Hash[]>();
    for (const h of hashes)
      for (const id of view.placement(h)) {
        const list = asked.get(id) ?? [];
        asked.set(id, list);
        list.push(h);
      }
    const holders = new Map<Hash, Set<string>>();
    const unchecked = new Set<string>();
    await Promise.all(
      [...asked].map(async ([id, list]) => {
        const member = this.member(id);
        if (!member) return;
        for (let i = 0; i < list.length; i += MAX_BATCH_HASHES) {
          const batch = list.slice(i, i + MAX_BATCH_HASHES);
          // One retry: a single slow or dropped request under load must not make a
          // restore or an import send again everything this store already holds.
          const has = await member.store
            .has(batch)
            .catch(() => member.store.has(batch))
            .catch(() => {
              unchecked.add(id);
              return batch.map(() => false);
            });
          has.forEach((yes, k) => {
            if (!yes) return;
            const set = holders.get(batch[k]!) ?? new Set<string>();
            set.add(id);
            holders.set(batch[k]!, set);
          });
        }
      }),
    );
    const present = new Map<Hash, Set<string>>();
    const lacking: Hash[] = [];
    for (const h of hashes) {
      const have = holders.get(h);
      if (have && view.placement(h).every((id) => have.has(id) && !leaving.has(id))) present.set(h, have);
      else lacking.push(h);
    }
    return { present, lacking, unchecked };
  }

  /**
   * Puts chunks on their placement stores in parallel. Resolves once every chunk is on at
   * least `minReplicas` stores outside `leaving` (spilling to the next stores in rendezvous
   * order when placement stores are down, failing or leaving), after at most a short grace
   * for slower stores; throws NotEnoughReplicasError when that cannot be reached.
   * `pending`, if given, holds the stores that have not yet received all chunks placed on
   * them, kept current while the put runs (safe-to-remove reads it).
   */
  async putChunks(
    chunks: readonly ChunkPut[],
    leaving: ReadonlySet<string> = new Set(),
    pending?: Set<string>,
  ): Promise<PutOutcome> {
    const view = this.#view; // one placement for the whole put (the outcome names its epoch)
    const failed = new Set<string>();
    const unique = [...new Map(chunks.map((c) => [c.hash, c])).values()];
    const copies = new Map<Hash, Set<string>>(unique.map((c) => [c.hash, new Set<string>()]));
    const identities = new Map(this.dataMembers.map((m) => [m.id, this.#identity(m.id)]));
    const placed = new Map<string, number>(); // store id -> chunks placed on it
    const stored = new Map<string, number>(); // store id -> placed chunks it acknowledged
    const orders = new Map<Hash, string[]>();
    for (const c of unique) {
      const order = view.order(c.hash);
      orders.set(c.hash, order);
      for (const id of order.slice(0, this.options.replicas)) placed.set(id, (placed.get(id) ?? 0) + 1);
    }
    const full = new Set(this.dataMembers.filter((m) => this.#health.isFull(m.id)).map((m) => m.id));
    for (const m of this.dataMembers) if (this.#health.isDown(m.id) || full.has(m.id)) failed.add(m.id);
    for (const id of placed.keys()) pending?.add(id);
    const counted = (h: Hash) => {
      let n = 0;
      for (const s of copies.get(h)!) if (!leaving.has(s)) n++;
      return n;
    };
    const enough = () => unique.every((c) => counted(c.hash) >= this.options.minReplicas);

    let wake: () => void = () => {};
    const settledAll: Promise<void>[] = [];
    const writing = new Map<string, number>(); // store id -> puts still running
    const putTo = (id: string, list: ChunkPut[]) => {
      const store = this.#byId.get(id)!.store;
      writing.set(id, (writing.get(id) ?? 0) + 1);
      const p = (async () => {
        try {
          // All batches at once: the store group-commits what is queued (bigger synced writes).
          const batches: ChunkPut[][] = [];
          for (let i = 0; i < list.length; i += PUT_BATCH) batches.push(list.slice(i, i + PUT_BATCH));
          await Promise.all(
            batches.map(async (batch) => {
              await store.putMany(batch);
              if (failed.has(id)) return; // given up on as a straggler: its copies do not count
              for (const c of batch) {
                copies.get(c.hash)!.add(id);
                if (orders.get(c.hash)!.slice(0, this.options.replicas).includes(id))
                  stored.set(id, (stored.get(id) ?? 0) + 1);
              }
              if ((stored.get(id) ?? 0) === (placed.get(id) ?? 0)) pending?.delete(id);
              wake();
            }),
          );
        } catch (err) {
          failed.add(id);
          this.#health.reportFailure(id, err);
        } finally {
          writing.set(id, writing.get(id)! - 1);
          wake();
        }
      })();
      settledAll.push(p);
      return p;
    };

    if (unique.length > 0) {
      // Round 0 writes every placement copy; later rounds spill to further stores.
      for (let round = 0; ; round++) {
        const pending = unique.filter((c) => counted(c.hash) < this.options.minReplicas);
        if (pending.length === 0) break;
        const perStore = new Map<string, ChunkPut[]>();
        for (const c of pending) {
          const order = orders.get(c.hash)!;
          const targets =
            round === 0
              ? this.#firstTargets(order, full)
              : order.slice(this.options.replicas + round - 1, this.options.replicas + round);
          for (const id of targets) {
            if (failed.has(id)) continue;
            const list = perStore.get(id) ?? [];
            perStore.set(id, list);
            list.push(c);
          }
        }
        const running = [...perStore].map(([id, list]) => putTo(id, list));
        // Wait until enough copies exist, or every put of this round has settled.
        let roundDone = false;
        void Promise.allSettled(running).then(() => {
          roundDone = true;
          wake();
        });
        while (!enough() && !roundDone) await new Promise<void>((r) => (wake = r));
        if (enough() || this.options.replicas + round >= view.stores.length) break;
      }
      if (!enough()) {
        const short = unique.filter((c) => counted(c.hash) < this.options.minReplicas).length;
        const outside = leaving.size ? ` outside stores in maintenance (${[...leaving].join(", ")})` : "";
        const roomy = view.stores.filter(
          (id) => !full.has(id) && !this.#health.isDown(id) && !leaving.has(id),
        ).length;
        // Short because stores are full (not down): say so, as ENOSPC / 507 / InsufficientStorage.
        if (full.size > 0 && roomy < this.options.minReplicas)
          throw new StoreFullError(
            [...full].join(", "),
            `${short} chunk(s) reached fewer than ${this.options.minReplicas} stores${outside}: only ${roomy} data store(s) have room`,
          );
        throw new NotEnoughReplicasError(
          `${short} chunk(s) reached fewer than ${this.options.minReplicas} stores${outside} (failed: ${[...failed].join(", ") || "none"})`,
        );
      }
      // Give slower placement stores a short grace, then count them as incomplete for this commit.
      let graceTimer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<"timeout">(
        (r) => (graceTimer = setTimeout(() => r("timeout"), STRAGGLER_GRACE_MS)),
      );
      const outcome = await Promise.race([Promise.allSettled(settledAll).then(() => "done" as const), grace]);
      clearTimeout(graceTimer);
      if (outcome === "timeout") {
        for (const [id, n] of writing) {
          if (n > 0 && !failed.has(id)) {
            failed.add(id);
            this.#health.reportFailure(
              id,
              new Error(`no answer to a put within ${STRAGGLER_GRACE_MS} ms of the other replicas`),
            );
          }
        }
      }
    }
    const complete = new Map<string, string>();
    for (const m of this.dataMembers) {
      const identity = identities.get(m.id);
      if (failed.has(m.id) || !identity) continue;
      if ((stored.get(m.id) ?? 0) === (placed.get(m.id) ?? 0)) complete.set(m.id, identity);
    }
    const settled = Promise.allSettled(settledAll).then(() => {});
    return new PutOutcome(complete, new Set(failed), copies, settled, view.epoch);
  }

  /**
   * Where a chunk's copies go first: its placement stores, each full one replaced by the
   * next store in rendezvous order that is not full. A store that is down gets no stand-in
   * (it is back soon, and heal catches it up; the put spills only to reach minReplicas);
   * a full one may stay full for long, so the chunk keeps its `replicas` copies elsewhere.
   */
  #firstTargets(order: readonly string[], full: ReadonlySet<string>): string[] {
    const placement = order.slice(0, this.options.replicas);
    if (full.size === 0) return placement;
    const targets = placement.filter((id) => !full.has(id));
    let missing = placement.length - targets.length;
    for (let i = this.options.replicas; missing > 0 && i < order.length; i++) {
      if (full.has(order[i]!)) continue;
      targets.push(order[i]!);
      missing--;
    }
    return targets;
  }

  /**
   * The data stores a read of `hash` asks, in order: its placement stores, then the other
   * data stores; those that are up and not behind first, then those behind, then those
   * down; never `exclude`.
   */
  readOrder(hash: Hash, exclude?: string): string[] {
    const placement = this.placement(hash);
    const all = [
      ...placement,
      ...this.dataMembers.map((m) => m.id).filter((id) => !placement.includes(id)),
    ].filter((id) => id !== exclude);
    const rank = (id: string) => (this.#health.isDown(id) ? 2 : this.#health.isBehind?.(id) ? 1 : 0);
    return all.sort((x, y) => rank(x) - rank(y)); // a stable sort: placement order within a rank
  }

  /**
   * Reads many chunks: batched reads (`getMany`, up to 64 chunks each) per store, each hash
   * asked of the first store {@link getChunk} would ask. A hash that store does not answer with its chunk (a
   * missing copy, reported as {@link getChunk} reports it; a failed or corrupt batch; a batch
   * slower than the hedge) is read by {@link getChunk} past it. Resolves in `hashes`' order.
   */
  async getChunks(hashes: readonly Hash[]): Promise<Uint8Array[]> {
    const out: Uint8Array[] = new Array(hashes.length);
    const groups = new Map<string, number[]>();
    const alone: number[] = [];
    for (let i = 0; i < hashes.length; i++) {
      const first = this.readOrder(hashes[i]!)[0];
      if (first === undefined || this.#health.isDown(first)) alone.push(i);
      else {
        const g = groups.get(first);
        if (g) g.push(i);
        else groups.set(first, [i]);
      }
    }
    const jobs = alone.map(async (i) => {
      out[i] = await this.getChunk(hashes[i]!);
    });
    // Batches small enough that a healthy store answers well within the hedge delay.
    for (const [id, group] of groups)
      for (let k = 0; k < group.length; k += READ_BATCH_CHUNKS)
        jobs.push(this.#getGroup(id, group.slice(k, k + READ_BATCH_CHUNKS), hashes, out));
    await Promise.all(jobs);
    return out;
  }

  /** The batch of {@link getChunks} asked of store `id`; what it does not bring goes past it. */
  async #getGroup(id: string, group: number[], hashes: readonly Hash[], out: Uint8Array[]): Promise<void> {
    const store = this.#byId.get(id)!.store;
    const wanted = group.map((i) => hashes[i]!);
    let hedge: ReturnType<typeof setTimeout> | undefined;
    const slow = new Promise<"slow">((r) => {
      hedge = setTimeout(() => r("slow"), HEDGE_AFTER_MS);
    });
    const batch = store.getMany(wanted);
    let got: (Uint8Array | undefined)[] | "slow" | Error;
    try {
      got = await Promise.race([batch, slow]);
    } catch (err) {
      got = err as Error;
    } finally {
      clearTimeout(hedge);
    }
    const placement = (h: Hash) => this.placement(h).includes(id);
    if (got === "slow") {
      // As getChunk's hedge: ask past it, but take the slow store's answer if it comes first;
      // and, as getChunk does, report what the slow store finally answers.
      batch.then(
        (late) => {
          for (let k = 0; k < group.length; k++) {
            const h = hashes[group[k]!]!;
            if (!late[k] && placement(h)) this.badCopy.emit(id, h, "missing");
          }
        },
        (err) => {
          if (err instanceof ChunkCorruptError) this.badCopy.emit(id, err.hash, "corrupt");
          else this.#health.reportFailure(id, err);
        },
      );
      await Promise.all(
        group.map(async (i, k) => {
          const late = batch.then((r) => r[k] ?? Promise.reject(new Error("missing")));
          const past = this.getChunk(hashes[i]!, id);
          out[i] = await Promise.any([late, past]).catch(() => past); // both failed: past's error
        }),
      );
      return;
    }
    if (got instanceof Error) {
      // A corrupt record fails the whole batch: getChunk reads each again and reports it.
      if (!(got instanceof ChunkCorruptError)) this.#health.reportFailure(id, got);
      await Promise.all(
        group.map(async (i) => {
          out[i] = await this.getChunk(hashes[i]!, got instanceof ChunkCorruptError ? undefined : id);
        }),
      );
      return;
    }
    await Promise.all(
      group.map(async (i, k) => {
        const bytes = got[k];
        if (bytes) out[i] = bytes;
        else {
          if (placement(hashes[i]!)) this.badCopy.emit(id, hashes[i]!, "missing");
          out[i] = await this.getChunk(hashes[i]!, id);
        }
      }),
    );
  }

  /**
   * Reads a chunk from its placement stores, then any other data store, skipping stores
   * that are down and `exclude`. When a store is slow, the next one is asked too and the
   * first good answer wins. A missing or corrupt copy is reported on `badCopy` (unless
   * `reportBadCopies: false`: a repair's own source read).
   */
  async getChunk(
    hash: Hash,
    exclude?: string,
    options: { reportBadCopies?: boolean } = {},
  ): Promise<Uint8Array> {
    const report = options.reportBadCopies !== false;
    const placement = this.placement(hash);
    const order = this.readOrder(hash, exclude);
    const errors: string[] = [];
    return new Promise<Uint8Array>((resolve, reject) => {
      let next = 0;
      let running = 0;
      let done = false;
      let hedge: ReturnType<typeof setTimeout> | undefined;
      const launch = () => {
        clearTimeout(hedge);
        if (done || next >= order.length) return;
        const id = order[next++]!;
        running++;
        hedge = setTimeout(launch, HEDGE_AFTER_MS);
        this.#byId
          .get(id)!
          .store.get(hash)
          .then(
            (bytes) => {
              running--;
              if (done) return;
              done = true;
              clearTimeout(hedge);
              resolve(bytes);
            },
            (err) => {
              running--;
              if (err instanceof ChunkNotFoundError) {
                if (report && placement.includes(id)) this.badCopy.emit(id, hash, "missing");
              } else if (err instanceof ChunkCorruptError) {
                if (report) this.badCopy.emit(id, hash, "corrupt");
              } else {
                this.#health.reportFailure(id, err);
              }
              errors.push(`${id}: ${(err as Error).message}`);
              if (done) return;
              if (next < order.length) launch();
              else if (running === 0) {
                done = true;
                clearTimeout(hedge);
                reject(new ChunkNotFoundError(`every replica (${errors.join("; ")})`, hash));
              }
            },
          );
      };
      if (order.length === 0) reject(new ChunkNotFoundError("no data store", hash));
      else launch();
    });
  }
}
