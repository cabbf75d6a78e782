/**
 * The data stores of a gateway as one replicated chunk store: placement, replicated
 * puts that need at least `minReplicas` copies, and verified reads that fall back to
 * another replica on a missing, corrupt or unreachable copy.
 */
import type { ChunkPut, ChunkStore, Hash } from "../chunkstore/chunk-store.ts";
import { ChunkCorruptError, ChunkNotFoundError } from "../chunkstore/errors.ts";
import { NotEnoughReplicasError } from "./errors.ts";
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

/** Chunks per putMany call to one store: bounded so one request stays well under the batch limits. */
const PUT_BATCH = 64;

/** Listener for copies found missing or corrupt on a read (read-repair hooks here). */
export type BadCopyListener = (storeId: string, hash: Hash, reason: "missing" | "corrupt") => void;

/** The outcome of a replicated put: which stores failed (their `synced` must not advance). */
export interface PutOutcome {
  readonly failedStores: ReadonlySet<string>;
}

/** Replicated chunk storage over the data stores. */
export class StoreSet {
  readonly members: readonly StoreMember[];
  readonly dataMembers: readonly StoreMember[];
  readonly #byId: Map<string, StoreMember>;
  readonly #rendezvous: Rendezvous;
  onBadCopy: BadCopyListener = () => {};

  readonly options: ReplicationOptions;

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

  /**
   * Puts chunks on their placement stores in parallel. Resolves once every chunk is on
   * at least `minReplicas` stores, spilling to the next stores in rendezvous order when a
   * placement store fails; throws NotEnoughReplicasError otherwise.
   */
  async putChunks(chunks: readonly ChunkPut[]): Promise<PutOutcome> {
    const failedStores = new Set<string>();
    const copies = new Map<Hash, number>();
    const orders = new Map<Hash, string[]>();
    const unique = [...new Map(chunks.map((c) => [c.hash, c])).values()];
    for (const c of unique) orders.set(c.hash, this.#rendezvous.order(c.hash));

    // Round 0 writes every placement copy; later rounds spill to further stores.
    let pending = unique;
    for (let round = 0; pending.length > 0; round++) {
      const perStore = new Map<string, ChunkPut[]>();
      for (const c of pending) {
        const order = orders.get(c.hash)!;
        const targets =
          round === 0
            ? order.slice(0, this.options.replicas)
            : order.slice(this.options.replicas + round - 1, this.options.replicas + round);
        for (const id of targets) {
          if (failedStores.has(id)) continue;
          let list = perStore.get(id);
          if (!list) perStore.set(id, (list = []));
          list.push(c);
        }
      }
      if (perStore.size === 0) break;
      await Promise.all(
        [...perStore].map(async ([id, list]) => {
          const store = this.#byId.get(id)!.store;
          try {
            for (let i = 0; i < list.length; i += PUT_BATCH) {
              const batch = list.slice(i, i + PUT_BATCH);
              await store.putMany(batch);
              for (const c of batch) copies.set(c.hash, (copies.get(c.hash) ?? 0) + 1);
            }
          } catch {
            failedStores.add(id);
          }
        }),
      );
      pending = unique.filter((c) => (copies.get(c.hash) ?? 0) < this.options.minReplicas);
      if (this.options.replicas + round >= this.dataMembers.length) break;
    }
    if (pending.length > 0) {
      throw new NotEnoughReplicasError(
        `${pending.length} chunk(s) reached fewer than ${this.options.minReplicas} stores (failed: ${[...failedStores].join(", ") || "none"})`,
      );
    }
    return { failedStores };
  }

  /**
   * Reads a chunk from its placement stores, then any other data store. Each backend
   * verifies what it returns; a missing or corrupt copy is reported to `onBadCopy`.
   */
  async getChunk(hash: Hash): Promise<Uint8Array> {
    const placement = this.placement(hash);
    const order = [
      ...placement,
      ...this.dataMembers.map((m) => m.id).filter((id) => !placement.includes(id)),
    ];
    const errors: string[] = [];
    for (const id of order) {
      try {
        return await this.#byId.get(id)!.store.get(hash);
      } catch (err) {
        const inPlacement = placement.includes(id);
        if (err instanceof ChunkNotFoundError) {
          if (inPlacement) this.onBadCopy(id, hash, "missing");
        } else if (err instanceof ChunkCorruptError) {
          this.onBadCopy(id, hash, "corrupt");
        }
        errors.push(`${id}: ${(err as Error).message}`);
      }
    }
    throw new ChunkNotFoundError(`every replica (${errors.join("; ")})`, hash);
  }
}
