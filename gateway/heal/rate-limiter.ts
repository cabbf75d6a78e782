/** A token bucket over bytes whose rate can change while it runs (heal throttling). */

/** Limits callers to `rate` bytes per second on average, with one second of burst. */
export class RateLimiter {
  #rate: number;
  #tokens: number;
  #last = performance.now();

  constructor(rateBytesPerSecond: number) {
    this.#rate = rateBytesPerSecond;
    this.#tokens = rateBytesPerSecond;
  }

  get rate(): number {
    return this.#rate;
  }

  set rate(bytesPerSecond: number) {
    this.#rate = Math.max(1, bytesPerSecond);
    this.#tokens = Math.min(this.#tokens, this.#rate);
  }

  /** Waits until `bytes` may be spent. */
  async take(bytes: number): Promise<void> {
    for (;;) {
      const now = performance.now();
      this.#tokens = Math.min(this.#rate, this.#tokens + ((now - this.#last) / 1000) * this.#rate);
      this.#last = now;
      if (this.#tokens >= Math.min(bytes, this.#rate)) {
        this.#tokens -= bytes;
        return;
      }
      const waitMs = ((Math.min(bytes, this.#rate) - this.#tokens) / this.#rate) * 1000;
      await new Promise((r) => setTimeout(r, Math.min(Math.max(waitMs, 1), 250)));
    }
  }
}
