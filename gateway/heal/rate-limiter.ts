/**
 * A token bucket over bytes whose rate can change while it runs (heal throttling). Callers
 * are served in the order they asked: without that, single-chunk read-repairs (64 KiB each)
 * took every token as soon as there was one, and a heal's 4 MiB batch, which waits for a
 * fuller bucket, never ran (measured: a full heal copied nothing for 20 s at 16 MB/s while
 * a VM's reads queued repairs; bench/heal-limit.ts).
 */

/** Limits callers to `rate` bytes per second on average, with one second of burst, first come first served. */
export class RateLimiter {
  #rate: number;
  #tokens: number;
  #last = performance.now();
  #spent = 0;
  /** The callers' turns: each waits for the one before it. */
  #queue: Promise<void> = Promise.resolve();

  constructor(rateBytesPerSecond: number) {
    this.#rate = rateBytesPerSecond;
    this.#tokens = rateBytesPerSecond;
  }

  /** Bytes granted since the limiter was made. */
  get spent(): number {
    return this.#spent;
  }

  get rate(): number {
    return this.#rate;
  }

  set rate(bytesPerSecond: number) {
    this.#rate = Math.max(1, bytesPerSecond);
    this.#tokens = Math.min(this.#tokens, this.#rate);
  }

  /** Waits until `bytes` may be spent, after every earlier caller. */
  take(bytes: number): Promise<void> {
    const turn = this.#queue.then(() => this.#spend(bytes));
    this.#queue = turn;
    return turn;
  }

  async #spend(bytes: number): Promise<void> {
    for (;;) {
      const now = performance.now();
      this.#tokens = Math.min(this.#rate, this.#tokens + ((now - this.#last) / 1000) * this.#rate);
      this.#last = now;
      if (this.#tokens >= Math.min(bytes, this.#rate)) {
        this.#tokens -= bytes;
        this.#spent += bytes;
        return;
      }
      const waitMs = ((Math.min(bytes, this.#rate) - this.#tokens) / this.#rate) * 1000;
      await new Promise((r) => setTimeout(r, Math.min(Math.max(waitMs, 1), 250)));
    }
  }
}
