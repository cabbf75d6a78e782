/**
 * Small writes as patch chunks (the write log: image/patch-chunk.ts, block-map.ts patch
 * stacks), through the image layer: what a commit stores for a small write, when it folds
 * the stack into a whole block, and what a failed commit leaves in the map.
 */
import { expect, test } from "bun:test";
import type { ChunkPut } from "../../../chunkstore/chunk-store.ts";
import { StoreUnavailableError } from "../../../chunkstore/errors.ts";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { MAX_PATCH_STACK } from "../../../gateway/image/block-map.ts";
import { imageService, pattern } from "./_image-fixture.ts";

const MiB = 1024 * 1024;
const CHUNK = 65536;

const MAGIC = new TextEncoder().encode("BMPATCH1");
const isPatch = (b: Uint8Array) => b.byteLength >= MAGIC.byteLength && MAGIC.every((m, i) => b[i] === m);

/** A memory store that records what is put (whole blocks, patch chunks), and can refuse map pages (the rest). */
class PutProbe extends MemoryStore {
  blocks = 0;
  patchSizes: number[] = [];
  patches = new Set<string>();
  refusePages = false;
  #note(chunks: readonly ChunkPut[]) {
    if (this.refusePages && chunks.some((c) => c.bytes.byteLength !== CHUNK && !isPatch(c.bytes)))
      throw new StoreUnavailableError(this.name, "refusing map pages in the test");
    for (const c of chunks) {
      if (c.bytes.byteLength === CHUNK) this.blocks++;
      else if (isPatch(c.bytes)) {
        this.patchSizes.push(c.bytes.byteLength);
        this.patches.add(c.hash);
      }
    }
  }
  reset() {
    this.blocks = 0;
    this.patchSizes = [];
  }
  override async put(h: string, b: Uint8Array) {
    this.#note([{ hash: h, bytes: b }]);
    return super.put(h, b);
  }
  override async putMany(c: readonly ChunkPut[]) {
    this.#note(c);
    return super.putMany(c);
  }
}

async function setUp(options: { patchWrites?: boolean } = {}) {
  const stores = ["a", "b", "c"].map((n) => new PutProbe(n));
  const first = await imageService(stores);
  await first.service.create("vm", MiB);
  const expected = pattern(MiB, 7);
  await (await first.service.open("vm")).write(0, expected, { fua: true });
  await first.service.close();
  for (const s of stores) s.reset();
  const g = await imageService(stores, { cache: { patchWrites: options.patchWrites } });
  return { stores, g, img: await g.service.open("vm"), expected };
}

const blocksPut = (stores: PutProbe[]) => stores.reduce((n, s) => n + s.blocks, 0);
const patchesPut = (stores: PutProbe[]) => stores.flatMap((s) => s.patchSizes);

async function readsBackFresh(stores: PutProbe[], expected: Uint8Array) {
  const fresh = (await imageService(stores)).service;
  const view = await fresh.open("vm");
  expect(Buffer.from(await view.read(0, MiB)).equals(Buffer.from(expected))).toBe(true);
  await fresh.close();
}

test("a 4 KiB write stores a 4 KiB patch chunk per replica, not its 64 KiB block; the stack folds past its limit", async () => {
  const { stores, g, img, expected } = await setUp();
  const write = async (off: number, seed: number, length = 4096) => {
    const data = pattern(length, seed);
    expected.set(data, off);
    await img.write(off, data, { fua: true });
  };
  await write(CHUNK + 512, 1);
  // The patch chunk (4096 bytes and a 20-byte header) on 2 replicas, and the leaf page; no block.
  expect(patchesPut(stores)).toEqual([4116, 4116]);
  expect(blocksPut(stores)).toBe(0);
  // Up to the stack's limit each small write adds a patch chunk; the next one folds them all.
  for (let k = 1; k < MAX_PATCH_STACK; k++) await write(CHUNK + 512 + k * 8000, 1 + k);
  expect(patchesPut(stores)).toHaveLength(2 * MAX_PATCH_STACK);
  expect(blocksPut(stores)).toBe(0);
  for (const s of stores) s.reset();
  await write(CHUNK + 60000, 9, 100);
  expect(blocksPut(stores)).toBe(2);
  expect(patchesPut(stores)).toEqual([]);
  // After the fold the stack starts again; a write of more than a quarter of a block is a whole block.
  await write(CHUNK + 7, 11, 200);
  expect(patchesPut(stores)).toEqual([220, 220]);
  for (const s of stores) s.reset();
  await write(5 * CHUNK + 10, 10, CHUNK / 4 + 1);
  expect(blocksPut(stores)).toBe(2);
  expect(patchesPut(stores)).toEqual([]);
  expect(Buffer.from(await img.read(0, MiB)).equals(Buffer.from(expected))).toBe(true);
  await g.service.close();
  await readsBackFresh(stores, expected);
});

test("with patchWrites off a small write rewrites its block", async () => {
  const { stores, g, img, expected } = await setUp({ patchWrites: false });
  const data = pattern(4096, 3);
  expected.set(data, 2 * CHUNK);
  await img.write(2 * CHUNK, data, { fua: true });
  expect(blocksPut(stores)).toBe(2);
  expect(patchesPut(stores)).toEqual([]);
  await g.service.close();
  await readsBackFresh(stores, expected);
});

test("a commit that fails after its patch chunk is stored puts the stack back: the map never names a chunk no head holds", async () => {
  const { stores, g, img, expected } = await setUp();
  const data = pattern(3000, 4);
  expected.set(data, 3 * CHUNK + 100);
  await img.write(3 * CHUNK + 100, data, { fua: false });
  for (const s of stores) s.refusePages = true;
  await expect(img.flush()).rejects.toThrow();
  for (const s of stores) s.refusePages = false;
  // The patch chunk landed but no head references it, so a collection may take it: here it does.
  const orphans = new Set(stores.flatMap((s) => [...s.patches]));
  expect(orphans.size).toBe(1);
  for (const s of stores) for (const h of orphans) await s.delete(h);
  await g.core.health.probeAll();
  // The read lays the pending patch over the block as the map names it without that chunk.
  expect(Buffer.from(await img.read(0, MiB)).equals(Buffer.from(expected))).toBe(true);
  await img.flush(); // the patch goes again, and lands
  expect(Buffer.from(await img.read(0, MiB)).equals(Buffer.from(expected))).toBe(true);
  await g.service.close();
  await readsBackFresh(stores, expected);
});
