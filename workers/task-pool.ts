/**
 * The small interface the rest of blockmend uses to run bulk work (hashing, copying,
 * verifying) off the event loop that serves VM I/O. Implementations: a piscina pool of
 * worker threads (`piscina-pool.ts`, used on Bun), a pool of web Workers
 * (`web-worker-pool.ts`, used on Deno) and a same-thread fallback (`inline-pool.ts`);
 * `create-task-pool.ts` picks the one for the running runtime.
 */
import type { TaskInput, TaskName, TaskOutput } from "./tasks.ts";

/** Options for one task run. */
export interface RunOptions {
  /** Buffers moved (not copied) into the worker; they are detached in the caller until the task returns them. */
  readonly transfer?: readonly ArrayBuffer[];
  /** Cancels the task if it has not finished. */
  readonly signal?: AbortSignal;
}

/** Runs named tasks. */
export interface TaskPool {
  /** Worker threads behind the pool (0 for the same-thread fallback). */
  readonly threads: number;
  run<K extends TaskName>(name: K, input: TaskInput<K>, options?: RunOptions): Promise<TaskOutput<K>>;
  close(): Promise<void>;
}
