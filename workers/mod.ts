/**
 * Worker pool: bulk CPU work (hashing, later copying and verifying chunks) runs here,
 * never on the event loop that serves VM I/O.
 */
export { hashBlocks } from "./hash-task.ts";
export { InlinePool } from "./inline-pool.ts";
export { PiscinaPool } from "./piscina-pool.ts";
export type { RunOptions, TaskPool } from "./task-pool.ts";
export type { TaskInput, TaskName, TaskOutput } from "./tasks.ts";
