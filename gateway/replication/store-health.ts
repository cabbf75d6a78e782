/**
 * Reachability of every store as this gateway sees it. A probe (`ChunkStore.probe`, which
 * also returns the store's identity) runs about once a second; any failed or timed-out
 * request marks a store down at once, and the next good probe brings it back. A store
 * that answers with another identity than the cluster record's (a wiped or replaced disk)
 * counts as down, whatever it answers, until the record names its new identity.
 *
 * Upper layers listen: `returned` (down -> up: start a heal), `identitySeen` (a store
 * answered with an identity other than expected: a replacement to handle).
 *
 * Full is not down: a store at its high-water mark (its stats say so, or a put was refused
 * for space) still serves reads and stays up; it only takes no new chunks until its stats
 * say it has room again (checked every probe while full).
 */

import type { StoreStats } from "../../chunkstore/chunk-store.ts";
import { StoreFullError, StoreIdentityError } from "../../chunkstore/errors.ts";
import { Listeners } from "../_listeners.ts";
import type { StoreMember } from "./store-member.ts";

/** What `GET /v1/stores` reports of a store's reachability (counters kept current, never crawled). */
export interface StoreHealthStatus {
  readonly id: string;
  readonly url: string;
  readonly up: boolean;
  /** When the store was last seen to go up or down (ISO 8601). */
  readonly since: string;
  /** Why it is down, or null. */
  readonly reason: string | null;
  /** The identity it last answered with (null: never reached). */
  readonly identity: string | null;
  /** Failed or timed-out requests and probes since the gateway started. */
  readonly failures: number;
  readonly chunks: number | null;
  readonly bytes: number | null;
  readonly freeBytes: number | null;
  /** Bytes on disk held by deleted chunks, which compaction frees (file stores; else null). */
  readonly reclaimableBytes: number | null;
  /** At its high-water mark: takes no new chunks (reads go on). */
  readonly full: boolean;
  /** Why it is full (the store's refusal or its stats), or null. */
  readonly fullReason: string | null;
  /** How fast its used bytes grew, bytes per second (smoothed over about a minute; null until known). */
  readonly fillBytesPerSecond: number | null;
  readonly lastProbe: string | null;
}

/** The status of a store nothing is known of yet: down, for `reason`. */
export function unknownStatus(id: string, url: string, reason: string): StoreHealthStatus {
  return {
    id,
    url,
    up: false,
    since: new Date().toISOString(),
    reason,
    identity: null,
    failures: 0,
    chunks: null,
    bytes: null,
    freeBytes: null,
    reclaimableBytes: null,
    full: false,
    fullReason: null,
    fillBytesPerSecond: null,
    lastProbe: null,
  };
}

/** Probe timing. */
export interface HealthOptions {
  readonly probeIntervalMs: number;
  /** A probe slower than this counts as a failure (a hung store must not look alive). */
  readonly probeTimeoutMs: number;
}

export const DEFAULT_HEALTH_OPTIONS: HealthOptions = { probeIntervalMs: 1000, probeTimeoutMs: 1000 };

/** How often store counters (chunks, bytes, free space) are refreshed (every probe while full). */
const STATS_INTERVAL_MS = 5000;
/** Time constant of the fill rate's smoothing. */
const FILL_RATE_TAU_MS = 60_000;

/** Rejects after `ms` unless `promise` settles first. */
export function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

interface Entry {
  member: StoreMember;
  up: boolean;
  since: string;
  reason: string | null;
  identity: string | null;
  failures: number;
  chunks: number | null;
  bytes: number | null;
  freeBytes: number | null;
  reclaimableBytes: number | null;
  full: boolean;
  fullReason: string | null;
  fillBytesPerSecond: number | null;
  /** The last stats sample (used bytes, when) the fill rate is measured from. */
  sample: { bytes: number; at: number } | null;
  lastProbe: string | null;
  lastStats: number;
  /** Times it was marked down: a probe answer counts only if none happened since it was sent. */
  downs: number;
}

/** Tracks store reachability and runs the probe loop. */
export class StoreHealth {
  readonly #entries = new Map<string, Entry>();
  readonly #options: HealthOptions;
  readonly #expected: (id: string) => string | null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** A store answered again after being down. */
  readonly returned = new Listeners<[id: string]>();
  /** A store went down (a failed request or probe). */
  readonly wentDown = new Listeners<[id: string, reason: string]>();
  /** A store reached its high-water mark (it takes no new chunks until it has room again), or left it. */
  readonly fullChanged = new Listeners<[id: string, full: boolean, reason: string]>();
  /** A store answered with another identity than expected. */
  readonly identitySeen = new Listeners<[id: string, identity: string]>();

  /**
   * @param expected the identity each store should have (the cluster record's), or null
   *   while unknown.
   */
  constructor(
    members: readonly StoreMember[],
    expected: (id: string) => string | null,
    options: HealthOptions = DEFAULT_HEALTH_OPTIONS,
  ) {
    this.#options = options;
    this.#expected = expected;
    for (const member of members) this.add(member);
  }

