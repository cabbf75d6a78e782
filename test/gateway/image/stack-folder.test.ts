/**
 * Folding patch stacks while an image is idle (image/stack-folder.ts), through the image
 * layer over memory stores: what a fold stores and leaves in the map, the scan that finds
 * stacks an earlier gateway left, and writes racing folds that must never be lost.
 */
import { expect, test } from "bun:test";
import type { ChunkPut } from "../../../chunkstore/chunk-store.ts";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { decodeLeafPage } from "../../../gateway/image/block-map.ts";
import type { Image } from "../../../gateway/image/image.ts";
import { StackFolder } from "../../../gateway/image/stack-folder.ts";
import { imageService, pattern } from "./_image-fixture.ts";

const MiB = 1024 * 1024;
const CHUNK = 65536;

/** A memory store that counts the whole blocks put. */
class BlockCounter extends MemoryStore {
  blocks = 0;
  override async putMany(c: readonly ChunkPut[]) {
    this.blocks += c.filter((x) => x.bytes.byteLength === CHUNK).length;
    return super.putMany(c);
  }
  override async put(h: string, b: Uint8Array) {
    if (b.byteLength === CHUNK) this.blocks++;
    return super.put(h, b);
  }
}

/** A memory store whose reads take 0-3 ms. */
class SlowReads extends MemoryStore {
  override async get(h: string) {
    await Bun.sleep(Math.random() * 3);
    return super.get(h);
  }
  override async getMany(h: readonly string[]) {
    await Bun.sleep(Math.random() * 3);
    return super.getMany(h);
  }
}

/** A 1 MiB image (16 blocks, one leaf page) filled with a pattern, and its expected content. */
async function filledImage(stores: MemoryStore[]) {
  const g = await imageService(stores, { cache: { foldIdleMs: Number.POSITIVE_INFINITY } });
  await g.service.create("vm", MiB);
  const expected = pattern(MiB, 7);
  await (await g.service.open("vm")).write(0, expected, { fua: true });
  await g.service.close();
  return expected;
}

/** The blocks with a patch stack in the image's committed leaf page (the image is one leaf). */
async function stacksInMap(stores: MemoryStore[], img: Image): Promise<number[]> {
  const held = await Promise.all(stores.map(async (s) => (await s.has([img.head.root]))[0]));
  const leaf = decodeLeafPage(await stores[held.indexOf(true)]!.get(img.head.root));
  return [...leaf.stacks.keys()].sort((a, b) => a - b);
}

async function until(cond: () => boolean, ms = 4000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await Bun.sleep(20);
  }
}

async function readsBackFresh(stores: MemoryStore[], expected: Uint8Array) {
  const fresh = (await imageService(stores, { cache: { foldIdleMs: Number.POSITIVE_INFINITY } })).service;
  const view = await fresh.open("vm");
  expect(Buffer.from(await view.read(0, MiB)).equals(Buffer.from(expected))).toBe(true);
  await fresh.close();
}

test("an idle image's stacks fold into whole chunks: the map holds none, and every byte reads back", async () => {
  const stores = ["a", "b", "c"].map((n) => new BlockCounter(n));
  const expected = await filledImage(stores);
  const g = await imageService(stores, { cache: { foldIdleMs: 300, flushIntervalMs: 100 } });
  const img = await g.service.open("vm");
  for (const [block, seed] of [
    [1, 1],
    [4, 2],
    [4, 3],
    [9, 4],
  ] as const) {
    const data = pattern(4096, seed);
    const off = block * CHUNK + seed * 1000;
    expected.set(data, off);
    await img.write(off, data, { fua: true });
  }
  expect(await stacksInMap(stores, img)).toEqual([1, 4, 9]);
  for (const s of stores) s.blocks = 0;
  await until(() => img.folding!.pending === 0 && !img.folding!.scanning && img.folding!.folded >= 3);
  await img.flush();
  expect(img.folding!.folded).toBe(3);
  expect(await stacksInMap(stores, img)).toEqual([]);
  expect(stores.reduce((n, s) => n + s.blocks, 0)).toBe(3 * 2); // three blocks, two replicas
  expect(Buffer.from(await img.read(0, MiB)).equals(Buffer.from(expected))).toBe(true);
  // The scan is done now: stacks made later are known from the commits that made them.
  const data = pattern(500, 5);
  expected.set(data, 12 * CHUNK + 3);
  await img.write(12 * CHUNK + 3, data, { fua: true });
  expect(await stacksInMap(stores, img)).toEqual([12]);
  await until(() => img.folding!.folded >= 4);
  await img.flush();
  expect(await stacksInMap(stores, img)).toEqual([]);
  await g.service.close();
  await readsBackFresh(stores, expected);
});

test("stacks an earlier gateway left are found by the map scan and folded", async () => {
  const stores = ["a", "b", "c"].map((n) => new BlockCounter(n));
  const expected = await filledImage(stores);
  const before = await imageService(stores, { cache: { foldIdleMs: Number.POSITIVE_INFINITY } });
  const old = await before.service.open("vm");
  for (const block of [2, 3, 15]) {
    const data = pattern(100, block);
    expected.set(data, block * CHUNK + 50);
    await old.write(block * CHUNK + 50, data, { fua: true });
  }
  await before.service.close();
  // A new gateway writes one block of its own (it becomes the owner), then the image idles.
  const g = await imageService(stores, { cache: { foldIdleMs: 200, flushIntervalMs: 100 } });
  const img = await g.service.open("vm");
  const data = pattern(100, 99);
  expected.set(data, 8 * CHUNK);
  await img.write(8 * CHUNK, data, { fua: true });
  expect(await stacksInMap(stores, img)).toEqual([2, 3, 8, 15]);
  await until(() => img.folding!.pending === 0 && !img.folding!.scanning && img.folding!.folded >= 4);
  await img.flush();
  expect(await stacksInMap(stores, img)).toEqual([]);
  await g.service.close();
  await readsBackFresh(stores, expected);
});

