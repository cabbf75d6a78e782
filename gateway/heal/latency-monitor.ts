/**
 * Foreground (VM) request latencies: a cumulative histogram for `/metrics`, and the
 * recent p99 that heal throttling compares against its baseline.
 */

/** Histogram bucket bounds in seconds (Prometheus `le`). */
export const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
] as const;

/** Samples kept for the recent p99: enough for a busy second, bounded memory. */
const RECENT_SAMPLES = 4096;

/** Records request latencies per operation. */
export class LatencyMonitor {
  readonly counts = new Map<string, number[]>();
  readonly sums = new Map<string, number>();
  /** Bytes moved per operation (reads and writes; 0 for the others), for throughput. */
  readonly bytes = new Map<string, number>();
  readonly #recent = new Float64Array(RECENT_SAMPLES);
  readonly #recentAt = new Float64Array(RECENT_SAMPLES);
  #next = 0;

  /** Records one request of `op` that took `seconds` and moved `bytes`. */
  record(op: string, seconds: number, bytes = 0): void {
    let c = this.counts.get(op);
    if (!c) {
      c = new Array(LATENCY_BUCKETS.length + 1).fill(0);
      this.counts.set(op, c);
    }
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    c[i]!++;
    this.sums.set(op, (this.sums.get(op) ?? 0) + seconds);
    this.bytes.set(op, (this.bytes.get(op) ?? 0) + bytes);
    this.#recent[this.#next] = seconds;
    this.#recentAt[this.#next] = performance.now();
    this.#next = (this.#next + 1) % RECENT_SAMPLES;
  }

  /** p99 in seconds of the requests that finished in the last `windowMs`, or null if none. */
  recentP99(windowMs = 1000): number | null {
    const since = performance.now() - windowMs;
    const xs: number[] = [];
    for (let i = 0; i < RECENT_SAMPLES; i++)
      if (this.#recentAt[i]! >= since && this.#recentAt[i]! > 0) xs.push(this.#recent[i]!);
    if (xs.length < 20) return null; // too few to say anything about a tail
    xs.sort((a, b) => a - b);
    return xs[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))]!;
  }
}
