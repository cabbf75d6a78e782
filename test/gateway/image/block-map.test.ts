import { expect, test } from "bun:test";
import { hashChunk } from "../../../chunkstore/hash.ts";
import {
  BlockMap,
  decodeLeafPage,
  decodePage,
  encodeLeafPage,
  encodePage,
  FANOUT,
  growRoot,
  levelsFor,
  ZERO_HASH,
} from "../../../gateway/image/block-map.ts";

test("levels grow with the number of blocks, FANOUT entries per page", () => {
  expect(levelsFor(1)).toBe(1);
  expect(levelsFor(FANOUT)).toBe(1);
  expect(levelsFor(FANOUT + 1)).toBe(2);
  expect(levelsFor(FANOUT * FANOUT + 1)).toBe(3);
});

test("pages trim trailing holes and decode back to full width; an all-hole page is empty", () => {
  const entries = new Uint8Array(FANOUT * 32);
  entries.fill(7, 32, 64);
  const bytes = encodePage(entries);
  expect(bytes.byteLength).toBe(64);
  expect(decodePage(bytes)).toEqual(entries);
  expect(encodePage(new Uint8Array(FANOUT * 32)).byteLength).toBe(0);
  expect(() => decodePage(new Uint8Array(33))).toThrow(RangeError);
});

test("a committed map reads back through its pages; unchanged maps keep their root", async () => {
  const pages = new Map<string, Uint8Array>();
  const load = async (h: string) => pages.get(h)!;
  const map = new BlockMap(load, ZERO_HASH, 3 * FANOUT);
  const h1 = hashChunk(new Uint8Array([1]));
  const h2 = hashChunk(new Uint8Array([2]));
  await map.set(0, h1);
  await map.set(2 * FANOUT + 5, h2);
  const { root, pages: written } = await map.commit();
  for (const p of written) pages.set(p.hash, p.bytes);
  expect(written.length).toBe(3); // two leaves and the root
  const again = new BlockMap(load, root, 3 * FANOUT);
  expect(await again.get(0)).toBe(h1);
  expect(await again.get(2 * FANOUT + 5)).toBe(h2);
  expect(await again.get(FANOUT)).toBe(ZERO_HASH);
  expect((await again.commit()).root).toBe(root);
});

test("growRoot keeps the old map as the first subtree", async () => {
  const pages = new Map<string, Uint8Array>();
  const load = async (h: string) => pages.get(h)!;
  const small = new BlockMap(load, ZERO_HASH, FANOUT);
  const h = hashChunk(new Uint8Array([3]));
  await small.set(9, h);
  const c = await small.commit();
  for (const p of c.pages) pages.set(p.hash, p.bytes);
  const grown = growRoot(c.root, 1, 3);
  for (const p of grown.pages) pages.set(p.hash, p.bytes);
  const big = new BlockMap(load, grown.root, FANOUT ** 2 + 1);
  expect(await big.get(9)).toBe(h);
  expect(growRoot(ZERO_HASH, 1, 3).root).toBe(ZERO_HASH);
});

// Issue 9: a 1 PiB sparse image and four map requests grew the gateway by 1.6 GB, because
// every page a lookup descended into was materialised, holes included.

const PiB_BLOCKS = 2 ** 50 / 65536;

/** A page store that counts loads. */
function pageStore() {
  const pages = new Map<string, Uint8Array>();
  let loads = 0;
  return {
    pages,
    get loads() {
      return loads;
    },
    load: async (h: string) => {
      loads++;
      const p = pages.get(h);
      if (!p) throw new Error(`page ${h} is not stored`);
      return p;
    },
    keep(c: { pages: { hash: string; bytes: Uint8Array }[] }) {
      for (const p of c.pages) pages.set(p.hash, p.bytes);
    },
  };
}

test("a hole costs nothing: mapping and reading a 1 PiB sparse map loads and keeps no page for it", async () => {
  const store = pageStore();
  const map = new BlockMap(store.load, ZERO_HASH, PiB_BLOCKS);
  expect(await map.runs(0, 2 ** 20)).toEqual([{ blocks: 2 ** 20, hole: true }]);
  expect(await map.runs(PiB_BLOCKS - 2 ** 20, 2 ** 20)).toEqual([{ blocks: 2 ** 20, hole: true }]);
  for (const b of [0, 12345, PiB_BLOCKS / 2, PiB_BLOCKS - 1]) expect(await map.get(b)).toBe(ZERO_HASH);
  await map.set(777, ZERO_HASH); // a hole made a hole changes nothing
  expect(map.loadedPages).toBe(1); // the top page only
  expect(store.loads).toBe(0);
});

