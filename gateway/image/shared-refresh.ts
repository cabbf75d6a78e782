/**
 * A refresh that concurrent callers share (an image's head reads before reads, the owner's
 * lease confirmations): a caller joins the run in progress if it started no earlier than
 * `slackMs` before the caller arrived, so what it learns is at least that recent; otherwise
 * the caller starts a new run. Monotonic clock.
 */
export class SharedRefresh {
  readonly #slackMs: number;
  #running: { started: number; done: Promise<void> } | null = null;

  /** @param slackMs how much older than its caller a shared run may be (0: started after the caller arrived). */
  constructor(slackMs = 0) {
    this.#slackMs = slackMs;
  }

  /** Runs `refresh` (passing its monotonic start time) or joins a recent enough run of it. */
  async run(refresh: (started: number) => Promise<void>): Promise<void> {
    const arrived = performance.now();
    const running = this.#running;
    if (running && running.started >= arrived - this.#slackMs) return running.done;
    const started = performance.now();
    const done = refresh(started);
    this.#running = { started, done };
    try {
      await done;
    } finally {
      if (this.#running?.done === done) this.#running = null;
    }
  }
}