test("writes racing folds are never lost: a model of every write matches the image, here and on a fresh gateway", async () => {
  const stores = ["a", "b", "c"].map((n) => new SlowReads(n));
  const expected = await filledImage(stores);
  // Folding never waits for idleness here, so folds interleave with the writes throughout;
  // with no chunk cache and slow reads, commits land while a fold reads its blocks.
  const g = await imageService(stores, {
    cache: { foldIdleMs: 0, flushIntervalMs: 10 },
    chunkCacheBytes: 1,
  });
  const img = await g.service.open("vm");
  let seed = 1234;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  for (let round = 0; round < 60; round++) {
    const writes: Promise<void>[] = [];
    for (let k = 0; k < 8; k++) {
      // Small writes into few blocks, so stacks build and folds meet them.
      const length = 1 + rand(rand(4) === 0 ? 20_000 : 3000);
      const off = rand(6) * CHUNK + rand(CHUNK - length);
      const data = pattern(length, round * 100 + k);
      expected.set(data, off);
      writes.push(img.write(off, data, { fua: rand(3) === 0 }));
    }
    await Promise.all(writes);
    if (rand(2) === 0) await Bun.sleep(rand(30));
  }
  expect(img.folding!.folded).toBeGreaterThan(0);
  expect(Buffer.from(await img.read(0, MiB)).equals(Buffer.from(expected))).toBe(true);
  await g.service.close();
  await readsBackFresh(stores, expected);
});

test("a write stops a fold run; the run rests between batches", async () => {
  const folds: number[][] = [];
  let folder: StackFolder | null = null;
  const target = {
    scan: async () => ({ blocks: [1, 2, 3, 4, 5, 6], next: null }),
    fold: async (blocks: readonly number[]) => {
      folds.push([...blocks]);
      await Bun.sleep(30);
      if (folds.length === 2) folder!.wrote();
      return blocks.length;
    },
  };
  folder = new StackFolder(target, { idleMs: 50, batchBlocks: 2 });
  folder.tick(); // not idle yet: nothing runs
  await Bun.sleep(10);
  expect(folds).toEqual([]);
  await Bun.sleep(60);
  const started = performance.now();
  folder.tick();
  await until(() => folds.length === 2);
  // The second batch came after a rest as long as the first batch took.
  expect(performance.now() - started).toBeGreaterThanOrEqual(55);
  await Bun.sleep(200);
  expect(folds).toEqual([
    [1, 2],
    [3, 4],
  ]);
  expect(folder.pending).toBe(2);
  expect(folder.folded).toBe(4);
  await Bun.sleep(60);
  folder.tick(); // idle again: the rest are folded
  await until(() => folder!.pending === 0);
  await folder.stop();
  expect(folds.at(-1)).toEqual([5, 6]);
});

test("a released image stays open while it has stacks to fold, then closes; the gateway counts the folds", async () => {
  const stores = ["a", "b", "c"].map((n) => new MemoryStore(n));
  const expected = await filledImage(stores);
  const g = await imageService(stores, { cache: { foldIdleMs: 400, flushIntervalMs: 100, lingerMs: 100 } });
  const img = await g.service.open("vm");
  for (const block of [5, 6]) {
    const data = pattern(700, block);
    expected.set(data, block * CHUNK);
    await img.write(block * CHUNK, data, { fua: false });
  }
  await g.service.release(img); // flushes: two stacks to fold once idle
  await Bun.sleep(250); // past the linger, not yet idle long enough to fold
  const again = await g.service.open("vm");
  expect(again).toBe(img);
  await g.service.release(again);
  await until(() => g.service.folding().foldedBlocks === 2 && g.service.folding().pendingBlocks === 0);
  await Bun.sleep(300);
  const reopened = await g.service.open("vm");
  expect(reopened).not.toBe(img); // closed once folded
  expect(g.service.folding().foldedBlocks).toBe(2);
  expect(Buffer.from(await reopened.read(0, MiB)).equals(Buffer.from(expected))).toBe(true);
  await g.service.close();
  await readsBackFresh(stores, expected);
});

test("a read during a batch makes the fold rest three times the batch's time", async () => {
  const starts: number[] = [];
  let folder: StackFolder | null = null;
  folder = new StackFolder(
    {
      scan: async () => ({ blocks: [1, 2, 3, 4], next: null }),
      fold: async (blocks: readonly number[]) => {
        starts.push(performance.now());
        if (starts.length === 1) folder!.read(); // the VM reads during the first batch only
        await Bun.sleep(60);
        return blocks.length;
      },
    },
    { idleMs: 0, batchBlocks: 1 },
  );
  folder.tick();
  await until(() => folder!.pending === 0 && starts.length === 4);
  await folder.stop();
  const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
  expect(gaps[0]!).toBeGreaterThanOrEqual(4 * 60 - 5); // the batch and a rest of three times it
  expect(gaps[1]!).toBeLessThan(200); // no read: a rest as long as the batch (120 ms)
  expect(gaps[1]!).toBeGreaterThanOrEqual(2 * 60 - 5);
});
