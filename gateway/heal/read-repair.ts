/**
 * Repairs of single bad copies, found by reads (a copy missing or corrupt on a store that
 * should have it, served from another replica meanwhile) and by scrub. A store with a known
 * bad copy is not in sync until it is repaired: the damage is recorded in the cluster
 * record (so every gateway's status and safe-to-remove count it) before the repair, and
 * cleared after it. Record changes are batched; the queue is bounded.
 */
import pLimit from "p-limit";
import type { Hash } from "../../chunkstore/chunk-store.ts";
import type { Cluster } from "../replication/cluster.ts";
import type { CopyEngine } from "./copy-engine.ts";

/** Repairs queued at most; more are dropped (a heal or the next read finds them). */
const MAX_PENDING_REPAIRS = 10_000;
/** Record changes are gathered this long, then written in one register update. */
const LEDGER_FLUSH_MS = 300;

/**
 * Damage found and repaired, gathered and written to the cluster record in batches.
 * `found` resolves once the damage is recorded (a repair must not clear it first).
 */
export class DamageLedger {
  readonly #cluster: Cluster;
  #found = new Map<string, Set<Hash>>();
  #repaired = new Map<string, Set<Hash>>();
  #flush: Promise<void> | null = null;

  constructor(cluster: Cluster) {
    this.#cluster = cluster;
  }

  found(store: string, hash: Hash): Promise<void> {
    add(this.#found, store, hash);
    return this.#schedule();
  }

  repaired(store: string, hash: Hash): Promise<void> {
    add(this.#repaired, store, hash);
    return this.#schedule();
  }

  #schedule(): Promise<void> {
    this.#flush ??= new Promise<void>((r) => setTimeout(r, LEDGER_FLUSH_MS)).then(async () => {
      this.#flush = null;
      const found = this.#found;
      const repaired = this.#repaired;
      this.#found = new Map();
      this.#repaired = new Map();
      for (const [store, hashes] of found) await this.#cluster.reportDamage(store, [...hashes]);
      for (const [store, hashes] of repaired) await this.#cluster.clearDamage(store, [...hashes]);
    });
    return this.#flush;
  }
}

function add(map: Map<string, Set<Hash>>, store: string, hash: Hash): void {
  let s = map.get(store);
  if (!s) {
    s = new Set();
    map.set(store, s);
  }
  s.add(hash);
}

/** The bounded queue of single-chunk repairs. */
export class RepairQueue {
  readonly #engine: CopyEngine;
  readonly #ledger: DamageLedger;
  readonly #isCurrentStore: (store: string) => boolean;
  readonly #isDown: (store: string) => boolean;
  readonly #running = new Set<string>();
  readonly #limit = pLimit(4);
  /** Chunks put back since start. */
  repairedChunks = 0;
  /** Bad copies found since start (reads and scrub). */
  foundChunks = 0;

  /**
   * @param isCurrentStore whether a store counts as holding its images in full now: a chunk
   *   missing there is damage; missing on a store known to be behind, it is only not healed yet.
   */
  constructor(
    engine: CopyEngine,
    ledger: DamageLedger,
    isCurrentStore: (store: string) => boolean,
    isDown: (store: string) => boolean,
  ) {
    this.#engine = engine;
    this.#ledger = ledger;
    this.#isCurrentStore = isCurrentStore;
    this.#isDown = isDown;
  }

  /** A copy of `hash` on `store` is missing or corrupt: record it, and put a good one there. */
  report(store: string, hash: Hash, reason: "missing" | "corrupt"): void {
    const key = `${store}/${hash}`;
    if (this.#running.has(key) || this.#running.size >= MAX_PENDING_REPAIRS || this.#isDown(store)) return;
    const damage = reason === "corrupt" || this.#isCurrentStore(store);
    this.#running.add(key);
    this.foundChunks++;
    void this.#limit(async () => {
      try {
        if (damage) await this.#ledger.found(store, hash);
        if (await this.#engine.repair(store, hash, reason === "corrupt")) {
          this.repairedChunks++;
          if (damage) await this.#ledger.repaired(store, hash);
        }
      } catch {
        // The store failed or the record could not be written: the damage stays recorded
        // (or the next read or scrub finds it again), and a heal repairs it.
      } finally {
        this.#running.delete(key);
      }
    });
  }
}
