/**
 * Worker pool: bulk CPU work (hashing, later copying and verifying chunks) runs here,
 * never on the event loop that serves VM I/O.
 */
export { type CreateTaskPoolOptions, createTaskPool } from "./create-task-pool.ts";
export { hashBlocks } from "./hash-task.ts";
export { InlinePool } from "./inline-pool.ts";
export { PiscinaPool } from "./piscina-pool.ts";
export type { RunOptions, TaskPool } from "./task-pool.ts";
export type { TaskInput, TaskName, TaskOutput } from "./tasks.ts";
export { WebWorkerPool } from "./web-worker-pool.ts";
