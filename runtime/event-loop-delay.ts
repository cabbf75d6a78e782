/**
 * How late the event loop runs timers: the stall every request on this thread waits
 * behind (an NBD read, a heartbeat, a lease renewal). A timer asks to run every
 * `intervalMs`; how much later than that it runs is one sample. Hand-written because
 * `perf_hooks.monitorEventLoopDelay` does not measure it on Bun 1.4 or Deno 2 (a 50 ms
 * busy loop reported a maximum under 1 ms on both).
 */

/** Histogram bucket bounds in seconds (Prometheus `le`). */
export const LOOP_DELAY_BUCKETS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5] as const;

/** Samples the event loop's delay in the background. */
export class EventLoopDelay {
  /** Samples per bucket of {@link LOOP_DELAY_BUCKETS}, then one for larger delays. */
  readonly counts = new Array<number>(LOOP_DELAY_BUCKETS.length + 1).fill(0);
  /** Sum of the delays sampled, in seconds. */
  sum = 0;
  /** The longest delay sampled, in seconds. */
  max = 0;
  readonly #intervalMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(intervalMs = 20) {
    this.#intervalMs = intervalMs;
  }

  /** Samples this many times so far. */
  get count(): number {
    return this.counts.reduce((a, b) => a + b, 0);
  }

  /** Records one delay (exposed for tests; the timer calls it). */
  record(seconds: number): void {
    let i = 0;
    while (i < LOOP_DELAY_BUCKETS.length && seconds > LOOP_DELAY_BUCKETS[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    if (seconds > this.max) this.max = seconds;
  }

  start(): void {
    if (this.#timer !== undefined) return;
    const schedule = () => {
      const expected = performance.now() + this.#intervalMs;
      this.#timer = setTimeout(() => {
        this.record(Math.max(0, performance.now() - expected) / 1000);
        schedule();
      }, this.#intervalMs);
      (this.#timer as { unref?: () => void }).unref?.();
    };
    schedule();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