  /** Tracks one more store (a store added to the cluster); it starts down until probed. */
  add(member: StoreMember): void {
    if (this.#entries.has(member.id)) return;
    const { id: _id, url: _url, ...fresh } = unknownStatus(member.id, member.url, "not probed yet");
    this.#entries.set(member.id, { ...fresh, member, sample: null, lastStats: 0, downs: 0 });
  }

  /** Stops tracking a store (removed from the cluster). */
  remove(id: string): void {
    this.#entries.delete(id);
  }

  /** Every store's status, in configuration order. */
  all(): StoreHealthStatus[] {
    return [...this.#entries.values()].map((e) => this.#status(e));
  }

  status(id: string): StoreHealthStatus | undefined {
    const e = this.#entries.get(id);
    return e && this.#status(e);
  }

  #status(e: Entry): StoreHealthStatus {
    const { member, lastStats: _stats, downs: _downs, sample: _sample, ...rest } = e;
    return { id: member.id, url: member.url, ...rest };
  }

  isDown(id: string): boolean {
    return this.#entries.get(id)?.up !== true;
  }

  /** True while the store is at its high-water mark (no new chunks; reads go on). */
  isFull(id: string): boolean {
    return this.#entries.get(id)?.full === true;
  }

  /**
   * A request to the store failed or timed out: it is down from now on, until a probe
   * succeeds. A refusal for space is not a failure of the store: it is full, not down.
   */
  reportFailure(id: string, error: unknown): void {
    const e = this.#entries.get(id);
    if (!e) return;
    if (error instanceof StoreFullError) {
      this.#setFull(e, true, error.message);
      return;
    }
    e.failures++;
    if (error instanceof StoreIdentityError && error.actual) this.#sawIdentity(e, error.actual);
    this.#down(e, error instanceof Error ? error.message : String(error));
  }

  #down(e: Entry, reason: string): void {
    e.downs++;
    const was = e.up;
    e.up = false;
    e.reason = reason;
    if (was) {
      e.since = new Date().toISOString();
      this.wentDown.emit(e.member.id, reason);
    }
  }

  #setFull(e: Entry, full: boolean, reason: string | null): void {
    if (e.full !== full) {
      e.full = full;
      this.fullChanged.emit(e.member.id, full, reason ?? (full ? "full" : "has room again"));
    }
    e.fullReason = full ? reason : null;
  }

  #sawIdentity(e: Entry, identity: string): void {
    const changed = e.identity !== identity;
    e.identity = identity;
    const expected = this.#expected(e.member.id);
    if (expected !== null && identity !== expected && changed) this.identitySeen.emit(e.member.id, identity);
  }

  /** Starts probing every store about once per interval (the first round at once). */
  start(): void {
    const tick = async () => {
      await this.probeAll();
      if (!this.#stopped) {
        this.#timer = setTimeout(tick, this.#options.probeIntervalMs);
        (this.#timer as { unref?: () => void }).unref?.();
      }
    };
    void tick();
  }

  /** Probes every store now (deadline: the probe timeout); resolves when all answered or timed out. */
  async probeAll(): Promise<void> {
    await Promise.all([...this.#entries.values()].map((e) => this.#probe(e)));
  }

  /** Probes one store now; resolves true when it answered with the expected identity. */
  async #probe(e: Entry): Promise<boolean> {
    const { store } = e.member;
    const downsAtSend = e.downs;
    let identity: string;
    try {
      identity = (await withDeadline(store.probe(), this.#options.probeTimeoutMs, `probe of ${e.member.id}`))
        .identity;
    } catch (err) {
      e.failures++;
      this.#down(e, (err as Error).message);
      return false;
    }
    e.lastProbe = new Date().toISOString();
    this.#sawIdentity(e, identity);
    const expected = this.#expected(e.member.id);
    if (expected !== null && identity !== expected) {
      this.#down(
        e,
        `answers as another store (identity ${identity}, expected ${expected}): wiped or replaced`,
      );
      return false;
    }
    // A request failed after this probe was sent: its answer is older news than the failure.
    if (e.downs !== downsAtSend) return false;
    if (!e.up) {
      e.up = true;
      e.reason = null;
      e.since = new Date().toISOString();
      this.returned.emit(e.member.id);
    }
    // Counters for the status API, refreshed now and then, every probe while full (S3
    // stats are a listing: skip them).
    if (
      e.member.chunks &&
      !e.member.url.startsWith("s3:") &&
      (e.full || Date.now() - e.lastStats > STATS_INTERVAL_MS)
    ) {
      e.lastStats = Date.now();
      store.stats().then(
        (s) => this.#takeStats(e, s),
        () => {},
      );
    }
    return true;
  }

  #takeStats(e: Entry, s: StoreStats): void {
    const now = Date.now();
    if (e.sample && now > e.sample.at) {
      const rate = ((s.bytes - e.sample.bytes) * 1000) / (now - e.sample.at);
      const weight = 1 - Math.exp(-(now - e.sample.at) / FILL_RATE_TAU_MS);
      e.fillBytesPerSecond =
        e.fillBytesPerSecond === null ? rate : e.fillBytesPerSecond + weight * (rate - e.fillBytesPerSecond);
    }
    e.sample = { bytes: s.bytes, at: now };
    e.chunks = s.chunks;
    e.bytes = s.bytes;
    e.freeBytes = s.freeBytes;
    e.reclaimableBytes = s.reclaimableBytes ?? null;
    if (s.full !== undefined)
      this.#setFull(
        e,
        s.full,
        s.full ? `free space ${s.freeBytes ?? "?"} bytes is at its high-water mark` : null,
      );
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }
}
