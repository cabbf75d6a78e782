/**
 * The worker pool for this runtime: piscina's worker threads on Bun, web Workers on Deno.
 * Deno's `node:worker_threads` moves every message through a slow serializer (about
 * 100 ms per MiB, transfer lists included, measured with `bench/pool.ts`), which made a
 * Deno-run gateway 40x slower than a Bun-run one; its web Worker transfers the same
 * buffer in well under a millisecond.
 */
import { runtimeKey } from "../runtime/runtime-key.ts";
import { PiscinaPool } from "./piscina-pool.ts";
import type { TaskPool } from "./task-pool.ts";
import { WebWorkerPool } from "./web-worker-pool.ts";

/** Options for {@link createTaskPool}. */
export interface CreateTaskPoolOptions {
  /** Worker threads; default: one per core. */
  readonly threads?: number;
}

/**
 * Creates the TaskPool that moves data fastest on the running runtime.
 *
 * @example
 * const pool = createTaskPool({ threads: 2 });
 */
export function createTaskPool(options: CreateTaskPoolOptions = {}): TaskPool {
  return runtimeKey() === "deno" ? new WebWorkerPool(options) : new PiscinaPool(options);
}
