/**
 * The copy engine (gateway/heal/copy-engine.ts) over memory stores: a batch is read with one
 * `getMany` per source store; a chunk the batch read cannot bring (a corrupt copy on the
 * first source, a source whose batch read fails) is read chunk by chunk from another
 * replica, and the bad copy is reported; a chunk no replica has is reported lost.
 */
import { expect, test } from "bun:test";
import type { Hash } from "../../../chunkstore/chunk-store.ts";
import { hashChunk } from "../../../chunkstore/hash.ts";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { WitnessStore } from "../../../chunkstore/witness-store.ts";
import { CopyEngine } from "../../../gateway/heal/copy-engine.ts";
import { imageService, pattern } from "../image/_image-fixture.ts";

/** A memory store that counts its batch and single reads, and can fail its batch reads. */
class CountingStore extends MemoryStore {
  getManyCalls = 0;
  getCalls = 0;
  failBatches = false;
  #batching = false;
  override async getMany(h: readonly string[]) {
    this.getManyCalls++;
    if (this.failBatches) throw new Error("batch read refused by the test");
    // MemoryStore's getMany calls get for each hash (synchronously): those are not single reads.
    this.#batching = true;
    try {
      return super.getMany(h);
    } finally {
      this.#batching = false;
    }
  }
  override async get(h: string) {
    if (!this.#batching) this.getCalls++;
    return super.get(h);
  }
}

async function setup() {
  const a = new CountingStore("a");
  const b = new CountingStore("b");
  const c = new CountingStore("c");
  const g = await imageService([a, b, c, new WitnessStore(new MemoryStore("w"))], { replicas: 2 });
  const chunks = Array.from({ length: 100 }, (_, i) => {
    const bytes = pattern(65536, i + 1);
    return { hash: hashChunk(bytes), bytes };
  });
  // Every chunk on a and c (the sources), none on b (the target).
  await a.putMany(chunks);
  await c.putMany(chunks);
  const engine = new CopyEngine(g.set, g.core.throttle);
  g.core.throttle.setLimits({ rateBytesPerSecond: 1024 ** 3 });
  return { a, b, c, g, chunks, engine };
}

test("a batch is read with one request per source store, and every chunk lands verified", async () => {
  const { a, b, c, chunks, engine } = await setup();
  const r = await engine.copy(
    "b",
    chunks.map((x) => ({ hash: x.hash, estimate: 65536 })),
  );
  expect(r.copiedChunks).toBe(100);
  expect(r.lost).toEqual([]);
  // 100 chunks in two batches of at most 64: at most two batch reads per source, no single reads.
  expect(a.getManyCalls + c.getManyCalls).toBeLessThanOrEqual(4);
  expect(a.getCalls + c.getCalls).toBe(0);
  const back = await b.getMany(chunks.map((x) => x.hash));
  back.forEach((bytes, i) => {
    expect(bytes && hashChunk(bytes)).toBe(chunks[i]!.hash);
  });
});

test("a corrupt copy on the batch's source is read from another replica and reported", async () => {
  const { a, b, c, g, chunks, engine } = await setup();
  const bad: [string, Hash][] = [];
  g.set.badCopy.add((id, hash) => bad.push([id, hash]));
  for (const x of chunks) {
    a.corrupt(x.hash);
    c.corrupt(x.hash);
  }
  // Only one source has a good copy of the first chunk: a or c, whichever is second in its order.
  const victim = chunks[0]!.hash;
  const second = g.set.readOrder(victim, "b")[1]!;
  await (second === "a" ? a : c).delete(victim);
  await (second === "a" ? a : c).put(victim, chunks[0]!.bytes);
  const r = await engine.copy("b", [{ hash: victim, estimate: 65536 }]);
  expect(r.copiedChunks).toBe(1);
  expect(hashChunk((await b.get(victim))!)).toBe(victim);
  expect(bad.map(([id]) => id)).toContain(g.set.readOrder(victim, "b")[0]!);
});

test("a source whose batch reads fail: the chunks are read one by one, none lost", async () => {
  const { a, b, c, chunks, engine } = await setup();
  a.failBatches = true;
  c.failBatches = true;
  const r = await engine.copy(
    "b",
    chunks.slice(0, 10).map((x) => ({ hash: x.hash, estimate: 65536 })),
  );
  expect(r.copiedChunks).toBe(10);
  expect(a.getCalls + c.getCalls).toBeGreaterThanOrEqual(10);
  expect((await b.has(chunks.slice(0, 10).map((x) => x.hash))).every(Boolean)).toBe(true);
});

test("a chunk no replica has is lost, the rest copied", async () => {
  const { b, chunks, engine } = await setup();
  const nowhere = hashChunk(pattern(65536, 999));
  const r = await engine.copy("b", [
    { hash: chunks[0]!.hash, estimate: 65536 },
    { hash: nowhere, estimate: 65536 },
  ]);
  expect(r.copiedChunks).toBe(1);
  expect(r.lost).toEqual([nowhere]);
  expect((await b.has([chunks[0]!.hash]))[0]).toBe(true);
});
