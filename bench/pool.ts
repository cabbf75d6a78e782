/**
 * Worker pool micro-benchmark: round trips of one 1 MiB hashBlocks task (64 KiB blocks,
 * the buffer transferred in and back), one task in flight, on whichever runtime runs this
 * file. Prints the median round trip and the throughput it implies.
 *
 *   bun bench/pool.ts [--rounds 200]
 *   deno run -A bench/pool.ts [--rounds 200]
 *
 * Every pool runs with 2 threads; "default" is the one `createTaskPool` picks for the runtime.
 */

import { runtimeKey } from "../runtime/runtime-key.ts";
import { createTaskPool } from "../workers/create-task-pool.ts";
import { InlinePool } from "../workers/inline-pool.ts";
import { PiscinaPool } from "../workers/piscina-pool.ts";
import type { TaskPool } from "../workers/task-pool.ts";
import { WebWorkerPool } from "../workers/web-worker-pool.ts";

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1]! : dflt;
};
const ROUNDS = Number(opt("--rounds", "200"));
const BYTES = 1024 * 1024;

async function roundTrips(pool: TaskPool, rounds: number): Promise<number[]> {
  let data = new Uint8Array(BYTES);
  crypto.getRandomValues(data.subarray(0, 65536));
  const times: number[] = [];
  for (let i = 0; i < rounds + 10; i++) {
    const t = performance.now();
    const out = await pool.run("hashBlocks", { data, blockSize: 65536 }, { transfer: [data.buffer] });
    data = out.data as Uint8Array<ArrayBuffer>;
    if (i >= 10) times.push(performance.now() - t);
  }
  return times.sort((a, b) => a - b);
}

const runtime = runtimeKey();
const pools: [string, () => TaskPool][] = [
  ["inline", () => new InlinePool()],
  ["piscina", () => new PiscinaPool({ threads: 2 })],
  ["web-worker", () => new WebWorkerPool({ threads: 2 })],
  ["default", () => createTaskPool({ threads: 2 })],
];
for (const [name, make] of pools) {
  const pool = make();
  // Piscina on Deno takes ~0.25 s a round: fewer rounds there, or the run takes minutes.
  const t = await roundTrips(pool, runtime === "deno" && name === "piscina" ? 20 : ROUNDS);
  const median = t[Math.floor(t.length / 2)]!;
  console.log(
    `${runtime} ${name}: 1 MiB hashBlocks round trip median ${median.toFixed(3)} ms, p90 ${t[Math.floor(t.length * 0.9)]!.toFixed(3)} ms, ${(BYTES / 1e6 / (median / 1000)).toFixed(0)} MB/s`,
  );
  await pool.close();
}
