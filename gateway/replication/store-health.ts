/**
 * Health of every store as the gateway sees it: `in-sync`, `healing` or `down`, since
 * when and why. A probe runs about once a second; any failed or timed-out request
 * marks a store down at once. A store that answers again becomes `healing` (the heal
 * scheduler takes it from there) and `in-sync` once no image lags on it.
 */
import type { StoreMember } from "./store-set.ts";

/** The three states an operator sees. */
export type StoreState = "in-sync" | "healing" | "down";

/** What `GET /v1/stores` reports per store (counters kept current, never crawled). */
export interface StoreStatus {
  readonly id: string;
  readonly url: string;
  readonly state: StoreState;
  /** When the store entered its state (ISO 8601). */
  readonly since: string;
  /** Why it is down, or the last error; null when none. */
  readonly reason: string | null;
  readonly chunks: number | null;
  readonly bytes: number | null;
  /** Failed or timed-out requests and probes since the gateway started. */
  readonly failures: number;
}

/** Probe timing. */
export interface HealthOptions {
  readonly probeIntervalMs: number;
  /** A probe slower than this counts as a failure (a hung store must not look alive). */
  readonly probeTimeoutMs: number;
}

export const DEFAULT_HEALTH_OPTIONS: HealthOptions = { probeIntervalMs: 1000, probeTimeoutMs: 1000 };

/** A hash no store holds: probing `has` exercises the real request path of every backend. */
const PROBE_HASH = "f".repeat(64);

/** Rejects after `ms` unless `promise` settles first. */
function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

interface Entry {
  member: StoreMember;
  state: StoreState;
  since: string;
  reason: string | null;
  chunks: number | null;
  bytes: number | null;
  failures: number;
  lastStats: number;
}

/** Tracks store states and runs the probe loop. */
export class StoreHealth {
  readonly #entries = new Map<string, Entry>();
  readonly #options: HealthOptions;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** Called when a down store answers again (the heal scheduler listens). */
  onReturn: (id: string) => void = () => {};

  constructor(members: readonly StoreMember[], options: HealthOptions = DEFAULT_HEALTH_OPTIONS) {
    this.#options = options;
    const now = new Date().toISOString();
    for (const member of members) {
      this.#entries.set(member.id, {
        member,
        state: "in-sync",
        since: now,
        reason: null,
        chunks: null,
        bytes: null,
        failures: 0,
        lastStats: 0,
      });
    }
  }

  /** Every store's status, in configuration order. */
  all(): StoreStatus[] {
    return [...this.#entries.values()].map((e) => this.#status(e));
  }

  status(id: string): StoreStatus | undefined {
    const e = this.#entries.get(id);
    return e && this.#status(e);
  }

  #status(e: Entry): StoreStatus {
    const { member, state, since, reason, chunks, bytes, failures } = e;
    return { id: member.id, url: member.url, state, since, reason, chunks, bytes, failures };
  }

  isDown(id: string): boolean {
    return this.#entries.get(id)?.state === "down";
  }

  #set(e: Entry, state: StoreState, reason: string | null): void {
    if (e.state !== state) e.since = new Date().toISOString();
    e.state = state;
    e.reason = reason;
  }

  /** A request to the store failed or timed out: it is down from now on, until a probe succeeds. */
  reportFailure(id: string, reason: string): void {
    const e = this.#entries.get(id);
    if (!e) return;
    e.failures++;
    this.#set(e, "down", reason);
  }

  /** The heal scheduler found images lagging on a reachable store. */
  markHealing(id: string): void {
    const e = this.#entries.get(id);
    if (e && e.state !== "down") this.#set(e, "healing", null);
  }

  /** The heal scheduler found nothing lagging on a reachable store. */
  markInSync(id: string): void {
    const e = this.#entries.get(id);
    if (e && e.state !== "down") this.#set(e, "in-sync", null);
  }

  /** Starts probing every store about once per interval. */
  start(): void {
    const tick = async () => {
      await Promise.all([...this.#entries.values()].map((e) => this.#probe(e)));
      if (!this.#stopped) {
        this.#timer = setTimeout(tick, this.#options.probeIntervalMs);
        (this.#timer as { unref?: () => void }).unref?.();
      }
    };
    void tick();
  }

  /** Probes one store now; resolves true when it answered. */
  async #probe(e: Entry): Promise<boolean> {
    const { store } = e.member;
    try {
      await withDeadline(store.has([PROBE_HASH]), this.#options.probeTimeoutMs, `probe of ${e.member.id}`);
    } catch (err) {
      e.failures++;
      this.#set(e, "down", (err as Error).message);
      return false;
    }
    if (e.state === "down") {
      this.#set(e, "healing", null);
      this.onReturn(e.member.id);
    }
    // Counters for the status API, refreshed now and then (S3 stats are a listing: skip them).
    if (store.capabilities.chunks && !e.member.url.startsWith("s3:") && Date.now() - e.lastStats > 5000) {
      e.lastStats = Date.now();
      store.stats().then(
        (s) => {
          e.chunks = s.chunks;
          e.bytes = s.bytes;
        },
        () => {},
      );
    }
    return true;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }
}
