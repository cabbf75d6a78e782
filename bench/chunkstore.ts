/**
 * Chunk store benchmark: file-backend put and get of 64 KiB chunks against the raw disk
 * append rate measured the same way (sequential append, one fsync per batch of the same
 * size), and BLAKE3 hashing inline against the worker pool. Prints ratios.
 *
 *   bun bench/chunkstore.ts [--mib 512]
 */
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileStore } from "../chunkstore/file-store.ts";
import { HASH_ENGINE, hashChunk } from "../chunkstore/hash.ts";
import { InlinePool } from "../workers/inline-pool.ts";
import { PiscinaPool } from "../workers/piscina-pool.ts";
import type { TaskPool } from "../workers/task-pool.ts";
import { machine, mbps, table, timed } from "./_report.ts";

const CHUNK = 64 * 1024;
const mibArg = process.argv.indexOf("--mib");
const TOTAL_MIB = mibArg > 0 ? Number(process.argv[mibArg + 1]) : 512;
const COUNT = (TOTAL_MIB * 1024 * 1024) / CHUNK;
const PUT_BATCH = 16; // chunks per putMany call, like a gateway flushing 1 MiB of dirty blocks
const IN_FLIGHT = 4; // concurrent putMany calls, so hashing overlaps the previous batch's fsync

console.log(`# chunkstore benchmark: ${machine()}`);
console.log(`${TOTAL_MIB} MiB in ${COUNT} chunks of 64 KiB, directory under ${tmpdir()}\n`);

// Distinct chunks without generating 512 MiB of randomness: a random base, a counter per chunk.
const base = new Uint8Array(CHUNK);
crypto.getRandomValues(base);
const chunks = Array.from({ length: COUNT }, (_, i) => {
  const bytes = base.slice();
  new DataView(bytes.buffer).setUint32(0, i);
  return { hash: hashChunk(bytes), bytes };
});

const dir = await mkdtemp(join(tmpdir(), "blockmend-bench-"));
/** Rounds of (store put, raw append) interleaved: this VM's disk varies run to run, so medians. */
const ROUNDS = 3;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
try {
  const putTimes: number[] = [];
  const rawTimes: number[] = [];
  const getTimes: number[] = [];
  let bytesPerFsync = 0;
  for (let round = 0; round < ROUNDS; round++) {
    // --- file backend put
    const storeDir = join(dir, `store-${round}`);
    const store = await FileStore.open(storeDir, { reserveBytes: 0 });
    let next = 0;
    putTimes.push(
      await timed(async () => {
        const lane = async () => {
          while (next < COUNT) {
            const start = next;
            next += PUT_BATCH;
            await store.putMany(chunks.slice(start, start + PUT_BATCH));
          }
        };
        await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
      }),
    );
    bytesPerFsync = (COUNT * CHUNK) / store.fsyncCount;

    // --- file backend get (page cache warm: the store's own overhead and verification)
    const order = chunks.map((c) => c.hash).sort(() => Math.random() - 0.5);
    let g = 0;
    getTimes.push(
      await timed(async () => {
        const lane = async () => {
          while (g < order.length) await store.get(order[g++]!);
        };
        await Promise.all(Array.from({ length: 16 }, lane));
      }),
    );
    await store.close();
    await rm(storeDir, { recursive: true, force: true });

    // --- raw append: same bytes, batches the size of the store's observed group commits
    const rawBatch = Math.max(CHUNK, Math.round(bytesPerFsync / CHUNK) * CHUNK);
    const buf = new Uint8Array(rawBatch);
    for (let o = 0; o < rawBatch; o += CHUNK) buf.set(base, o);
    const rawPath = join(dir, "raw.bin");
    const fh = await open(rawPath, "w");
    rawTimes.push(
      await timed(async () => {
        for (let written = 0; written < COUNT * CHUNK; written += rawBatch) {
          await fh.write(buf, 0, rawBatch);
          await fh.datasync();
        }
      }),
    );
    await fh.close();
    await rm(rawPath, { force: true });
  }

  const bytes = COUNT * CHUNK;
  const [putSeconds, rawSeconds, getSeconds] = [median(putTimes), median(rawTimes), median(getTimes)];
  console.log(
    `## File backend vs raw disk append (median of ${ROUNDS} interleaved rounds; hash engine: ${HASH_ENGINE})\n`,
  );
  table(
    ["operation", "MB/s", "chunks/s", "ratio to raw append"],
    [
      [
        `raw append, ${(bytesPerFsync / 1024).toFixed(0)} KiB + fdatasync per batch`,
        mbps(bytes, rawSeconds),
        COUNT / rawSeconds,
        1,
      ],
      [
        `file put (putMany x${PUT_BATCH}, ${IN_FLIGHT} in flight)`,
        mbps(bytes, putSeconds),
        COUNT / putSeconds,
        rawSeconds / putSeconds,
      ],
      [
        "file get (random order, 16 in flight, page cache warm)",
        mbps(bytes, getSeconds),
        COUNT / getSeconds,
        "-",
      ],
    ],
  );
  console.log(
    `\nper round MB/s: put ${putTimes.map((t) => mbps(bytes, t).toFixed(0)).join(", ")}; raw ${rawTimes.map((t) => mbps(bytes, t).toFixed(0)).join(", ")}`,
  );
  console.log(`group commit: ${(bytesPerFsync / 1024).toFixed(0)} KiB per synced write\n`);

  // --- BLAKE3 inline vs pool
  console.log("## BLAKE3 hashing, inline vs worker pool\n");
  const rows: (string | number)[][] = [];
  const inline = new InlinePool();
  const pool = new PiscinaPool();
  const HASH_BYTES = 256 * 1024 * 1024;
  for (const batch of [64 * 1024, 256 * 1024, 1024 * 1024]) {
    const tasks = HASH_BYTES / batch;
    const measure = async (p: TaskPool, inFlight: number) => {
      const bufs = Array.from({ length: inFlight }, () => {
        const b = new Uint8Array(batch);
        for (let o = 0; o < batch; o += CHUNK) b.set(base.subarray(0, Math.min(CHUNK, batch - o)), o);
        return b;
      });
      let done = 0;
      return timed(async () => {
        const lane = async (i: number) => {
          while (done < tasks) {
            done++;
            const out = await p.run(
              "hashBlocks",
              { data: bufs[i]!, blockSize: CHUNK },
              { transfer: [bufs[i]!.buffer as ArrayBuffer] },
            );
            bufs[i] = out.data as Uint8Array<ArrayBuffer>;
          }
        };
        await Promise.all(bufs.map((_, i) => lane(i)));
      });
    };
    await measure(pool, pool.threads * 2); // warm up the workers
    const tInline = await measure(inline, 1);
    const tPool = await measure(pool, pool.threads * 2);
    rows.push([
      `${batch / 1024} KiB`,
      mbps(HASH_BYTES, tInline),
      mbps(HASH_BYTES, tPool),
      `${pool.threads}`,
      tInline / tPool,
    ]);
  }
  await pool.close();
  table(["batch", "inline MB/s", "pool MB/s", "threads", "pool / inline"], rows);
} finally {
  await rm(dir, { recursive: true, force: true });
}
