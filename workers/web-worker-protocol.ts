/**
 * Messages between {@link import("./web-worker-pool.ts").WebWorkerPool} and its workers
 * (`web-worker-entry.ts`). One task per worker at a time; buffers move by transfer both ways.
 */
import type { TaskErrorData } from "./_task-error.ts";
import type { TaskName } from "./tasks.ts";

/** Pool to worker: run task `name` on `input`, answer with the same `id`. */
export interface TaskRequest {
  readonly id: number;
  readonly name: TaskName;
  readonly input: unknown;
}

/** Worker to pool: the first message, once the task modules are loaded. */
export interface WorkerReady {
  readonly ready: true;
}

/** Worker to pool: the result of request `id`, or the error it threw. */
export type TaskReply =
  | { readonly id: number; readonly output: unknown }
  | { readonly id: number; readonly error: TaskErrorData };

/** Anything a worker posts. */
export type WorkerMessage = WorkerReady | TaskReply;
