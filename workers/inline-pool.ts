/** Same-thread TaskPool: runs tasks on the caller's thread. For tests and tiny setups. */
import type { RunOptions, TaskPool } from "./task-pool.ts";
import { type TaskInput, type TaskName, type TaskOutput, tasks } from "./tasks.ts";

/** A TaskPool without threads. */
export class InlinePool implements TaskPool {
  readonly threads = 0;

  async run<K extends TaskName>(
    name: K,
    input: TaskInput<K>,
    options: RunOptions = {},
  ): Promise<TaskOutput<K>> {
    options.signal?.throwIfAborted();
    const task = tasks[name] as (input: TaskInput<K>) => TaskOutput<K> | Promise<TaskOutput<K>>;
    return await task(input);
  }

  async close(): Promise<void> {}
}
