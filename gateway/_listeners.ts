/** A typed list of listeners: how a lower layer tells upper ones without calling up. */
export class Listeners<A extends unknown[]> {
  readonly #fns = new Set<(...args: A) => void>();

  /** Adds `fn`; returns a function that removes it. */
  add(fn: (...args: A) => void): () => void {
    this.#fns.add(fn);
    return () => this.#fns.delete(fn);
  }

  /** Calls every listener; one that throws is logged and does not stop the others. */
  emit(...args: A): void {
    for (const fn of this.#fns) {
      try {
        fn(...args);
      } catch (err) {
        console.error("blockmend: a listener failed:", err);
      }
    }
  }
}
