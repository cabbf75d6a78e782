/** TaskPool over piscina worker threads: the default for the gateway and the benchmarks. */
import { availableParallelism } from "node:os";
import { Piscina } from "piscina";
import type { RunOptions, TaskPool } from "./task-pool.ts";
import type { TaskInput, TaskName, TaskOutput } from "./tasks.ts";

/** Options for {@link PiscinaPool}. */
export interface PiscinaPoolOptions {
  /** Worker threads; default: one per core. */
  readonly threads?: number;
}

/** A pool of worker threads running the tasks of `tasks.ts`. */
export class PiscinaPool implements TaskPool {
  readonly threads: number;
  readonly #piscina: Piscina;

  constructor(options: PiscinaPoolOptions = {}) {
    this.threads = options.threads ?? availableParallelism();
    this.#piscina = new Piscina({
      filename: new URL("./worker-entry.ts", import.meta.url).href,
      minThreads: this.threads,
      maxThreads: this.threads,
      // Tasks are short CPU bursts; queue rather than oversubscribe the cores.
      concurrentTasksPerWorker: 1,
    });
  }

  run<K extends TaskName>(name: K, input: TaskInput<K>, options: RunOptions = {}): Promise<TaskOutput<K>> {
    return this.#piscina.run(input, {
      name,
      transferList: options.transfer as never,
      signal: options.signal,
    }) as Promise<TaskOutput<K>>;
  }

  async close(): Promise<void> {
    await this.#piscina.destroy();
  }
}
