/**
 * Background heal: when a store answers again (or an empty one is added), copy to it
 * only the chunks it missed, image by image, while VM I/O goes on; then record it as
 * in sync. Its state is derived from the heads (`synced` per store), so a heal resumes
 * after a gateway restart.
 *
 * For store S and image I: walk the trees of `synced[S]` and the current root side by
 * side (tree-diff.ts), keep the chunks placed on S, ask S in batches which it lacks,
 * copy those from another replica (each read verified), then mark S synced between two
 * commits. Copies are bounded in concurrency and bytes per second, and the rate backs
 * off when foreground latency rises (between a floor and a ceiling, changeable live).
 */
import pLimit from "p-limit";
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { ChunkCorruptError } from "../../chunkstore/errors.ts";
import { growRoot, levelsFor, ZERO_HASH } from "../image/block-map.ts";
import { blockCount, type Head } from "../image/head.ts";
import type { ImageService } from "../image/image-service.ts";
import { changedChunks } from "../image/tree-diff.ts";
import type { StoreHealth, StoreState } from "../replication/store-health.ts";
import type { StoreSet } from "../replication/store-set.ts";
import type { LatencyMonitor } from "./latency-monitor.ts";
import { RateLimiter } from "./rate-limiter.ts";

/** Heal throttle settings; `PUT /v1/heal/limits` changes them live. */
export interface HealLimits {
  rateBytesPerSecond: number;
  floorBytesPerSecond: number;
  ceilingBytesPerSecond: number;
  /** Chunks copied at once. */
  concurrency: number;
  /** Scrub re-reads and verifies at most this many bytes per second. */
  scrubBytesPerSecond: number;
}

export const DEFAULT_HEAL_LIMITS: HealLimits = {
  rateBytesPerSecond: 32 * 1024 * 1024,
  floorBytesPerSecond: 4 * 1024 * 1024,
  ceilingBytesPerSecond: 1024 * 1024 * 1024,
  concurrency: 4,
  scrubBytesPerSecond: 8 * 1024 * 1024,
};

/** Chunks scrubbed on one store before moving to the next. */
const SCRUB_SLICE = 256;

/** Read-repairs queued at most; more are dropped (heal or the next read finds them). */
const MAX_PENDING_REPAIRS = 10_000;
/** Hashes per `has` request while scanning. */
const HAS_BATCH = 512;
/** Foreground p99 above this multiple of the idle baseline halves the heal rate. */
const BACKOFF_FACTOR = 1.25;

/** Per-image heal detail. */
export interface ImageHealStatus {
  readonly image: string;
  readonly fromGeneration: number;
  readonly toGeneration: number;
  readonly missingChunks: number;
  readonly copiedChunks: number;
  readonly done: boolean;
}

/** Per-store heal status, as `GET /v1/heal` reports it. */
export interface StoreHealStatus {
  readonly id: string;
  readonly state: string;
  readonly missingBytes: number;
  readonly copiedBytes: number;
  readonly rateBytesPerSecond: number;
  readonly etaSeconds: number | null;
  readonly converges: boolean;
  readonly lastError: string | null;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  readonly images: ImageHealStatus[];
}

interface Progress {
  missingBytes: number;
  copiedBytes: number;
  lastError: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  startedMs: number;
  images: Map<
    string,
    {
      fromGeneration: number;
      toGeneration: number;
      missingChunks: number;
      copiedChunks: number;
      done: boolean;
    }
  >;
}

/** Runs heals and answers the heal status. */
export class HealScheduler {
  readonly #images: ImageService;
  readonly #stores: StoreSet;
  readonly #health: StoreHealth;
  readonly #latency: LatencyMonitor;
  readonly #limits: HealLimits;
  readonly #rate: RateLimiter;
  readonly #heads = new Map<string, Head>();
  readonly #progress = new Map<string, Progress>();
  readonly #running = new Map<string, Promise<void>>();
  #baselineP99: number | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** Total bytes copied by heals since start (for /metrics). */
  healedBytesTotal = 0;

  constructor(
    images: ImageService,
    stores: StoreSet,
    health: StoreHealth,
    latency: LatencyMonitor,
    limits: HealLimits = { ...DEFAULT_HEAL_LIMITS },
  ) {
    this.#images = images;
    this.#stores = stores;
    this.#health = health;
    this.#latency = latency;
    this.#limits = limits;
    this.#rate = new RateLimiter(limits.rateBytesPerSecond);
    health.onReturn = () => void this.tick();
  }

