/**
 * Scrub: re-reads every chunk of every reachable data store at a bounded rate (each read
 * is verified by the store) and hands corrupt copies to the repair queue, which records
 * them as damage first. One gateway scrubs a store at a time (the lease `scrub.<store>`).
 * A full pass that found nothing clears any damage counted beyond the listed chunks.
 */

import type { Hash } from "../../chunkstore/chunk-store.ts";
import { ChunkCorruptError } from "../../chunkstore/errors.ts";
import { Lease } from "../register/lease.ts";
import type { Register } from "../register/register.ts";
import type { Cluster } from "../replication/cluster.ts";
import type { StoreHealth } from "../replication/store-health.ts";
import type { StoreSet } from "../replication/store-set.ts";
import { RateLimiter } from "./rate-limiter.ts";
import type { RepairQueue } from "./read-repair.ts";

/** Chunks scrubbed on one store before moving to the next. */
const SCRUB_SLICE = 256;
/** How long a scrub lease lasts. */
const SCRUB_LEASE_MS = 15_000;

/** Scrub counters of one store, as this gateway saw them. */
export interface ScrubStatus {
  readonly store: string;
  readonly checkedChunks: number;
  readonly corruptChunks: number;
  readonly passes: number;
}

interface StoreScrub {
  lease: Lease;
  cursor: Hash | undefined;
  checkedChunks: number;
  corruptChunks: number;
  corruptThisPass: number;
  passes: number;
}

/** What the scrubber needs. */
export interface ScrubDeps {
  readonly stores: StoreSet;
  readonly health: StoreHealth;
  readonly cluster: Cluster;
  readonly register: Register;
  readonly repairs: RepairQueue;
  readonly gatewayId: string;
  readonly rate: () => number;
}

/** Scrubs every data store, forever, in the background. */
export class Scrubber {
  readonly #d: ScrubDeps;
  readonly #stores = new Map<string, StoreScrub>();
  #stopped = false;

  constructor(deps: ScrubDeps) {
    this.#d = deps;
    for (const m of deps.stores.dataMembers) this.addStore(m.id);
  }

  /** A data store joined the cluster: scrubbed like the others from now on. */
  addStore(id: string): void {
    if (this.#stores.has(id)) return;
    this.#stores.set(id, {
      lease: new Lease(this.#d.register, `scrub.${id}`, this.#d.gatewayId, SCRUB_LEASE_MS),
      cursor: undefined,
      checkedChunks: 0,
      corruptChunks: 0,
      corruptThisPass: 0,
      passes: 0,
    });
  }

  /** A store left the cluster. */
  removeStore(id: string): void {
    const st = this.#stores.get(id);
    if (!st) return;
    this.#stores.delete(id);
    if (st.lease.valid) st.lease.release().catch(() => {});
  }

  start(): void {
    this.#loop().catch((err) => console.error(`blockmend gateway: scrub stopped: ${(err as Error).message}`));
  }

  stop(): void {
    this.#stopped = true;
  }

  status(): ScrubStatus[] {
    return [...this.#stores].map(([store, s]) => ({
      store,
      checkedChunks: s.checkedChunks,
      corruptChunks: s.corruptChunks,
      passes: s.passes,
    }));
  }

  async #loop(): Promise<void> {
    const limiter = new RateLimiter(this.#d.rate());
    while (!this.#stopped) {
      let did = false;
      for (const [id, st] of this.#stores) {
        if (this.#stopped || this.#d.health.isDown(id)) continue;
        if (!st.lease.valid && !(await st.lease.acquire().catch(() => false))) continue;
        limiter.rate = this.#d.rate();
        const store = this.#d.stores.member(id)?.store;
        if (!store) continue; // removed meanwhile
        let n = 0;
        try {
          for await (const hash of store.list(st.cursor ? { after: st.cursor } : {})) {
            if (this.#stopped || this.#d.health.isDown(id) || !st.lease.valid) break;
            try {
              const bytes = await store.get(hash);
              await limiter.take(bytes.byteLength);
            } catch (err) {
              if (err instanceof ChunkCorruptError) {
                st.corruptChunks++;
                st.corruptThisPass++;
                this.#d.repairs.report(id, hash, "corrupt");
              }
            }
            st.checkedChunks++;
            st.cursor = hash;
            did = true;
            if (++n >= SCRUB_SLICE) break; // give the other stores a turn
          }
          if (n < SCRUB_SLICE && st.lease.valid) {
            st.cursor = undefined;
            st.passes++;
            const clean = st.corruptThisPass === 0;
            st.corruptThisPass = 0;
            if (clean && (this.#d.cluster.record.stores[id]?.damaged?.overflow ?? 0) > 0)
              await this.#d.cluster.clearDamage(id, [], true).catch(() => {});
          }
          // Renew before the lease runs short.
          await st.lease.acquire().catch(() => {});
        } catch {
          // The store failed mid-listing: health marks it down; resume later.
        }
      }
      if (!did) await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
