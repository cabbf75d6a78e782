/**
 * The dashboard chart's data, kept by every gateway from its start at almost no cost (no
 * I/O, a few counters read every SAMPLE_MS): VM I/O latency (p50 and p99, from the change
 * of the NBD latency histogram over the interval), VM read and write throughput, and the
 * throughput of heals this gateway runs; plus marks: a store went down or came back (as
 * this gateway sees it), a heal on this gateway started or ended. The last HISTORY_MS
 * are kept, so a page that connects (or reconnects after a restart) gets the recent
 * minutes in its first message and needs no history of its own.
 */
import { Listeners } from "../_listeners.ts";
import { LATENCY_BUCKETS, type LatencyMonitor } from "../heal/latency-monitor.ts";

/** One point of the chart. Rates are per second over the interval before `t`. */
export interface IoSample {
  /** Milliseconds since the epoch (the end of the interval). */
  readonly t: number;
  /** Median and 99th percentile VM request latency in ms, or null without requests. */
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly requestsPerSecond: number;
  readonly readBytesPerSecond: number;
  readonly writeBytesPerSecond: number;
  /** Bytes copied per second by heals (and repairs) this gateway runs. */
  readonly healBytesPerSecond: number;
}

/** Something that happened, drawn as a vertical line on the chart. */
export interface TimelineMark {
  readonly t: number;
  readonly kind: "store-down" | "store-up" | "heal-start" | "heal-end";
  readonly store: string;
  /** In words, for the list under the chart. */
  readonly text: string;
}

/** What the timeline reads; all of it is in memory on the gateway. */
export interface TimelineSources {
  readonly latency: LatencyMonitor;
  /** Bytes copied by heals on this gateway since it started (a counter). */
  readonly healedBytes: () => number;
  /** The stores a heal runs on here now. */
  readonly healing: () => Iterable<string>;
  /** Store reachability changes as this gateway sees them. */
  readonly wentDown: Listeners<[id: string, reason: string]>;
  readonly returned: Listeners<[id: string]>;
}

/** One sample every 2 s: a smooth enough line, 300 points for 10 minutes. */
export const SAMPLE_MS = 2000;
/** How far back the chart reaches ("the last minutes"). */
export const HISTORY_MS = 10 * 60 * 1000;
/** Marks kept: a flapping store must not grow the snapshot without bound. */
const MAX_MARKS = 200;

/** Counters at one instant, to subtract from the next. */
interface Totals {
  readonly at: number;
  readonly buckets: number[];
  readonly readBytes: number;
  readonly writeBytes: number;
  readonly healed: number;
}

/**
 * The `q` quantile (0..1) of the requests counted in `buckets` (one count per
 * LATENCY_BUCKETS bound, then +Inf), in seconds, interpolated linearly within the bucket
 * as Prometheus' histogram_quantile does; null when there is no request. A quantile in the
 * +Inf bucket answers the largest finite bound.
 */
export function histogramQuantile(q: number, buckets: readonly number[]): number | null {
  const total = buckets.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    const n = buckets[i]!;
    if (n > 0 && seen + n >= rank) {
      if (i >= LATENCY_BUCKETS.length) return LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]!;
      const lo = i === 0 ? 0 : LATENCY_BUCKETS[i - 1]!;
      const hi = LATENCY_BUCKETS[i]!;
      return lo + (hi - lo) * ((rank - seen) / n);
    }
    seen += n;
  }
  return LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]!;
}

/** Samples and marks of the last HISTORY_MS; listeners hear each new one. */
export class IoTimeline {
  /** A new sample was taken. */
  readonly sampled = new Listeners<[sample: IoSample]>();
  /** A new mark was recorded. */
  readonly marked = new Listeners<[mark: TimelineMark]>();
  readonly #s: TimelineSources;
  readonly #samples: IoSample[] = [];
  readonly #marks: TimelineMark[] = [];
  readonly #now: () => number;
  #last: Totals;
  #healingNow = new Set<string>();
  #timer: ReturnType<typeof setInterval> | undefined;
  readonly #unlisten: (() => void)[] = [];

