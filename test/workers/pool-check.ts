/**
 * Runtime-neutral checks of every TaskPool implementation, run as a script so the same
 * file proves the pools under Bun and under Deno (see task-pool.test.ts). Exits non-zero
 * on the first failed assertion and prints "pool-check ok <runtime>" on success, after a
 * line per pool.
 */
import assert from "node:assert/strict";
import { hashChunk, toHex } from "../../chunkstore/hash.ts";
import { runtimeKey } from "../../runtime/runtime-key.ts";
import { createTaskPool } from "../../workers/create-task-pool.ts";
import { InlinePool } from "../../workers/inline-pool.ts";
import { PiscinaPool } from "../../workers/piscina-pool.ts";
import type { TaskPool } from "../../workers/task-pool.ts";
import { WebWorkerPool } from "../../workers/web-worker-pool.ts";

async function check(pool: TaskPool): Promise<void> {
  const blockSize = 4096;
  const data = new Uint8Array(blockSize * 5 + 100);
  crypto.getRandomValues(data);
  const expected = Array.from({ length: 6 }, (_, i) =>
    hashChunk(data.slice(i * blockSize, Math.min(data.length, (i + 1) * blockSize))),
  );
  const copy = data.slice();
  const out = await pool.run("hashBlocks", { data, blockSize }, { transfer: [data.buffer] });
  const got = Array.from({ length: 6 }, (_, i) => toHex(out.hashes.subarray(i * 32, i * 32 + 32)));
  assert.deepEqual(got, expected, "hashes match the inline BLAKE3");
  assert.deepEqual(out.data, copy, "the data comes back intact");
  if (pool.threads > 0) assert.equal(data.byteLength, 0, "the input buffer was transferred, not copied");

  await assert.rejects(pool.run("hashBlocks", { data: new Uint8Array(8), blockSize: 0 }), RangeError);

  const aborted = AbortSignal.abort();
  await assert.rejects(
    pool.run("hashBlocks", { data: new Uint8Array(8), blockSize: 8 }, { signal: aborted }),
  );

  // Many tasks at once all complete with the right results.
  const inputs = Array.from({ length: 16 }, (_, i) => new Uint8Array(65536).fill(i));
  const results = await Promise.all(
    inputs.map((d) => pool.run("hashBlocks", { data: d.slice(), blockSize: 65536 })),
  );
  results.forEach((r, i) => {
    assert.equal(toHex(r.hashes), hashChunk(inputs[i]!));
  });
}

async function checkAbortAndClose(pool: TaskPool): Promise<void> {
  // An abort after the task was posted to a worker (run() posts at once to an idle, ready
  // worker; the reply cannot have arrived yet) rejects with the signal's reason, the worker
  // is replaced, and the pool keeps working.
  await pool.run("hashBlocks", { data: new Uint8Array(8), blockSize: 8 }); // workers ready
  const controller = new AbortController();
  const running = pool.run(
    "hashBlocks",
    { data: new Uint8Array(1 << 20), blockSize: 65536 },
    {
      signal: controller.signal,
    },
  );
  controller.abort(new Error("stop it"));
  await assert.rejects(running, /stop it/);
  const after = await pool.run("hashBlocks", { data: new Uint8Array(4096).fill(7), blockSize: 4096 });
  assert.equal(toHex(after.hashes), hashChunk(new Uint8Array(4096).fill(7)), "the pool works after an abort");

  // Tasks still queued when the pool closes are rejected, not left pending.
  const queued = Array.from({ length: pool.threads * 3 }, () =>
    pool.run("hashBlocks", { data: new Uint8Array(1 << 20), blockSize: 65536 }).then(
      () => "done",
      () => "rejected",
    ),
  );
  await pool.close();
  const outcomes = await Promise.all(queued);
  assert.ok(outcomes.includes("rejected"), "queued tasks are rejected by close()");
  await assert.rejects(pool.run("hashBlocks", { data: new Uint8Array(8), blockSize: 8 }), /closed/);
}

const runtime = runtimeKey();
const pools: [string, () => TaskPool][] = [
  ["inline", () => new InlinePool()],
  ["piscina", () => new PiscinaPool({ threads: 2 })],
  ["web-worker", () => new WebWorkerPool({ threads: 2 })],
];
for (const [name, make] of pools) {
  const pool = make();
  try {
    await check(pool);
  } finally {
    await pool.close();
  }
  console.log(`pool-check ${name} ok`);
}
// The abort-while-running and close behaviour is ours to define for the web-worker pool.
await checkAbortAndClose(new WebWorkerPool({ threads: 2 }));
console.log("pool-check web-worker abort and close ok");

// The runtime's own pool is the one that moves data fastest there.
const chosen = createTaskPool({ threads: 1 });
assert.ok(
  runtime === "deno" ? chosen instanceof WebWorkerPool : chosen instanceof PiscinaPool,
  `createTaskPool picks the pool for ${runtime}`,
);
await chosen.close();
console.log(`pool-check ok ${runtime}`);