test("one written block in a 1 PiB map: a map of the whole range loads only the pages on its path", async () => {
  const store = pageStore();
  const first = new BlockMap(store.load, ZERO_HASH, PiB_BLOCKS);
  const h = hashChunk(new Uint8Array([9]));
  const far = PiB_BLOCKS - 3;
  await first.set(far, h);
  const c = await first.commit();
  store.keep(c);
  expect(c.pages.length).toBe(first.levels); // one page per level, nothing for the holes
  const map = new BlockMap(store.load, c.root, PiB_BLOCKS);
  expect(await map.runs(0, PiB_BLOCKS)).toEqual([
    { blocks: far, hole: true },
    { blocks: 1, hole: false },
    { blocks: 2, hole: true },
  ]);
  expect(store.loads).toBe(map.levels);
  expect(map.loadedPages).toBe(map.levels);
  expect(await map.get(far)).toBe(h);
  expect(await map.get(far - 1)).toBe(ZERO_HASH);
});

test("loaded clean pages stay within the LRU bound, and evicted pages load again with the same entries", async () => {
  const store = pageStore();
  const blocks = FANOUT * 64; // 64 leaves
  const writer = new BlockMap(store.load, ZERO_HASH, blocks);
  const hashes = new Map<number, string>();
  for (let leaf = 0; leaf < 64; leaf++) {
    const b = leaf * FANOUT + (leaf % FANOUT);
    hashes.set(b, hashChunk(new Uint8Array([leaf, 1])));
    await writer.set(b, hashes.get(b)!);
  }
  const c = await writer.commit();
  store.keep(c);
  writer.pagesStored();
  const bound = 8 * 8192; // 8 pages
  const map = new BlockMap(store.load, c.root, blocks, { loadedPageBytes: bound });
  for (let round = 0; round < 2; round++) {
    for (const [b, h] of hashes) {
      expect(await map.get(b)).toBe(h);
      expect(map.loadedPages).toBeLessThanOrEqual(1 + 8);
    }
  }
  expect(store.loads).toBeGreaterThan(64); // pages were evicted and loaded again
  expect((await map.runs(0, blocks)).filter((r) => !r.hole).length).toBe(64);
});

test("dirty pages are never evicted: every write of a batch larger than the LRU is in the commit", async () => {
  const store = pageStore();
  const blocks = FANOUT * 40;
  const map = new BlockMap(store.load, ZERO_HASH, blocks, { loadedPageBytes: 8192 });
  const written = new Map<number, string>();
  for (let leaf = 0; leaf < 40; leaf++) {
    written.set(leaf * FANOUT + 3, hashChunk(new Uint8Array([leaf, 2])));
    await map.set(leaf * FANOUT + 3, written.get(leaf * FANOUT + 3)!);
  }
  const c = await map.commit();
  store.keep(c);
  map.pagesStored();
  const reread = new BlockMap(store.load, c.root, blocks);
  for (const [b, h] of written) expect(await reread.get(b)).toBe(h);
  // And the first map, now mostly evicted, still reads every write (through its loader).
  for (const [b, h] of written) expect(await map.get(b)).toBe(h);
});

test("pages a commit wrote stay loaded until they are stored", async () => {
  const store = pageStore();
  const blocks = FANOUT * 16;
  const map = new BlockMap(store.load, ZERO_HASH, blocks, { loadedPageBytes: 8192 });
  for (let leaf = 0; leaf < 16; leaf++) await map.set(leaf * FANOUT, hashChunk(new Uint8Array([leaf, 3])));
  await map.commit(); // pages not kept in the store: a load of one would fail
  for (let leaf = 0; leaf < 16; leaf++) {
    expect(await map.get(leaf * FANOUT)).toBe(hashChunk(new Uint8Array([leaf, 3])));
    expect(await map.get(leaf * FANOUT + 1)).toBe(ZERO_HASH);
  }
  expect(store.loads).toBe(0);
});

test("a leaf page with patch stacks round-trips, and the plain page decoder refuses it", () => {
  const entries = new Uint8Array(FANOUT * 32);
  entries.fill(7, 32, 64); // slot 1 has a chunk
  const p = (n: number) => hashChunk(new TextEncoder().encode(`patch ${n}`));
  const stacks = new Map([
    [200, [p(1)]],
    [1, [p(2), p(3)]],
  ]);
  const bytes = encodeLeafPage(entries, stacks);
  expect(bytes.byteLength).toBe(FANOUT * 32 + 2 + 64 + 2 + 32 + 8);
  const back = decodeLeafPage(bytes);
  expect(back.entries).toEqual(entries);
  expect([...back.stacks].sort((a, b) => a[0] - b[0])).toEqual([
    [1, [p(2), p(3)]],
    [200, [p(1)]],
  ]);
  // A walker that knows only plain pages must fail, not miss the patch chunks.
  expect(() => decodePage(bytes)).toThrow(RangeError);
  // Without stacks a leaf is a plain page, and decodes with no stacks.
  expect(encodeLeafPage(entries, new Map())).toEqual(encodePage(entries));
  expect(decodeLeafPage(encodePage(entries)).stacks.size).toBe(0);
  // Damage is refused, never half-read.
  for (const cut of [bytes.subarray(0, bytes.byteLength - 1), bytes.subarray(0, FANOUT * 32 + 3)])
    expect(() => decodeLeafPage(cut)).toThrow(RangeError);
  const badTrailer = bytes.slice();
  badTrailer[badTrailer.byteLength - 1] = 0;
  expect(() => decodeLeafPage(badTrailer)).toThrow(RangeError);
});

