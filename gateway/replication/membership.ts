/**
 * The gateway follows the cluster record's store set while it runs: a store the record
 * gains (`store add`, on this gateway or another) is opened at the URL the record names
 * and joins every layer; the placement moves to the record's (`placementEpoch`, the data
 * stores not draining); a store the record dropped (`store remove`) leaves every layer (the
 * register too, if it held heads) and is closed. Changes apply one at a time, in record order: joins first, then the
 * placement, then departures, so a placement never names a store this gateway lacks.
 *
 * A store this gateway cannot open (no URL in the record, a bad one) keeps the old
 * placement here and says so in the log: commits then record their replica state under
 * the old epoch, which counts as not current (never as current under the new one).
 */
import type { ChunkStore } from "../../chunkstore/chunk-store.ts";
import { Listeners } from "../_listeners.ts";
import type { Cluster } from "./cluster.ts";
import { type ClusterRecord, placementEpochOf, placementStores } from "./cluster-record.ts";
import type { StoreHealth } from "./store-health.ts";
import type { StoreMember } from "./store-member.ts";
import type { StoreSet } from "./store-set.ts";

/** Opens a store at a URL (with this gateway's tokens and CA). */
export type StoreOpener = (id: string, url: string) => Promise<ChunkStore>;

/** What membership needs. */
export interface MembershipDeps {
  readonly cluster: Cluster;
  readonly stores: StoreSet;
  readonly health: StoreHealth;
  /** The register over the head holders: a head holder the record dropped leaves it here too. */
  readonly register?: { forgetMember(id: string): void };
  /** Absent: this gateway cannot open stores by itself (tests over in-memory stores). */
  readonly open?: StoreOpener;
  readonly log: (line: string) => void;
}

/** Applies record changes to the live store set; see the module doc. */
export class Membership {
  readonly #d: MembershipDeps;
  #chain: Promise<void> = Promise.resolve();
  /** Stores opened here (the configured ones are their opener's to close). */
  readonly #opened = new Map<string, ChunkStore>();
  #closed = false;
  /** A store joined every layer (listeners add it to heal, scrub, replacements). */
  readonly joined = new Listeners<[member: StoreMember]>();
  /** A store left every layer. */
  readonly left = new Listeners<[id: string]>();

  constructor(deps: MembershipDeps) {
    this.#d = deps;
    deps.cluster.changed.add((record) => {
      void this.apply(record);
    });
  }

  /** Applies `record` (queued after any change still being applied); resolves once done. */
  apply(record: ClusterRecord = this.#d.cluster.record): Promise<void> {
    this.#chain = this.#chain
      .then(() => this.#apply(record))
      .catch((err) => {
        this.#d.log(`store set: could not follow the cluster record: ${(err as Error).message}`);
      });
    return this.#chain;
  }

  /** Closes the stores opened here (at gateway shutdown). */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#chain;
    for (const store of this.#opened.values()) await store.close().catch(() => {});
    this.#opened.clear();
  }

  async #apply(record: ClusterRecord): Promise<void> {
    if (this.#closed) return;
    const { stores, health, cluster } = this.#d;
    if (record.generation < cluster.record.generation) record = cluster.record; // a newer one came meanwhile
    for (const [id, s] of Object.entries(record.stores)) {
      if (stores.member(id)) continue;
      if (!s.url || !this.#d.open) {
        this.#d.log(
          `store ${id} was added to the cluster${s.url ? ` at ${s.url}` : ""}, but this gateway cannot open it${s.url ? "" : " (the record names no URL)"}: it keeps the old placement; restart it with --store ${id}=URL`,
        );
        return;
      }
      const store = await this.#d.open(id, s.url);
      this.#opened.set(id, store);
      const member: StoreMember = { id, url: s.url, store, chunks: s.chunks, refs: false };
      store.expectIdentity(s.identity);
      stores.addMember(member);
      health.add(member);
      cluster.addMember(member);
      this.joined.emit(member);
      this.#d.log(`store ${id} joined (${s.url}, identity ${s.identity})`);
    }
    const epoch = placementEpochOf(record);
    const placed = placementStores(record);
    if (epoch !== stores.view.epoch) {
      stores.setPlacement(epoch, placed);
      this.#d.log(`placement ${epoch}: chunks go to ${placed.join(", ")}`);
    }
    for (const m of [...stores.members]) {
      if (record.stores[m.id]) continue;
      stores.removeMember(m.id);
      health.remove(m.id);
      cluster.removeMember(m.id);
      if (m.refs) this.#d.register?.forgetMember(m.id); // fenced already by the gateway that removed it
      this.left.emit(m.id);
      const opened = this.#opened.get(m.id);
      this.#opened.delete(m.id);
      await opened?.close().catch(() => {});
      this.#d.log(`store ${m.id} left the cluster`);
    }
  }
}