  /** @param now the clock (tests pass their own). */
  constructor(sources: TimelineSources, now: () => number = Date.now) {
    this.#s = sources;
    this.#now = now;
    this.#last = this.#totals();
  }

  /** Starts sampling every SAMPLE_MS and listening for store changes. */
  start(): void {
    this.#unlisten.push(
      this.#s.wentDown.add((id, reason) => this.#mark("store-down", id, `store ${id} down: ${reason}`)),
      this.#s.returned.add((id) => this.#mark("store-up", id, `store ${id} answers again`)),
    );
    this.#timer = setInterval(() => this.sample(), SAMPLE_MS);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    clearInterval(this.#timer);
    for (const off of this.#unlisten.splice(0)) off();
  }

  /** The samples of the last HISTORY_MS, oldest first. */
  samples(): IoSample[] {
    return [...this.#samples];
  }

  /** The marks of the last HISTORY_MS, oldest first. */
  marks(): TimelineMark[] {
    return [...this.#marks];
  }

  /** Takes a sample now (the timer calls it; tests too). */
  sample(): IoSample {
    const now = this.#totals();
    const prev = this.#last;
    this.#last = now;
    const seconds = Math.max(0.001, (now.at - prev.at) / 1000);
    const delta = now.buckets.map((n, i) => n - (prev.buckets[i] ?? 0));
    const requests = delta.reduce((a, b) => a + b, 0);
    const ms = (s: number | null) => (s === null ? null : Math.round(s * 1e6) / 1e3);
    const sample: IoSample = {
      t: now.at,
      p50Ms: ms(histogramQuantile(0.5, delta)),
      p99Ms: ms(histogramQuantile(0.99, delta)),
      requestsPerSecond: Math.round(requests / seconds),
      readBytesPerSecond: Math.round((now.readBytes - prev.readBytes) / seconds),
      writeBytesPerSecond: Math.round((now.writeBytes - prev.writeBytes) / seconds),
      healBytesPerSecond: Math.round(Math.max(0, now.healed - prev.healed) / seconds),
    };
    this.#samples.push(sample);
    this.#trim();
    this.#healMarks();
    this.sampled.emit(sample);
    return sample;
  }

  /** Heal start and end marks: the set of stores healed here, compared with the last sample's. */
  #healMarks(): void {
    const now = new Set(this.#s.healing());
    for (const id of now)
      if (!this.#healingNow.has(id)) this.#mark("heal-start", id, `heal of store ${id} started`);
    for (const id of this.#healingNow)
      if (!now.has(id)) this.#mark("heal-end", id, `heal of store ${id} ended`);
    this.#healingNow = now;
  }

  #mark(kind: TimelineMark["kind"], store: string, text: string): void {
    const mark: TimelineMark = { t: this.#now(), kind, store, text };
    this.#marks.push(mark);
    this.#trim();
    this.marked.emit(mark);
  }

  #trim(): void {
    const since = this.#now() - HISTORY_MS;
    while (this.#samples.length > 0 && this.#samples[0]!.t < since) this.#samples.shift();
    while (this.#marks.length > 0 && (this.#marks[0]!.t < since || this.#marks.length > MAX_MARKS))
      this.#marks.shift();
  }

  #totals(): Totals {
    const buckets = new Array<number>(LATENCY_BUCKETS.length + 1).fill(0);
    for (const counts of this.#s.latency.counts.values())
      for (let i = 0; i < counts.length; i++) buckets[i]! += counts[i]!;
    return {
      at: this.#now(),
      buckets,
      readBytes: this.#s.latency.bytes.get("read") ?? 0,
      writeBytes: this.#s.latency.bytes.get("write") ?? 0,
      healed: this.#s.healedBytes(),
    };
  }
}
