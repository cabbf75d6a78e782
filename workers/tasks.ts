/**
 * The registry of tasks a {@link import("./task-pool.ts").TaskPool} runs. Each task is a plain
 * named function over plain data; the worker entry exports the same names.
 */
import { hashBlocks } from "./hash-task.ts";

/** Every task by name. */
export const tasks = { hashBlocks } as const;

/** Names of the registered tasks. */
export type TaskName = keyof typeof tasks;
/** Input type of task `K`. */
export type TaskInput<K extends TaskName> = Parameters<(typeof tasks)[K]>[0];
/** Output type of task `K`. */
export type TaskOutput<K extends TaskName> = Awaited<ReturnType<(typeof tasks)[K]>>;
