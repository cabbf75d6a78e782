import { expect, test } from "bun:test";
import { hashChunk } from "../../../chunkstore/hash.ts";
import {
  BlockMap,
  decodePage,
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
