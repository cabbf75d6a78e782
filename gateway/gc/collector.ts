/**
 * Garbage collection: deletes chunks no image version references any more (overwritten
 * blocks, deleted images and snapshots), without ever deleting one that a commit in flight
 * is about to reference. One pass, under the cluster lease `gc`:
 *
 *  1. mark: every chunk (map pages and data) reachable from every live head's current
 *     root, snapshots and the roots stores are recorded in sync at (a heal diffs from them),
 *     and from every gateway's pins (pins.ts: long S3 GETs, backups), read after the heads;
 *  2. condemn: on each reachable store that can be swept, every stored chunk not marked,
 *     with this pass's token. A put of a condemned chunk from now on revives it;
 *  3. barrier: bump the cluster record's gcEpoch, then stamp every head with it. A commit
 *     that read an older gcEpoch before its puts (so a put of a chunk it found stored may
 *     have come before the condemn) is refused by the head writer and puts its chunks
 *     again (image/gc-barrier.ts); heads created with content are confirmed by their
 *     creator against the barrier;
 *  4. grace: wait, so that gateways still serving a version that stopped being current
 *     (followers between two reads of their head) move on;
 *  5. mark again: what became reachable since step 1 is kept;
 *  6. sweep: each store deletes the chunks of step 2 that are still condemned by this
 *     pass (not revived, not condemned by a later pass) and not marked in step 5, in
 *     small batches paced by the heal throttle and a cap while VMs do I/O (`pace`).
 *  7. tombstones: the heads of images deleted at least one grace before are removed from
 *     the register for good (HeadWriter.collectTombstone), once every head holder answers
 *     (the register's `collect` writes the tombstone to all of them first, then raises
 *     their ballot floors, so no gateway's older proposal can bring the head back).
 *
 * Why this never deletes a referenced chunk: a chunk deleted in step 6 was not put since
 * step 2 (a put revives it) and no head referenced it in step 5. A commit that references
 * it must have put it before step 2, so it read gcEpoch before step 3's bump; its head
 * change comes either before that head's stamp (then step 5, which runs after every stamp,
 * sees it) or after (then the head writer refuses it). A head created after step 3's
 * listing is unconfirmed until its creator reads the bumped gcEpoch, which sends it to put
 * its content again. A second collector (a paused one resuming after its lease lapsed)
 * cannot delete what a later pass condemned: marks carry the pass's token.
 *
 * S3 bucket stores are never swept (no atomic "delete unless written since"), nor stores
 * unreachable at step 2. The marks are held in memory: about 100 bytes per distinct chunk.
 *
 * Surplus copies (after `store add`, the old stores keep the chunks that moved to the new
 * one) go the same way, with one more condition: only while the placement is settled,
 * that is, every placement store holds every live image in full under the placement epoch
 * now (`settled`, read fresh at step 2 and again at step 6, which must name the same
 * epoch). Then a chunk the heads name and whose placement leaves out store S has its
 * `replicas` copies on the stores vouched current, and S's copy is condemned at step 2 and
 * swept at step 6 like garbage, under the same barrier (a commit still placing under an
 * older epoch that found S's copy either revived it by its put or is refused and puts
 * again; its head change makes the placement unsettled). Chunks only pins or lagging
 * stores' versions reference are never surplus: no walk vouches for their other copies.
 */
import type { ChunkStore, Hash } from "../../chunkstore/chunk-store.ts";
import { MAX_BATCH_HASHES } from "../../chunkstore/limits.ts";
import { type HeadValue, isTombstone, liveHead } from "../image/head.ts";
import { type HeadWriter, stampGc } from "../image/head-writer.ts";
import { Lease } from "../register/lease.ts";
import { type Register, write } from "../register/register.ts";
import type { Cluster } from "../replication/cluster.ts";
import type { StoreSet } from "../replication/store-set.ts";
import { markChunks, referencedChunks } from "./mark.ts";

