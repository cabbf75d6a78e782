/** `walkTree` (backup/tree-walk.ts): every chunk a version references, patch chunks included. */
import { expect, test } from "bun:test";
import type { Hash } from "../../../chunkstore/chunk-store.ts";
import { hashChunk } from "../../../chunkstore/hash.ts";
import { walkTree } from "../../../gateway/backup/tree-walk.ts";
import { BlockMap, FANOUT, ZERO_HASH } from "../../../gateway/image/block-map.ts";

const chunk = (n: number): Hash => hashChunk(new TextEncoder().encode(`data ${n}`));

test("a walk visits each page, each block's chunk and each patch chunk of its stack", async () => {
  const stored = new Map<Hash, Uint8Array>();
  const blocks = FANOUT * 4;
  const map = new BlockMap(async (h) => stored.get(h)!, ZERO_HASH, blocks);
  await map.set(3, chunk(3));
  await map.setPatches(3, [chunk(30), chunk(31)]);
  await map.setPatches(FANOUT * 2 + 1, [chunk(40)]); // over a hole
  await map.set(FANOUT * 3, chunk(5));
  const { root, pages } = await map.commit();
  for (const p of pages) stored.set(p.hash, p.bytes);
  const seen = { pages: [] as Hash[], data: [] as Hash[], unreadable: [] as Hash[] };
  await walkTree(async (h) => stored.get(h)!, root, map.levels, {
    page: (h) => seen.pages.push(h),
    data: (h) => seen.data.push(h),
    unreadable: (h) => seen.unreadable.push(h),
  });
  expect(seen.pages.sort()).toEqual(pages.map((p) => p.hash).sort());
  expect(seen.data.sort()).toEqual([chunk(3), chunk(30), chunk(31), chunk(40), chunk(5)].sort());
  expect(seen.unreadable).toEqual([]);
});