  /**
   * Heads the status API answers from: those of images open here, current at every
   * commit, and the others as last read (refreshed every second).
   */
  get heads(): ReadonlyMap<string, Head> {
    const all = new Map(this.#heads);
    for (const h of this.#images.openHeads()) all.set(h.name, h);
    return all;
  }

  limits(): HealLimits {
    return { ...this.#limits, rateBytesPerSecond: this.#rate.rate };
  }

  /** Changes limits live; unknown or invalid fields throw a RangeError. */
  setLimits(change: Partial<HealLimits>): HealLimits {
    const next = { ...this.limits(), ...change };
    for (const [k, v] of Object.entries(next)) {
      if (!Number.isFinite(v) || (v as number) <= 0)
        throw new RangeError(`Heal limit ${k} must be a positive number`);
    }
    if (next.floorBytesPerSecond > next.ceilingBytesPerSecond)
      throw new RangeError("Heal rate floor is above the ceiling");
    Object.assign(this.#limits, next);
    this.#rate.rate = Math.min(
      next.ceilingBytesPerSecond,
      Math.max(next.floorBytesPerSecond, next.rateBytesPerSecond),
    );
    return this.limits();
  }

  /** Starts the loop: refresh heads, start heals where stores lag, adapt the rate; and the scrub. */
  start(options: { scrub?: boolean } = {}): void {
    if (options.scrub !== false) void this.#scrubLoop();
    this.#adaptTimer = setInterval(() => this.#adaptRate(), 250);
    (this.#adaptTimer as { unref?: () => void }).unref?.();
    const loop = async () => {
      await this.tick().catch(() => {});
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
    clearInterval(this.#adaptTimer);
  }

  #adaptTimer: ReturnType<typeof setInterval> | undefined;

  /** One round: refresh heads, adapt the rate, start or finish heals. */
  async tick(): Promise<void> {
    await this.#refreshHeads();
    for (const m of this.#stores.dataMembers) {
      const id = m.id;
      if (this.#health.isDown(id)) continue;
      const lagging = this.#lagging(id);
      if (lagging.length === 0) {
        if (!this.#running.has(id)) this.#health.markInSync(id);
        continue;
      }
      this.#health.markHealing(id);
      if (!this.#running.has(id)) {
        const run = this.#healStore(id).finally(() => this.#running.delete(id));
        this.#running.set(id, run);
      }
    }
  }

  /** Images whose head says store `id` lags. */
  #lagging(id: string): string[] {
    return [...this.heads.values()]
      .filter((h) => (h.synced[id]?.generation ?? 0) < h.generation)
      .map((h) => h.name);
  }

  async #refreshHeads(): Promise<void> {
    const names = await this.#images.list();
    const seen = new Set(names);
    for (const n of [...this.#heads.keys()]) if (!seen.has(n)) this.#heads.delete(n);
    await Promise.all(
      names.map(async (n) => {
        const h = await this.#images.info(n).catch(() => null);
        if (h) this.#heads.set(n, h);
      }),
    );
  }

  /**
   * Adapts the heal rate four times a second: halves it when the foreground p99 rises
   * above 1.25x the baseline measured while no heal runs, grows it by a quarter
   * otherwise, and doubles it when there is no foreground load at all (idle: heal fast).
   */
  #adaptRate(): void {
    const p99 = this.#latency.recentP99(500);
    const { floorBytesPerSecond: floor, ceilingBytesPerSecond: ceiling } = this.#limits;
    if (this.#running.size === 0) {
      if (p99 !== null)
        this.#baselineP99 = this.#baselineP99 === null ? p99 : this.#baselineP99 * 0.8 + p99 * 0.2;
      return;
    }
    if (p99 === null) this.#rate.rate = Math.min(ceiling, this.#rate.rate * 2);
    else if (this.#baselineP99 !== null && p99 > this.#baselineP99 * BACKOFF_FACTOR)
      this.#rate.rate = Math.max(floor, this.#rate.rate / 2);
    else this.#rate.rate = Math.min(ceiling, this.#rate.rate * 1.25);
  }

  async #healStore(id: string): Promise<void> {
    const p: Progress = {
      missingBytes: 0,
      copiedBytes: 0,
      lastError: null,
      startedAt: new Date().toISOString(),
      finishedAt: null,
      startedMs: performance.now(),
      images: new Map(),
    };
    this.#progress.set(id, p);
    try {
      for (const name of this.#lagging(id)) {
        if (this.#health.isDown(id) || this.#stopped) break;
        await this.#healImage(id, name, p);
      }
    } catch (err) {
      p.lastError = (err as Error).message;
    } finally {
      p.finishedAt = new Date().toISOString();
    }
    await this.#refreshHeads().catch(() => {});
    if (!this.#health.isDown(id) && this.#lagging(id).length === 0) this.#health.markInSync(id);
  }

  /** Copies what store `id` lacks of image `name` and marks it synced. */
  async #healImage(id: string, name: string, p: Progress): Promise<void> {
    const store = this.#stores.member(id)!.store;
    let head = await this.#images.info(name);
    const from = head.synced[id] ?? { generation: 0, root: ZERO_HASH, size: 0 };
    const status = {
      fromGeneration: from.generation,
      toGeneration: head.generation,
      missingChunks: 0,
      copiedChunks: 0,
      done: false,
    };
    p.images.set(name, status);
    let base = this.#grownRoot(from.root, from.size ?? head.size, head);
    for (let round = 0; round < 50 && !this.#stopped; round++) {
      // 1. What changed since `base`, placed on this store, and missing there.
      const target = head.root;
      const missing = await this.#missingOn(id, base, head);
      status.toGeneration = head.generation;
      status.missingChunks += missing.length;
      p.missingBytes += missing.reduce((a, m) => a + m.estimate, 0);
      // 2. Copy them from other replicas, verified, throttled.
      const limit = pLimit(this.#limits.concurrency);
      await Promise.all(
        missing.map((m) =>
          limit(async () => {
            await this.#rate.take(m.estimate);
            const bytes = await this.#stores.getChunk(m.hash, id);
            await store.put(m.hash, bytes);
            p.copiedBytes += bytes.byteLength;
            this.healedBytesTotal += bytes.byteLength;
            status.copiedChunks++;
          }),
        ),
      );
      // 3. Mark synced between commits, if nothing is missing since `target` (new writes reach
      //    the store directly while it is up; any it missed show up here and go round again).
      if (this.#health.isDown(id)) throw new Error(`store "${id}" went down while healing "${name}"`);
      const marked = await this.#images.markSynced(name, id, async (current: Head) => {
        const rest = await this.#missingOn(id, this.#grownRoot(target, head.size, current), current);
        return rest.length === 0;
      });
      if (marked) {
        status.done = true;
        return;
      }
      head = await this.#images.info(name);
      base = this.#grownRoot(target, head.size, head);
    }
  }

  /** `root` of a version of `size` bytes, grown to the height of `head`'s block map. */
  #grownRoot(root: Hash, size: number, head: Head): Hash {
    const levels = (bytes: number) =>
      levelsFor(Math.max(1, blockCount({ size: bytes, chunkSize: head.chunkSize })));
    const from = levels(Math.min(size || head.size, head.size));
    return growRoot(root, from, levels(head.size)).root;
  }

  /** Chunks of `head` not in `base`, placed on store `id`, that `id` lacks. */
  async #missingOn(id: string, base: Hash, head: Head): Promise<{ hash: Hash; estimate: number }[]> {
    const store = this.#stores.member(id)!.store;
    const levels = levelsFor(Math.max(1, blockCount(head)));
    const out: { hash: Hash; estimate: number }[] = [];
    let batch: { hash: Hash; estimate: number }[] = [];
    const flush = async () => {
      const present = await store.has(batch.map((b) => b.hash));
      batch.forEach((b, i) => {
        if (!present[i]) out.push(b);
      });
      batch = [];
    };
    const pages = (h: Hash) => this.#stores.getChunk(h, id);
    for await (const c of changedChunks(pages, base, head.root, levels)) {
      if (!this.#stores.placement(c.hash).includes(id)) continue;
      batch.push({ hash: c.hash, estimate: c.page ? 8192 : head.chunkSize });
      if (batch.length >= HAS_BATCH) await flush();
    }
    if (batch.length > 0) await flush();
    return out;
  }

  /**
   * A store's state as operators see it: `down` from the health tracker; otherwise
   * `healing` as soon as any head says it lags (before the next tick starts the heal),
   * else `in-sync`.
   */
  storeState(id: string): StoreState {
    const health = this.#health.status(id)?.state ?? "down";
    if (health === "down") return "down";
    const member = this.#stores.member(id);
    if (!member?.store.capabilities.chunks) return health;
    return this.#running.has(id) || this.#lagging(id).length > 0 ? "healing" : "in-sync";
  }

  /** `GET /v1/heal`: per store progress, answered from counters. */
  status(): {
    healing: boolean;
    limits: HealLimits;
    stores: StoreHealStatus[];
    scrub: ReturnType<HealScheduler["scrubStatus"]>;
    repairedChunks: number;
  } {
    const stores = this.#stores.dataMembers.map((m) => {
      const p = this.#progress.get(m.id);
      const health = this.#health.status(m.id)!;
      const running = this.#running.has(m.id);
      const elapsed = p
        ? ((p.finishedAt ? Date.parse(p.finishedAt) : Date.now()) - Date.parse(p.startedAt!)) / 1000
        : 0;
      const rate = p && elapsed > 0 ? p.copiedBytes / elapsed : 0;
      const remaining = p ? Math.max(0, p.missingBytes - p.copiedBytes) : 0;
      const limit = this.#rate.rate;
      return {
        id: m.id,
        state: this.storeState(m.id),
        missingBytes: p?.missingBytes ?? 0,
        copiedBytes: p?.copiedBytes ?? 0,
        rateBytesPerSecond: Math.round(running ? rate : 0),
        etaSeconds: running
          ? remaining === 0
            ? 0
            : Math.ceil(remaining / Math.max(1, Math.min(limit, rate || limit)))
          : null,
        // The backlog only shrinks while the store is up (new writes reach it directly).
        converges: health.state !== "down" && limit > 0,
        lastError: p?.lastError ?? null,
        startedAt: p?.startedAt ?? null,
        finishedAt: p?.finishedAt ?? null,
        images: p ? [...p.images].map(([image, s]) => ({ image, ...s })) : [],
      };
    });
    return {
      healing: this.#running.size > 0 || stores.some((s) => s.state === "healing"),
      limits: this.limits(),
      stores,
      scrub: this.scrubStatus(),
      repairedChunks: this.repairedChunks,
    };
  }

  /**
   * Read-repair: a copy of `hash` was found missing or corrupt on store `id` during a
   * read (which another replica served). Copy it back in the background, once at a time
   * per chunk, in a bounded queue.
   */
  repair(id: string, hash: Hash, reason: "missing" | "corrupt" = "missing"): void {
    const key = `${id}/${hash}`;
    if (this.#repairs.has(key) || this.#repairs.size >= MAX_PENDING_REPAIRS || this.#health.isDown(id))
      return;
    this.#repairs.add(key);
    void this.#repairLimit(async () => {
      try {
        const bytes = await this.#stores.getChunk(hash, id);
        const store = this.#stores.member(id)!.store;
        // A corrupt copy is dropped from the index first (the file store keeps its bytes in
        // the segment, out of reach, until compaction), so the good copy can take its place.
        if (reason === "corrupt") await store.delete(hash);
        await store.put(hash, bytes);
        this.repairedChunks++;
      } catch {
        // The next read or heal finds it again.
      } finally {
        this.#repairs.delete(key);
      }
    });
  }
  readonly #repairs = new Set<string>();
  readonly #repairLimit = pLimit(4);
  /** Chunks put back by read-repair since start. */
  repairedChunks = 0;

  /**
   * Scrub: re-reads every chunk of every reachable data store at a bounded rate (each
   * read is verified by the store), and repairs corrupt copies from a replica. Runs
   * forever in the background, one store at a time, resuming where it left off.
   */
  async #scrubLoop(): Promise<void> {
    const limiter = new RateLimiter(this.#limits.scrubBytesPerSecond);
    while (!this.#stopped) {
      let did = false;
      for (const m of this.#stores.dataMembers) {
        if (this.#stopped || this.#health.isDown(m.id)) continue;
        const st = this.#scrub.get(m.id) ?? {
          checkedChunks: 0,
          corruptChunks: 0,
          passes: 0,
          cursor: undefined as Hash | undefined,
        };
        this.#scrub.set(m.id, st);
        limiter.rate = this.#limits.scrubBytesPerSecond;
        let n = 0;
        try {
          for await (const hash of m.store.list(st.cursor ? { after: st.cursor } : {})) {
            if (this.#stopped || this.#health.isDown(m.id)) break;
            try {
              const bytes = await m.store.get(hash);
              await limiter.take(bytes.byteLength);
            } catch (err) {
              if (err instanceof ChunkCorruptError) {
                st.corruptChunks++;
                this.repair(m.id, hash, "corrupt");
              }
            }
            st.checkedChunks++;
            st.cursor = hash;
            did = true;
            if (++n >= SCRUB_SLICE) break; // give the other stores a turn
          }
          if (n < SCRUB_SLICE) {
            st.cursor = undefined;
            st.passes++;
          }
        } catch {
          // The store failed mid-listing: health marks it down; resume later.
        }
      }
      if (!did) await new Promise((r) => setTimeout(r, 1000));
    }
  }
  readonly #scrub = new Map<
    string,
    { checkedChunks: number; corruptChunks: number; passes: number; cursor: Hash | undefined }
  >();

  /** Scrub counters per store. */
  scrubStatus(): { store: string; checkedChunks: number; corruptChunks: number; passes: number }[] {
    return [...this.#scrub].map(([store, s]) => ({
      store,
      checkedChunks: s.checkedChunks,
      corruptChunks: s.corruptChunks,
      passes: s.passes,
    }));
  }
}
