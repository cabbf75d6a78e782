/**
 * The data stores of a gateway as one replicated chunk store: placement, replicated
 * puts that need at least `minReplicas` copies, and verified reads that fall back to
 * another replica on a missing, corrupt, unreachable or slow copy.
 *
 * A hung store (a cable pull, a SIGSTOP) must not freeze VM I/O: reads are hedged (the
 * next replica is asked when the first is slow), and a put that has `minReplicas`
 * copies waits only a short grace for the rest before it counts the slow store as
 * failed for this commit (its `synced` generation then stays behind, and heal catches
 * it up). Stores known to be down are skipped at once.
 */
import type { ChunkPut, ChunkStore, Hash } from "../../chunkstore/chunk-store.ts";
import { ChunkCorruptError, ChunkNotFoundError } from "../../chunkstore/errors.ts";
import { NotEnoughReplicasError } from "../errors.ts";
import { Rendezvous } from "./placement.ts";

/** One configured store. */
export interface StoreMember {
  readonly id: string;
  readonly url: string;
  readonly store: ChunkStore;
}

/** Replication settings. */
export interface ReplicationOptions {
  /** Copies of each chunk (placement width). */
  readonly replicas: number;
  /** Copies that must be durable before a write counts as done. */
  readonly minReplicas: number;
}

/** What the store set tells the health tracker, and asks it. */
export interface HealthView {
  isDown(id: string): boolean;
  reportFailure(id: string, reason: string): void;
}

/** Chunks per putMany call to one store: bounded so one request stays well under the batch limits. */
const PUT_BATCH = 64;
/** Once every chunk has minReplicas copies, how long to wait for slower placement stores. */
export const STRAGGLER_GRACE_MS = 500;
/** Ask the next replica when a read has not answered in this long (hedged reads). */
export const HEDGE_AFTER_MS = 150;

/** Listener for copies found missing or corrupt on a read (read-repair hooks here). */
export type BadCopyListener = (storeId: string, hash: Hash, reason: "missing" | "corrupt") => void;

/** The outcome of a replicated put: which stores failed or were skipped (their `synced` must not advance). */
export interface PutOutcome {
  readonly failedStores: ReadonlySet<string>;
}

const NO_HEALTH: HealthView = { isDown: () => false, reportFailure: () => {} };

/** Replicated chunk storage over the data stores. */
export class StoreSet {
  readonly members: readonly StoreMember[];
  readonly dataMembers: readonly StoreMember[];
  readonly options: ReplicationOptions;
  readonly #byId: Map<string, StoreMember>;
  readonly #rendezvous: Rendezvous;
  health: HealthView = NO_HEALTH;
  onBadCopy: BadCopyListener = () => {};

  constructor(members: readonly StoreMember[], options: ReplicationOptions) {
    this.options = options;
    this.members = members;
    this.dataMembers = members.filter((m) => m.store.capabilities.chunks);
    if (options.minReplicas < 1 || options.minReplicas > options.replicas) {
      throw new RangeError(`minReplicas must be between 1 and replicas (${options.replicas})`);
    }
    if (this.dataMembers.length < options.replicas) {
      throw new RangeError(
        `${options.replicas} replicas need at least as many data stores; have ${this.dataMembers.length}`,
      );
    }
    this.#byId = new Map(members.map((m) => [m.id, m]));
    this.#rendezvous = new Rendezvous(this.dataMembers.map((m) => m.id));
  }

  member(id: string): StoreMember | undefined {
    return this.#byId.get(id);
  }

  /** The placement of `hash`: its `replicas` store ids, best first. */
  placement(hash: Hash): string[] {
    return this.#rendezvous.order(hash).slice(0, this.options.replicas);
  }

  #fail(id: string, reason: string, failed: Set<string>): void {
    failed.add(id);
    if (reason) this.health.reportFailure(id, reason);
  }

  /**
   * Puts chunks on their placement stores in parallel. Resolves once every chunk is on
   * at least `minReplicas` stores (spilling to the next stores in rendezvous order when
   * placement stores are down or fail), after at most a short grace for slower stores;
   * throws NotEnoughReplicasError when `minReplicas` cannot be reached.
   */
  async putChunks(chunks: readonly ChunkPut[]): Promise<PutOutcome> {
    const failed = new Set<string>();
    const copies = new Map<Hash, number>();
    const orders = new Map<Hash, string[]>();
    const unique = [...new Map(chunks.map((c) => [c.hash, c])).values()];
    if (unique.length === 0) return { failedStores: failed };
    for (const c of unique) orders.set(c.hash, this.#rendezvous.order(c.hash));
    for (const m of this.dataMembers) if (this.health.isDown(m.id)) this.#fail(m.id, "", failed);

    const enough = () => unique.every((c) => (copies.get(c.hash) ?? 0) >= this.options.minReplicas);
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
              for (const c of batch) copies.set(c.hash, (copies.get(c.hash) ?? 0) + 1);
              wake();
            }),
          );
        } catch (err) {
          this.#fail(id, (err as Error).message, failed);
        } finally {
          writing.set(id, writing.get(id)! - 1);
          wake();
        }
      })();
      settledAll.push(p);
      return p;
    };

    // Round 0 writes every placement copy; later rounds spill to further stores.
    for (let round = 0; ; round++) {
      const pending = unique.filter((c) => (copies.get(c.hash) ?? 0) < this.options.minReplicas);
      if (pending.length === 0) break;
      const perStore = new Map<string, ChunkPut[]>();
      for (const c of pending) {
        const order = orders.get(c.hash)!;
        const targets =
          round === 0
            ? order.slice(0, this.options.replicas)
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
      if (enough() || this.options.replicas + round >= this.dataMembers.length) break;
    }
    if (!enough()) {
      const short = unique.filter((c) => (copies.get(c.hash) ?? 0) < this.options.minReplicas).length;
      throw new NotEnoughReplicasError(
        `${short} chunk(s) reached fewer than ${this.options.minReplicas} stores (failed: ${[...failed].join(", ") || "none"})`,
      );
    }
    // Give slower placement stores a short grace, then count them as failed for this commit.
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<"timeout">(
      (r) => (graceTimer = setTimeout(() => r("timeout"), STRAGGLER_GRACE_MS)),
    );
    const outcome = await Promise.race([Promise.allSettled(settledAll).then(() => "done" as const), grace]);
    clearTimeout(graceTimer);
    if (outcome === "timeout") {
      for (const [id, n] of writing) {
        if (n > 0 && !failed.has(id))
          this.#fail(id, `no answer to a put within ${STRAGGLER_GRACE_MS} ms of the other replicas`, failed);
      }
    }
    return { failedStores: new Set(failed) };
  }

  /**
   * Reads a chunk from its placement stores, then any other data store, skipping stores
   * that are down and `exclude`. When a store is slow, the next one is asked too and the
   * first good answer wins. A missing or corrupt copy is reported to `onBadCopy`.
   */
  async getChunk(hash: Hash, exclude?: string): Promise<Uint8Array> {
    const placement = this.placement(hash);
    const all = [
      ...placement,
      ...this.dataMembers.map((m) => m.id).filter((id) => !placement.includes(id)),
    ].filter((id) => id !== exclude);
    const order = [
      ...all.filter((id) => !this.health.isDown(id)),
      ...all.filter((id) => this.health.isDown(id)),
    ];
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
                if (placement.includes(id)) this.onBadCopy(id, hash, "missing");
              } else if (err instanceof ChunkCorruptError) {
                this.onBadCopy(id, hash, "corrupt");
              } else {
                this.health.reportFailure(id, (err as Error).message);
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
