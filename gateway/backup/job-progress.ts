/** How a backup operation reports its progress to the job running it. */
export interface JobProgress {
  /** What it is doing now ("locking", "planning", "uploading", ...). */
  phase(name: string): void;
  /** Bytes the transfer phase will move (an estimate until it ends). */
  total(bytes: number): void;
  /** Bytes moved since the last call. */
  advance(bytes: number): void;
}

/** Progress that goes nowhere (tests, library use). */
export const NO_PROGRESS: JobProgress = { phase() {}, total() {}, advance() {} };
