/** Running one request on every member and going on as soon as enough have answered. */

/** Answers and errors by member id, as {@link firstQuorum} collected them. */
export interface QuorumOutcome<T> {
  readonly done: Map<string, T>;
  readonly errors: Map<string, unknown>;
}

/** Options of {@link firstQuorum}. */
export interface QuorumOptions {
  /** Resolve with what has arrived after this long. */
  readonly deadlineMs?: number;
  /** Receives a function that re-evaluates `enough` now (for conditions that depend on time). */
  readonly recheck?: (recheck: () => void) => void;
}

/**
 * Runs `task` on every member and resolves once `enough(done, errors)` holds or all have
 * settled (or the deadline passed). Stragglers keep running; their results are dropped.
 */
export function firstQuorum<M extends { readonly id: string }, T>(
  members: readonly M[],
  task: (m: M) => Promise<T>,
  enough: (done: ReadonlyMap<string, T>, errors: ReadonlyMap<string, unknown>) => boolean,
  options: QuorumOptions = {},
): Promise<QuorumOutcome<T>> {
  const deadlineMs = options.deadlineMs ?? Number.POSITIVE_INFINITY;
  const done = new Map<string, T>();
  const errors = new Map<string, unknown>();
  return new Promise((resolve) => {
    let settled = 0;
    let finished = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      resolve({ done: new Map(done), errors: new Map(errors) });
    };
    const check = () => {
      if (!finished && (enough(done, errors) || settled === members.length)) finish();
    };
    options.recheck?.(check);
    if (Number.isFinite(deadlineMs)) timer = setTimeout(finish, deadlineMs);
    check();
    for (const m of members) {
      task(m)
        .then(
          (v) => {
            if (!finished) done.set(m.id, v);
          },
          (e) => {
            if (!finished) errors.set(m.id, e);
          },
        )
        .finally(() => {
          settled++;
          check();
        });
    }
  });
}