export { versionsOf } from "./mark.ts";

/**
 * Deletes per sweep request: a store applies one batch in one index transaction, during
 * which its other requests wait, so batches stay small (bench/gc.ts: 1024 at a time put
 * the VM's p99 at 5.7x its baseline during a pass).
 */
export const SWEEP_BATCH = 128;

/**
 * What one deleted chunk costs against the heal throttle's byte rate: an index delete, not
 * a copy, so far less than a chunk. At the default 32 MiB/s, 2048 deletes a second; the
 * throttle halves that when VM latency rises and doubles it while no VM does I/O.
 */
export const SWEEP_CHUNK_COST = 16 * 1024;

/** How a sweep is paced. */
export interface SweepPace {
  /** Runs the whole sweep (the throttle adapts to VM latency while it runs). */
  during<T>(sweep: () => Promise<T>): Promise<T>;
  /** Awaited before each batch of `chunks` deletes. */
  batch(chunks: number): Promise<void>;
}
/** How long the gc lease lasts; renewed between steps and batches. */
const GC_LEASE_MS = 30_000;
/** Default wait between the barrier and the second mark. */
export const DEFAULT_GC_GRACE_MS = 5 * 60_000;
/** Register key under which the last pass's report is kept, for every gateway to show. */
export const GC_REPORT_KEY = "gc.report";

/** Another gateway is collecting now. */
export class GcBusyError extends Error {
  override readonly name = "GcBusyError";
  readonly holder: string;
  constructor(holder: string) {
    super(`A garbage collection is running on gateway ${holder}; try again when it has finished`);
    this.holder = holder;
  }
}

/** What one pass did on one store. */
export interface GcStoreReport {
  readonly store: string;
  /** Why the store was left alone, or null. */
  readonly skipped: string | null;
  readonly stored: number;
  readonly condemned: number;
  readonly deleted: number;
  readonly bytesDeleted: number;
  /** Condemned, but revived or referenced again before the sweep. */
  readonly kept: number;
  /** Of `condemned` and `deleted`: surplus copies (placed on other stores, settled there). */
  readonly surplusCondemned: number;
  readonly surplusDeleted: number;
  readonly error: string | null;
}

/** One pass, as reported by `GET /v1/gc` and `blockmend gc run`. */
export interface GcReport {
  readonly token: string;
  readonly gateway: string;
  readonly phase: "mark" | "condemn" | "barrier" | "grace" | "sweep" | "tombstones" | "done" | "failed";
  readonly startedAt: string;
  readonly finishedAt: string | null;
  readonly graceMs: number;
  /** The barrier this pass set. */
  readonly gcEpoch: number | null;
  /** Distinct chunks (pages and data) referenced at the first mark. */
  readonly referenced: number;
  readonly stores: readonly GcStoreReport[];
  readonly error: string | null;
  /** Milliseconds spent in each step so far (mark, condemn, barrier, grace, remark, sweep, tombstones). */
  readonly stepMs: Readonly<Record<string, number>>;
  /** Deleted images' heads removed from the register, and those left (absent: a pass before step 7 existed). */
  readonly tombstones?: TombstoneReport;
}

/** Step 7 of a pass: tombstones collected, those left, and why they were left. */
export interface TombstoneReport {
  readonly collected: number;
  readonly left: number;
  /** Why some were left (a head holder down, deleted less than a grace ago), or null. */
  readonly reason: string | null;
}

/** What the collector needs. */
export interface CollectorDeps {
  readonly stores: StoreSet;
  readonly heads: HeadWriter;
  readonly cluster: Cluster;
  readonly register: Register;
  readonly gatewayId: string;
  /** True while a store answers (health view). */
  readonly isUp: (store: string) => boolean;
  readonly log?: (line: string) => void;
  /** Paces the sweep (the gateway wires the heal throttle); default: as fast as the stores go. */
  readonly pace?: SweepPace;
  /**
   * The placement epoch if, read fresh now, every placement store holds every live image in
   * full under it; else null (then no surplus copy is condemned or swept). Absent: never.
   */
  readonly settled?: () => Promise<number | null>;
  /** Test seams: run between the steps (a commit racing the pass). */
  readonly hooks?: { afterCondemn?: () => Promise<void>; beforeSweep?: () => Promise<void> };
}

