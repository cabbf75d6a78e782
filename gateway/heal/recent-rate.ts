/**
 * A heal's copy rate now: bytes copied over the last few seconds. The ETA divides what is
 * left by it; an average since the heal began would count the planning (the walk of what the
 * store lacks) and every change of the throttle since, and be wrong by half or more.
 */

/** How far back the rate looks. */
const WINDOW_MS = 10_000;
/** The shortest span a rate is taken over (one batch alone says little). */
const MIN_SPAN_MS = 1000;

/** Bytes per second over the last ten seconds of copies. */
export class RecentRate {
  readonly #samples: { at: number; bytes: number }[] = [];
  #first = -1;

  /** Records `bytes` copied at `now` (monotonic ms). */
  add(bytes: number, now = performance.now()): void {
    if (this.#first < 0) this.#first = now;
    this.#samples.push({ at: now, bytes });
    while (this.#samples.length && this.#samples[0]!.at < now - WINDOW_MS) this.#samples.shift();
  }

  /** Bytes per second over the window (from the first copy while younger); 0 before any copy. */
  rate(now = performance.now()): number {
    if (this.#first < 0) return 0;
    const from = now - WINDOW_MS;
    let bytes = 0;
    for (const s of this.#samples) if (s.at >= from) bytes += s.bytes;
    const span = Math.max(MIN_SPAN_MS, now - Math.max(from, this.#first));
    return (bytes / span) * 1000;
  }
}
