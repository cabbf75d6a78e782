/**
 * Background heal: whenever a reachable store does not hold some image in full (it was
 * away, it was replaced, chunks of it were found damaged), copy to it only what it lacks,
 * image by image, while VM I/O goes on; then record it as holding the image in full.
 *
 * One gateway heals a store at a time (the lease `heal.<store>` in the register); the
 * others show its progress, which it publishes in the lease. The state comes from the
 * heads, so a heal resumes after any restart, on any gateway.
 *
 * For store S and image I (`heal-planner.ts` for what is missing):
 * 1. start a tail in I's head: from then on, every commit records whether it reached S in full;
 * 2. read the head, copy what S lacks of that version (its root and every snapshot it may lack);
 * 3. mark S in sync: valid only if the tail is unbroken since that version, so commits that
 *    landed during the copy need no second pass, and a commit that missed S sends the heal
 *    round again. The VM is never paused and no commit waits on the heal.
 */

import { type Head, holdsCurrent, liveHead } from "../image/head.ts";
import { Lease, readLease } from "../register/lease.ts";
import { placementEpochOf, placementStores } from "../replication/cluster-record.ts";
import { RecentRate } from "./recent-rate.ts";
import { type HealDeps, type HealProgress, healStore } from "./store-heal.ts";

export type { HealDeps, HealProgress, ImageHealProgress } from "./store-heal.ts";

/** How long a heal lease lasts; it is renewed three times as often. */
const HEAL_LEASE_MS = 10_000;

interface StoreHeal {
  readonly lease: Lease;
  run: Promise<void> | null;
  progress: HealProgress | null;
  /** Monotonic ms when the current run started copying (for the rate). */
  startedMs: number;
  /** The current run's copy rate over the last seconds (its ETA's). */
  recent: RecentRate | null;
}

/** Runs heals of every data store this gateway holds the lease of. */
export class HealScheduler {
  readonly #d: HealDeps;
  readonly #stores = new Map<string, StoreHeal>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #ticking: Promise<void> | null = null;
  /** Bytes copied by heals on this gateway since it started (for /metrics). */
  healedBytesTotal = 0;
  /** Data stores that did not hold some image in full at the last round (read-repair asks). */
  behind: ReadonlySet<string> = new Set();

  constructor(deps: HealDeps) {
    this.#d = deps;
    for (const m of deps.stores.dataMembers) this.addStore(m.id);
    deps.health.returned.add(() => {
      this.tick().catch((err) => deps.log(`heal: ${(err as Error).message}`));
    });
    deps.health.fullChanged.add((_id, full) => {
      if (!full) this.tick().catch((err) => deps.log(`heal: ${(err as Error).message}`));
    });
  }

  /** A data store joined the cluster: it is healed like the others from now on. */
  addStore(id: string): void {
    if (this.#stores.has(id)) return;
    this.#stores.set(id, {
      lease: new Lease(this.#d.register, `heal.${id}`, this.#d.gatewayId, HEAL_LEASE_MS),
      run: null,
      progress: null,
      startedMs: 0,
      recent: null,
    });
  }

  /** A store left the cluster (it was drained first: no heal runs on it). */
  removeStore(id: string): void {
    const st = this.#stores.get(id);
    if (!st) return;
    this.#stores.delete(id);
    if (st.lease.valid) st.lease.release().catch(() => {});
  }