test("patch stacks: set, read back through committed pages, cleared by a whole block; patches over a hole are data", async () => {
  const stored = new Map<string, Uint8Array>();
  const load = async (h: string) => stored.get(h)!;
  const blocks = FANOUT * 3;
  const map = new BlockMap(load, ZERO_HASH, blocks);
  const c = (n: number) => hashChunk(new TextEncoder().encode(`chunk ${n}`));
  await map.set(5, c(5));
  await map.setPatches(5, [c(50), c(51)]);
  await map.setPatches(FANOUT + 9, [c(90)]); // over a hole
  expect(await map.entry(5)).toEqual({ hash: c(5), patches: [c(50), c(51)] });
  expect(await map.entry(FANOUT + 9)).toEqual({ hash: ZERO_HASH, patches: [c(90)] });
  expect(await map.runs(FANOUT, FANOUT)).toEqual([
    { blocks: 9, hole: true },
    { blocks: 1, hole: false },
    { blocks: FANOUT - 10, hole: true },
  ]);
  const first = await map.commit();
  for (const pg of first.pages) stored.set(pg.hash, pg.bytes);
  map.pagesStored();

  const again = new BlockMap(load, first.root, blocks);
  expect(await again.entry(5)).toEqual({ hash: c(5), patches: [c(50), c(51)] });
  expect(await again.patches(FANOUT + 9)).toEqual([c(90)]);
  expect(await again.patches(6)).toEqual([]);
  expect((await again.runs(FANOUT + 9, 1))[0]).toEqual({ blocks: 1, hole: false });
  // A whole block replaces the chunk and drops its stack; an empty stack on a hole leaves a hole.
  await again.set(5, c(6));
  await again.setPatches(FANOUT + 9, []);
  expect(await again.entry(5)).toEqual({ hash: c(6), patches: [] });
  const second = await again.commit();
  for (const pg of second.pages) stored.set(pg.hash, pg.bytes);
  const third = new BlockMap(load, second.root, blocks);
  expect(await third.entry(5)).toEqual({ hash: c(6), patches: [] });
  expect(await third.runs(FANOUT, FANOUT)).toEqual([{ blocks: FANOUT, hole: true }]);
  // A commit lays a patch on top and gets the stack it had before (to put back if it fails).
  expect(await third.appendPatch(5, c(2))).toEqual([]);
  expect(await third.appendPatch(5, c(3))).toEqual([c(2)]);
  expect(await third.patches(5)).toEqual([c(2), c(3)]);
  await third.setPatches(5, []);
  // Setting a stack back to what it was gives back the same root (a failed commit's undo).
  await third.setPatches(5, [c(1)]);
  await third.setPatches(5, []);
  expect((await third.commit()).root).toBe(second.root);
});

test("stackedBlocks scans for patch stacks in order, resumable, within its leaf budget, loading nothing for holes", async () => {
  const store = pageStore();
  const blocks = FANOUT ** 2 * 3; // three levels
  const writer = new BlockMap(store.load, ZERO_HASH, blocks);
  const c = (n: number) => hashChunk(new TextEncoder().encode(`chunk ${n}`));
  const stacked = [3, 7, FANOUT + 1, FANOUT ** 2 * 2 + 5, blocks - 1];
  for (const b of stacked) await writer.setPatches(b, [c(b)]);
  await writer.set(FANOUT * 3, c(1)); // data without a stack: not listed
  store.keep(await writer.commit());

  const map = new BlockMap(store.load, (await writer.commit()).root, blocks);
  expect(await map.stackedBlocks(0, 100, 1000)).toEqual({ blocks: stacked, next: null });
  // Three leaves hold stacks, one holds a plain block; every other leaf is a hole and loads nothing.
  const fresh = new BlockMap(store.load, (await writer.commit()).root, blocks);
  const before = store.loads;
  await fresh.stackedBlocks(0, 100, 1000);
  expect(store.loads - before).toBe(1 + 2 + 5); // top, two middle pages, five leaves (four with stacks, one without)
  // Resumable: at most `max` blocks, then from the cursor on; from inside a leaf, earlier slots are skipped.
  const first = await map.stackedBlocks(0, 1, 1000);
  expect(first).toEqual({ blocks: [3], next: 7 });
  expect(await map.stackedBlocks(first.next!, 2, 1000)).toEqual({
    blocks: [7, FANOUT + 1],
    next: FANOUT * 2,
  });
  expect(await map.stackedBlocks(4, 100, 1)).toEqual({ blocks: [7], next: FANOUT });
  expect(await map.stackedBlocks(blocks - 1, 100, 1)).toEqual({ blocks: [blocks - 1], next: null });
});
