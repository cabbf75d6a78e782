/**
 * An image's commits, one at a time: a commit asked for while one runs is queued behind
 * it, and every caller that asks while that one is still queued shares it (a flush waits
 * for at most the running commit and one more). Other head changes of the image (snapshot,
 * resize) run in the same line, so they never interleave with a commit.
 */
export class CommitQueue {
  readonly #commit: () => Promise<void>;
  #running: Promise<void> = Promise.resolve();
  #queued: Promise<void> | null = null;

  /** @param commit commits what is dirty now (called when a queued commit's turn comes). */
  constructor(commit: () => Promise<void>) {
    this.#commit = commit;
  }

  /** True while a commit waits for its turn (asking again shares it). */
  get queued(): boolean {
    return this.#queued !== null;
  }

  /** Queues a commit after the running one; concurrent callers share the queued one. */
  commit(): Promise<void> {
    if (this.#queued) return this.#queued;
    const queued = this.#running
      .catch(() => {})
      .then(() => {
        this.#queued = null;
        return this.#commit();
      });
    this.#queued = queued;
    this.#running = queued;
    return queued;
  }

  /** Runs `change` after everything queued, in the same line as commits. */
  serialized<T>(change: () => Promise<T>): Promise<T> {
    const run = this.#running.catch(() => {}).then(change);
    this.#running = run.then(
      () => {},
      () => {},
    );
    return run;
  }
}
