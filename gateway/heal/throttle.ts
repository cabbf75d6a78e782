/**
 * The heal throttle: one byte rate for all heal and repair copies of a gateway, adapted
 * four times a second to the VM I/O it must not starve. It halves when the foreground p99
 * rises above 1.25x the baseline measured while no heal ran, grows by a quarter otherwise,
 * and doubles when there is no foreground load (idle: heal fast), between a floor and a
 * ceiling that `PUT /v1/heal/limits` changes live.
 */
import type { LatencyMonitor } from "./latency-monitor.ts";
import { RateLimiter } from "./rate-limiter.ts";

/** Heal throttle settings. */
export interface HealLimits {
  rateBytesPerSecond: number;
  floorBytesPerSecond: number;
  ceilingBytesPerSecond: number;
  /** Chunk batches copied at once. */
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

/** The smallest rate accepted for any limit: below it a heal of one chunk takes seconds. */
export const MIN_RATE = 64 * 1024;
/** The largest copy concurrency: beyond, batches only queue at the stores. */
export const MAX_CONCURRENCY = 64;
/** Foreground p99 above this multiple of the idle baseline halves the heal rate. */
const BACKOFF_FACTOR = 1.25;

/** Validates a change of limits: unknown keys, wrong types and absurd values are a RangeError naming the field. */
export function checkLimits(change: unknown, current: HealLimits): HealLimits {
  if (typeof change !== "object" || change === null || Array.isArray(change))
    throw new TypeError(`Heal limits must be a JSON object with any of: ${Object.keys(current).join(", ")}`);
  const next = { ...current };
  for (const [key, value] of Object.entries(change)) {
    if (!(key in current))
      throw new RangeError(`Unknown heal limit "${key}" (known: ${Object.keys(current).join(", ")})`);
    if (typeof value !== "number" || !Number.isFinite(value))
      throw new RangeError(`Heal limit ${key} must be a number; got ${JSON.stringify(value)}`);
    if (key === "concurrency") {
      if (!Number.isInteger(value) || value < 1 || value > MAX_CONCURRENCY)
        throw new RangeError(
          `Heal limit concurrency must be an integer from 1 to ${MAX_CONCURRENCY}; got ${value}`,
        );
    } else if (value < MIN_RATE) {
      throw new RangeError(`Heal limit ${key} must be at least ${MIN_RATE} bytes per second; got ${value}`);
    }
    (next as Record<string, number>)[key] = value;
  }
  if (next.floorBytesPerSecond > next.ceilingBytesPerSecond)
    throw new RangeError("Heal limit floorBytesPerSecond is above ceilingBytesPerSecond");
  return next;
}

/** The live rate and limits; `start` adapts the rate while `active()` says a heal runs. */
export class HealThrottle {
  readonly rate: RateLimiter;
  readonly #latency: LatencyMonitor;
  readonly #limits: HealLimits;
  #baselineP99: number | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Background jobs besides heals (a GC sweep) that spend this rate now. */
  #others = 0;

  constructor(latency: LatencyMonitor, limits: HealLimits = { ...DEFAULT_HEAL_LIMITS }) {
    this.#latency = latency;
    this.#limits = { ...limits };
    this.rate = new RateLimiter(limits.rateBytesPerSecond);
  }

  limits(): HealLimits {
    return { ...this.#limits, rateBytesPerSecond: this.rate.rate };
  }

  /** Changes limits live; throws a RangeError or TypeError for invalid ones. */
  setLimits(change: unknown): HealLimits {
    const next = checkLimits(change, this.limits());
    Object.assign(this.#limits, next);
    this.rate.rate = Math.min(
      next.ceilingBytesPerSecond,
      Math.max(next.floorBytesPerSecond, next.rateBytesPerSecond),
    );
    return this.limits();
  }

  /**
   * Runs `job` (background work besides heals, such as a GC sweep) as a user of this rate:
   * while it runs, the rate adapts to VM latency as during a heal.
   */
  async sharedBy<T>(job: () => Promise<T>): Promise<T> {
    this.#others++;
    try {
      return await job();
    } finally {
      this.#others--;
    }
  }

  start(active: () => boolean): void {
    this.#timer = setInterval(() => this.#adapt(active() || this.#others > 0), 250);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #adapt(active: boolean): void {
    const p99 = this.#latency.recentP99(500);
    const { floorBytesPerSecond: floor, ceilingBytesPerSecond: ceiling } = this.#limits;
    if (!active) {
      if (p99 !== null)
        this.#baselineP99 = this.#baselineP99 === null ? p99 : this.#baselineP99 * 0.8 + p99 * 0.2;
      return;
    }
    if (p99 === null) this.rate.rate = Math.min(ceiling, this.rate.rate * 2);
    else if (this.#baselineP99 !== null && p99 > this.#baselineP99 * BACKOFF_FACTOR)
      this.rate.rate = Math.max(floor, this.rate.rate / 2);
    else this.rate.rate = Math.min(ceiling, this.rate.rate * 1.25);
  }
}
