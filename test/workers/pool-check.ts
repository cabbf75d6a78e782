/**
 * Runtime-neutral checks of both TaskPool implementations, run as a script so the same
 * file proves the pool under Bun and under Deno (see task-pool.test.ts). Exits non-zero
 * on the first failed assertion and prints "pool-check ok <runtime>" on success.
 */
import assert from "node:assert/strict";
import { hashChunk, toHex } from "../../chunkstore/hash.ts";
import { InlinePool } from "../../workers/inline-pool.ts";
import { PiscinaPool } from "../../workers/piscina-pool.ts";
import type { TaskPool } from "../../workers/task-pool.ts";

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

const runtime = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";
for (const pool of [new InlinePool(), new PiscinaPool({ threads: 2 })]) {
  try {
    await check(pool);
  } finally {
    await pool.close();
  }
}
console.log(`pool-check ok ${runtime}`);
