/**
 * The heal throttle: one byte rate for all heal and repair copies of a gateway, set twice a
 * second from the VM I/O it must not starve (after Ceph's mClock idea of reserving the
 * client's service and giving background work the rest, here in latency terms). The VM's
 * p99 over the last second is compared with its baseline: the median of the per-second p99s
 * seen while the cluster was steady (no heal running here, no store behind or down), so a
 * store's absence, when writes reach one replica and are faster, or hang, never sets the
 * bar. Above 1.3x the baseline the rate falls in proportion to the overshoot (at most by
 * half a step); below 1.1x it grows by a quarter; in between it holds, so the noise of a
 * shared machine does not walk it down to the floor. With no VM I/O it doubles (idle: heal
 * fast). It grows only while the copies use at least half of it: a heal that is still
 * planning, or copies less than it may, would otherwise take its allowance up and then
 * start with a burst at the grown rate (measured: the limit grew from 32 to 64-73 MiB/s
 * while a heal walked what was missing, its first copies ran at 85-111 MB/s, the VM's p99
 * jumped and the rate fell to 8-13 MiB/s; the ETA's 10 s window carried the burst).
 * Between a floor and a ceiling that `PUT /v1/heal/limits` changes live.
 *
 * Tried and dropped (bench/heal.ts, docs/benchmarks.md): probing the VM's p99 without
 * copies by holding them one second in ten, so the baseline follows the VM's drift. Heals
 * ran faster, but the VMs kept only 62-66 % of their IOPS in two of three rounds.
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
/** VM p99 above this multiple of the steady baseline makes the heal give way (the goal is 1.5x). */
export const TARGET_RATIO = 1.3;
/** VM p99 below this multiple of the baseline lets the heal take more; between the two it holds. */
export const GROW_RATIO = 1.1;
/** How often the rate adapts, and the window of VM latencies each step looks at. */
const ADAPT_MS = 500;
const WINDOW_MS = 1000;
/** The rate grows only if the copies of the last step spent at least this share of it. */
export const USED_TO_GROW = 0.5;
/** Steady windows the baseline is the median of (20 s of steady VM I/O). */
const BASELINE_WINDOWS = 40;

/** The VM's p99 while the cluster is steady: the median of the last windows' p99s. */
export class LatencyBaseline {
  readonly #windows: number[] = [];

  add(p99: number): void {
    this.#windows.push(p99);
    if (this.#windows.length > BASELINE_WINDOWS) this.#windows.shift();
  }

  /** Seconds, or null before any steady window with VM I/O. */
  get value(): number | null {
    if (this.#windows.length === 0) return null;
    const s = [...this.#windows].sort((a, b) => a - b);
    return s[Math.floor((s.length - 1) / 2)]!;
  }
}

/**
 * One step of the heal rate: `p99` is the VM's over the last window (null: no VM I/O),
 * `baseline` its steady p99 (null: never seen steady, so the rate only grows slowly).
 * `used`: the copies spent enough of the rate to let it grow (it may still fall).
 */
export function nextRate(
  rate: number,
  p99: number | null,
  baseline: number | null,
  limits: Pick<HealLimits, "floorBytesPerSecond" | "ceilingBytesPerSecond">,
  used = true,
): number {
  const next = stepRate(rate, p99, baseline, limits);
  return used
    ? next
    : Math.min(next, Math.min(limits.ceilingBytesPerSecond, Math.max(limits.floorBytesPerSecond, rate)));
}

function stepRate(
  rate: number,
  p99: number | null,
  baseline: number | null,
  limits: Pick<HealLimits, "floorBytesPerSecond" | "ceilingBytesPerSecond">,
): number {
  const { floorBytesPerSecond: floor, ceilingBytesPerSecond: ceiling } = limits;
  const clamp = (r: number) => Math.min(ceiling, Math.max(floor, r));
  if (p99 === null) return clamp(rate * 2);
  if (baseline === null || baseline <= 0) return clamp(rate * 1.1);
  const ratio = p99 / baseline;
  if (ratio > TARGET_RATIO) return clamp(rate * Math.max(0.5, TARGET_RATIO / ratio));
  if (ratio < GROW_RATIO) return clamp(rate * 1.25);
  return clamp(rate);
}

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
  readonly #baseline = new LatencyBaseline();
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Background jobs besides heals (a GC sweep) that spend this rate now. */
  #others = 0;
  /** The limiter's spent bytes at the last step. */
  #spentAtStep = 0;

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

  /**
   * Adapts the rate while `active()` (a heal runs here) or a job shares it; the baseline
   * learns only while `steady()` (nothing behind, nothing down) and nothing runs.
   */
  start(active: () => boolean, steady: () => boolean = () => true): void {
    this.#timer = setInterval(() => {
      const busy = active() || this.#others > 0;
      const spent = this.rate.spent;
      const used = spent - this.#spentAtStep >= (USED_TO_GROW * this.rate.rate * ADAPT_MS) / 1000;
      this.#spentAtStep = spent;
      this.adapt(busy, !busy && steady(), this.#latency.recentP99(WINDOW_MS), used);
    }, ADAPT_MS);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /**
   * One step (the timer's; tests call it): adapt while `busy`, learn the baseline while
   * `steady`; `used`: the copies spent enough of the rate for it to grow.
   */
  adapt(busy: boolean, steady: boolean, p99: number | null, used = true): void {
    if (!busy) {
      if (steady && p99 !== null) this.#baseline.add(p99);
      return;
    }
    this.rate.rate = nextRate(this.rate.rate, p99, this.#baseline.value, this.#limits, used);
  }

  /** The VM's steady p99 in seconds the rate is set against (null: not seen yet). */
  get baselineP99(): number | null {
    return this.#baseline.value;
  }
}