/** Runs garbage collection passes for one gateway. */
export class Collector {
  readonly #d: CollectorDeps;
  readonly #lease: Lease;
  #running: Promise<GcReport> | null = null;
  #current: GcReport | null = null;

  constructor(deps: CollectorDeps) {
    this.#d = deps;
    this.#lease = new Lease(deps.register, "gc", deps.gatewayId, GC_LEASE_MS);
  }

  /** The pass running here, if any. */
  get current(): GcReport | null {
    return this.#current;
  }

  /**
   * Starts a pass (throws GcBusyError if one runs anywhere); resolves with it started,
   * and `done` with its final report.
   */
  async start(options: { graceMs?: number } = {}): Promise<{ report: GcReport; done: Promise<GcReport> }> {
    if (this.#running) throw new GcBusyError(this.#d.gatewayId);
    const graceMs = options.graceMs ?? DEFAULT_GC_GRACE_MS;
    if (!Number.isSafeInteger(graceMs) || graceMs < 0)
      throw new RangeError("The grace must be whole milliseconds, 0 or more");
    if (!(await this.#lease.acquire({ phase: "mark" }))) {
      const lease = (await this.#d.register.read(this.#lease.key)) as { holder?: string } | null;
      throw new GcBusyError(lease?.holder ?? "another gateway");
    }
    const report: GcReport = {
      token: crypto.randomUUID(),
      gateway: this.#d.gatewayId,
      phase: "mark",
      startedAt: new Date().toISOString(),
      finishedAt: null,
      graceMs,
      gcEpoch: null,
      referenced: 0,
      stores: [],
      error: null,
      stepMs: {},
    };
    this.#current = report;
    const done = this.#pass(report).finally(() => {
      this.#running = null;
    });
    this.#running = done;
    return { report, done };
  }

  /** Runs one pass to its end. */
  async run(options: { graceMs?: number } = {}): Promise<GcReport> {
    return (await this.start(options)).done;
  }

  /** The last finished pass of any gateway (from the register), or null. */
  async lastReport(): Promise<GcReport | null> {
    return (await this.#d.register.read(GC_REPORT_KEY)) as GcReport | null;
  }

  async #pass(first: GcReport): Promise<GcReport> {
    let report = first;
    const set = (change: Partial<GcReport>) => {
      report = { ...report, ...change };
      this.#current = report;
    };
    let stepStart = performance.now();
    const step = (name: string) => {
      const now = performance.now();
      set({ stepMs: { ...report.stepMs, [name]: Math.round(now - stepStart) } });
      stepStart = now;
    };
    const renew = async () => {
      if (!(await this.#lease.acquire({ phase: report.phase, token: report.token })))
        throw new Error("The gc lease was lost (this gateway was paused or cut off): pass abandoned");
    };
    /** Renews only past half the lease: a register write per sweep batch would cost more than the deletes. */
    const renewIfDue = async () => {
      if (this.#lease.remainingMs < GC_LEASE_MS / 2) await renew();
    };
    try {
      const { referenced, named } = await markChunks(this.#d);
      step("mark");
      set({ referenced: referenced.size, phase: "condemn" });
      await renew();
      // Surplus only under a settled placement, and only the one this gateway places by.
      const view = this.#d.stores.view;
      const settledAt = (await this.#d.settled?.().catch(() => null)) ?? null;
      const placed = settledAt !== null && settledAt === view.epoch ? view : null;
      const candidates = new Map<string, Hash[]>();
      const surplusOf = new Map<string, Hash[]>();
      const stores: GcStoreReport[] = [];
      for (const m of this.#d.stores.dataMembers) {
        const skip = !m.store.capabilities.sweep
          ? "cannot be swept (an S3 bucket)"
          : !this.#d.isUp(m.id)
            ? "unreachable"
            : null;
        if (skip) {
          stores.push(storeReport(m.id, { skipped: skip }));
          continue;
        }
        try {
          const surplus = placed
            ? (h: Hash) => named.has(h) && !placed.placement(h).includes(m.id)
            : () => false;
          const { stored, condemned, surplusCondemned } = await this.#condemn(
            m.store,
            referenced,
            surplus,
            report.token,
            renew,
          );
          candidates.set(m.id, condemned);
          surplusOf.set(m.id, surplusCondemned);
          stores.push(
            storeReport(m.id, {
              stored,
              condemned: condemned.length + surplusCondemned.length,
              surplusCondemned: surplusCondemned.length,
            }),
          );
        } catch (err) {
          stores.push(storeReport(m.id, { error: (err as Error).message }));
        }
      }
      step("condemn");
      set({ stores, phase: "barrier" });
      await this.#d.hooks?.afterCondemn?.();
      await renew();
      const gcEpoch = await this.#d.cluster.bumpGcEpoch();
      set({ gcEpoch });
      await this.#stampAll(gcEpoch, renew);
      step("barrier");
      set({ phase: "grace" });
      const graceEnd = performance.now() + report.graceMs;
      while (performance.now() < graceEnd) {
        await renew();
        await new Promise((r) => setTimeout(r, Math.min(5000, Math.max(0, graceEnd - performance.now()))));
      }
      await renew();
      step("grace");
      set({ phase: "sweep" });
      const still = await this.#mark();
      step("remark");
      await this.#d.hooks?.beforeSweep?.();
      // Surplus is swept only if the placement is still settled, under the same epoch.
      const settledNow = placed ? ((await this.#d.settled?.().catch(() => null)) ?? null) : null;
      const surplusStands =
        placed !== null && settledNow === placed.epoch && this.#d.stores.view.epoch === placed.epoch;
      const sweepAll = async (): Promise<GcStoreReport[]> => {
        const swept: GcStoreReport[] = [];
        for (const s of report.stores) {
          const hashes = candidates.get(s.store);
          const member = this.#d.stores.member(s.store);
          if (!hashes || !member) {
            swept.push(s);
            continue;
          }
          try {
            let deleted = 0;
            let bytes = 0;
            const sweep = async (doomed: readonly Hash[]) => {
              let n = 0;
              for (let i = 0; i < doomed.length; i += SWEEP_BATCH) {
                const batch = doomed.slice(i, i + SWEEP_BATCH);
                await this.#d.pace?.batch(batch.length);
                await renewIfDue();
                const r = await member.store.sweep(batch, report.token);
                n += r.deleted;
                bytes += r.bytes;
              }
              deleted += n;
              return n;
            };
            await sweep(hashes.filter((h) => !still.has(h)));
            const surplusDeleted = surplusStands ? await sweep(surplusOf.get(s.store) ?? []) : 0;
            swept.push({ ...s, deleted, bytesDeleted: bytes, kept: s.condemned - deleted, surplusDeleted });
          } catch (err) {
            swept.push({ ...s, error: (err as Error).message });
          }
        }
        return swept;
      };
      const swept = this.#d.pace ? await this.#d.pace.during(sweepAll) : await sweepAll();
      step("sweep");
      set({ stores: swept, phase: "tombstones" });
      const tombstones = await this.#collectTombstones(report.graceMs, renewIfDue);
      step("tombstones");
      set({ tombstones, phase: "done", finishedAt: new Date().toISOString() });
      const freed = swept.reduce((n, s) => n + s.bytesDeleted, 0);
      this.#d.log?.(
        `gc: pass ${report.token.slice(0, 8)} deleted ${swept.reduce((n, s) => n + s.deleted, 0)} chunks (${freed} bytes) on ${swept.filter((s) => s.deleted > 0).length} stores; ${tombstones.collected} tombstone(s) collected, ${tombstones.left} left${tombstones.reason ? ` (${tombstones.reason})` : ""}`,
      );
    } catch (err) {
      set({ phase: "failed", error: (err as Error).message, finishedAt: new Date().toISOString() });
      this.#d.log?.(`gc: pass ${report.token.slice(0, 8)} failed: ${(err as Error).message}`);
    } finally {
      await this.#d.register.update(GC_REPORT_KEY, () => write(report, undefined)).catch(() => {});
      await this.#lease.release().catch(() => {});
    }
    return report;
  }

  /**
   * Step 7: removes the tombstones of images deleted at least `graceMs` ago. A failure
   * leaves the rest for the next pass (a half-done removal is safe) and never fails the pass.
   */
  async #collectTombstones(graceMs: number, renew: () => Promise<void>): Promise<TombstoneReport> {
    const dead = [...(await this.#d.heads.scan())].filter(([, v]) => isTombstone(v)).map(([name]) => name);
    if (dead.length === 0) return { collected: 0, left: 0, reason: null };
    const blocker = this.#d.heads.tombstoneBlocker();
    if (blocker) return { collected: 0, left: dead.length, reason: blocker };
    const deletedBy = Date.now() - graceMs;
    let collected = 0;
    let reason: string | null = null;
    for (const name of dead) {
      try {
        if (await this.#d.heads.collectTombstone(name, deletedBy)) collected++;
        else reason ??= `deleted less than the grace (${Math.round(graceMs / 1000)} s) ago, or re-created`;
        await renew();
      } catch (err) {
        reason = (err as Error).message;
        break;
      }
    }
    return { collected, left: dead.length - collected, reason };
  }

  /** Every chunk reachable from every live head's versions and every live pin. */
  #mark(): Promise<Set<Hash>> {
    return referencedChunks(this.#d);
  }

  async #condemn(
    store: ChunkStore,
    referenced: ReadonlySet<Hash>,
    surplus: (h: Hash) => boolean,
    token: string,
    renew: () => Promise<void>,
  ): Promise<{ stored: number; condemned: Hash[]; surplusCondemned: Hash[] }> {
    const condemned: Hash[] = [];
    const surplusCondemned: Hash[] = [];
    let stored = 0;
    let batch: { hash: Hash; surplus: boolean }[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      await store.condemn(
        batch.map((b) => b.hash),
        token,
      );
      for (const b of batch) (b.surplus ? surplusCondemned : condemned).push(b.hash);
      batch = [];
      await renew();
    };
    for await (const h of store.list()) {
      stored++;
      if (referenced.has(h) && !surplus(h)) continue;
      batch.push({ hash: h, surplus: referenced.has(h) });
      if (batch.length >= MAX_BATCH_HASHES) await flush();
    }
    await flush();
    return { stored, condemned, surplusCondemned };
  }

  async #stampAll(gcEpoch: number, renew: () => Promise<void>): Promise<void> {
    const heads: Map<string, HeadValue> = await this.#d.heads.scan();
    let n = 0;
    for (const [name, value] of heads) {
      const head = liveHead(value);
      if (!head || (head.gcEpoch ?? 0) >= gcEpoch) continue;
      await this.#d.heads.change(name, stampGc(name, gcEpoch));
      if (++n % 64 === 0) await renew();
    }
  }
}

function storeReport(store: string, fields: Partial<GcStoreReport>): GcStoreReport {
  return {
    store,
    skipped: null,
    stored: 0,
    condemned: 0,
    deleted: 0,
    bytesDeleted: 0,
    kept: 0,
    surplusCondemned: 0,
    surplusDeleted: 0,
    error: null,
    ...fields,
  };
}