  /** Starts the loop: about once a second, find stores that lack something and heal them. */
  start(): void {
    this.#d.throttle.start(
      () => this.active,
      () => this.steady,
    );
    const loop = async () => {
      await this.tick().catch((err) => this.#d.log(`heal: ${(err as Error).message}`));
      if (!this.#stopped) {
        this.#timer = setTimeout(loop, 1000);
        (this.#timer as { unref?: () => void }).unref?.();
      }
    };
    void loop();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#d.throttle.stop();
  }

  /** Whether a heal runs on this gateway now. */
  get active(): boolean {
    return [...this.#stores.values()].some((s) => s.run !== null);
  }

  /** Whether the cluster is as it should be: no heal, no data store behind or down (the throttle's baseline). */
  get steady(): boolean {
    return (
      !this.active &&
      this.behind.size === 0 &&
      [...this.#stores.keys()].every((id) => !this.#d.health.isDown(id))
    );
  }

  /** Images (by store) that heals running here are working on, for safe-to-remove's "healing from". */
  healing(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [id, s] of this.#stores)
      if (s.run && s.progress)
        out.set(
          id,
          s.progress.images.filter((i) => !i.done).map((i) => i.image),
        );
    return out;
  }

  /** One round: find what each reachable store lacks; start heals where this gateway gets the lease. */
  tick(): Promise<void> {
    this.#ticking ??= this.#tick().finally(() => {
      this.#ticking = null;
    });
    return this.#ticking;
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    const heads = [...(await this.#d.heads.scan()).values()]
      .map(liveHead)
      .filter((h): h is Head => h !== null);
    const record = this.#d.cluster.record;
    const placement = placementEpochOf(record);
    const now = (id: string) => ({ identity: record.stores[id]?.identity, placement });
    this.behind = new Set(
      [...this.#stores.keys()].filter((id) => heads.some((h) => !holdsCurrent(h, id, now(id)))),
    );
    const placed = new Set(placementStores(record));
    for (const [id, st] of this.#stores) {
      // A full store takes no copies: its heal waits until it has room (it stays behind meanwhile).
      if (this.#stopped || this.#d.health.isDown(id) || this.#d.health.isFull(id) || st.run) continue;
      // Draining or removed: nothing is placed on it, so there is nothing to copy to it.
      if (!placed.has(id)) {
        if (st.lease.valid) await st.lease.release().catch(() => {});
        continue;
      }
      const damaged = record.stores[id]?.damaged;
      const behind = heads.some((h) => !holdsCurrent(h, id, now(id)));
      if (!behind && !damaged) {
        if (st.lease.valid) await st.lease.release().catch(() => {});
        continue;
      }
      if (!(await st.lease.acquire(st.progress ?? undefined).catch(() => false))) continue;
      st.run = this.#healStore(id, st)
        .catch((err) => this.#d.log(`heal of ${id}: ${(err as Error).message}`))
        .finally(() => {
          st.run = null;
        });
    }
  }

  async #healStore(id: string, st: StoreHeal): Promise<void> {
    const p: HealProgress = {
      store: id,
      gateway: this.#d.gatewayId,
      startedAt: new Date().toISOString(),
      finishedAt: null,
      missingBytes: 0,
      copiedBytes: 0,
      missingChunks: 0,
      copiedChunks: 0,
      lostChunks: 0,
      lastError: null,
      images: [],
    };
    st.progress = p;
    st.startedMs = performance.now();
    const renew = setInterval(() => {
      st.lease.acquire(p).catch(() => {});
    }, HEAL_LEASE_MS / 3);
    (renew as { unref?: () => void }).unref?.();
    const proceed = () =>
      !this.#stopped && st.lease.valid && !this.#d.health.isDown(id) && !this.#d.health.isFull(id);
    const recent = new RecentRate();
    st.recent = recent;
    try {
      await healStore(this.#d, id, p, proceed, (bytes) => {
        this.healedBytesTotal += bytes;
        recent.add(bytes);
        p.rateBytesPerSecond = Math.round(recent.rate());
      });
    } catch (err) {
      p.lastError = (err as Error).message;
    } finally {
      clearInterval(renew);
      p.finishedAt = new Date().toISOString();
      await st.lease.acquire(p).catch(() => {}); // publish the final state
    }
  }

  /** The heal of each data store: run here, or published by the gateway that runs it. */
  async status(): Promise<
    { store: string; running: boolean; progress: HealProgress | null; rateBytesPerSecond: number }[]
  > {
    const out = [];
    for (const [id, st] of this.#stores) {
      let progress = st.progress;
      let running = st.run !== null;
      let rate = 0;
      if (running && progress) {
        const s = (performance.now() - st.startedMs) / 1000;
        rate = st.recent?.rate() ?? (s > 0 ? progress.copiedBytes / s : 0);
      } else {
        const lease = await readLease(this.#d.register, `heal.${id}`).catch(() => null);
        const theirs =
          lease && lease.holder !== this.#d.gatewayId ? (lease.data as HealProgress | undefined) : undefined;
        if (theirs) {
          progress = theirs;
          running = theirs.finishedAt === null;
          const s = (Date.now() - Date.parse(theirs.startedAt)) / 1000;
          rate = !running ? 0 : (theirs.rateBytesPerSecond ?? (s > 0 ? theirs.copiedBytes / s : 0));
        }
      }
      out.push({ store: id, running, progress, rateBytesPerSecond: Math.round(rate) });
    }
    return out;
  }
}
