/**
 * `changedChunks` (image/tree-diff.ts) over real block-map trees built in memory: what a
 * newer version references that an older one does not at the same place (map pages and
 * data chunks, holes skipped), reading only the pages on the changed paths.
 */
import { expect, test } from "bun:test";
import type { Hash } from "../../../chunkstore/chunk-store.ts";
import { hashChunk } from "../../../chunkstore/hash.ts";
import { BlockMap, FANOUT, growRoot, ZERO_HASH } from "../../../gateway/image/block-map.ts";
import { type ChangedChunk, changedChunks } from "../../../gateway/image/tree-diff.ts";

/** A page store shared by every version of the tests' trees, counting reads. */
class Pages {
  readonly bytes = new Map<Hash, Uint8Array>();
  reads: Hash[] = [];
  readonly read = async (h: Hash): Promise<Uint8Array> => {
    this.reads.push(h);
    const b = this.bytes.get(h);
    if (!b) throw new Error(`page ${h} is not stored`);
    return b;
  };
  /** A loader for BlockMap that does not count as a read of the diff. */
  readonly load = async (h: Hash): Promise<Uint8Array> => this.bytes.get(h)!;
}

/** A data chunk address, distinct per `n`. */
function chunk(n: number): Hash {
  return hashChunk(new TextEncoder().encode(`data ${n}`));
}

/**
 * Commits `changes` (block -> hash, ZERO_HASH for a hole) on top of `root`; returns the new
 * root, its levels and the pages the commit wrote (stored in `pages`).
 */
async function commit(pages: Pages, root: Hash, blocks: number, changes: Record<number, Hash>) {
  const map = new BlockMap(pages.load, root, blocks);
  for (const [block, hash] of Object.entries(changes)) await map.set(Number(block), hash);
  const c = await map.commit();
  for (const p of c.pages) pages.bytes.set(p.hash, p.bytes);
  return { root: c.root, levels: map.levels, written: c.pages.map((p) => p.hash) };
}

async function collect(gen: AsyncIterable<ChangedChunk>): Promise<ChangedChunk[]> {
  const out: ChangedChunk[] = [];
  for await (const c of gen) out.push(c);
  return out;
}

const byHash = (a: ChangedChunk, b: ChangedChunk) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0);

/** `hashes` as expected yields of one kind, sorted like {@link byHash}. */
function expected(pagesHashes: readonly Hash[], dataHashes: readonly Hash[]): ChangedChunk[] {
  return [
    ...pagesHashes.map((hash) => ({ hash, page: true })),
    ...dataHashes.map((hash) => ({ hash, page: false })),
  ].sort(byHash);
}

/** A three-level tree (more than FANOUT^2 blocks) with data spread over several leaves. */
const BLOCKS = FANOUT * FANOUT * 2;
const SPREAD: Record<number, Hash> = {
  0: chunk(0),
  1: chunk(1),
  300: chunk(300),
  [FANOUT * FANOUT + 7]: chunk(7),
  [FANOUT * FANOUT + FANOUT * 3 + 9]: chunk(9),
  [BLOCKS - 1]: chunk(99),
};

test("identical roots yield nothing and read no page", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  expect(v1.levels).toBe(3);
  pages.reads = [];
  expect(await collect(changedChunks(pages.read, v1.root, v1.root, v1.levels))).toEqual([]);
  expect(pages.reads).toEqual([]);
});

test("an empty new tree (ZERO_HASH) yields nothing", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  expect(await collect(changedChunks(pages.read, v1.root, ZERO_HASH, v1.levels))).toEqual([]);
  expect(await collect(changedChunks(pages.read, ZERO_HASH, ZERO_HASH, 1))).toEqual([]);
});

test("from ZERO_HASH every page and every data chunk of the new tree is yielded once, holes skipped", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  const got = await collect(changedChunks(pages.read, ZERO_HASH, v1.root, v1.levels));
  // The first commit of a tree writes every page it has: root, 2 middle pages, 5 leaves.
  expect(v1.written).toHaveLength(8);
  expect(got).toHaveLength(8 + 6); // each once
  expect(got.sort(byHash)).toEqual(expected(v1.written, Object.values(SPREAD)));
});

test("pages are yielded before the chunks below them (walk order)", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  const got = await collect(changedChunks(pages.read, ZERO_HASH, v1.root, v1.levels));
  expect(got[0]).toEqual({ hash: v1.root, page: true });
  const firstData = got.findIndex((c) => !c.page);
  // Depth first: root, the first middle page, the first leaf, then that leaf's data.
  expect(got.slice(0, firstData).every((c) => c.page)).toBe(true);
  expect(firstData).toBe(3);
  expect(got[firstData]!.hash).toBe(chunk(0));
});

test("a single changed block yields exactly its new chunk and the new pages on its path", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  const block = FANOUT * FANOUT + 7;
  const v2 = await commit(pages, v1.root, BLOCKS, { [block]: chunk(1000) });
  // The commit rewrote the path: root, one middle page, one leaf.
  expect(v2.written).toHaveLength(3);
  pages.reads = [];
  const got = await collect(changedChunks(pages.read, v1.root, v2.root, v2.levels));
  expect(got.sort(byHash)).toEqual(expected(v2.written, [chunk(1000)]));
  // The work follows the change: the old and the new page of each level on the path, nothing else.
  expect(pages.reads).toHaveLength(2 * v2.levels);
});

test("the old pages read by a one-block diff are exactly the pages it replaced", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  const v2 = await commit(pages, v1.root, BLOCKS, { 300: chunk(2000) });
  const v1Pages = (await collect(changedChunks(pages.read, ZERO_HASH, v1.root, v1.levels)))
    .filter((c) => c.page)
    .map((c) => c.hash);
  const v2Pages = (await collect(changedChunks(pages.read, ZERO_HASH, v2.root, v2.levels)))
    .filter((c) => c.page)
    .map((c) => c.hash);
  const replaced = v1Pages.filter((h) => !v2Pages.includes(h));
  expect(replaced).toHaveLength(3);
  pages.reads = [];
  await collect(changedChunks(pages.read, v1.root, v2.root, v2.levels));
  expect([...pages.reads].sort()).toEqual([...replaced, ...v2.written].sort());
});

test("unchanged blocks beside a changed one in the same leaf are not yielded", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  const v2 = await commit(pages, v1.root, BLOCKS, { 1: chunk(3000) });
  const got = await collect(changedChunks(pages.read, v1.root, v2.root, v2.levels));
  const data = got.filter((c) => !c.page).map((c) => c.hash);
  expect(data).toEqual([chunk(3000)]);
  expect(data).not.toContain(chunk(0)); // block 0 shares the leaf and did not change
});

test("a chunk that moved to another block counts as changed there (not at the same place)", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  const v2 = await commit(pages, v1.root, BLOCKS, { 500: chunk(0) });
  const data = (await collect(changedChunks(pages.read, v1.root, v2.root, v2.levels))).filter((c) => !c.page);
  expect(data).toEqual([{ hash: chunk(0), page: false }]);
});

test("a block made a hole yields only the new pages on its path, not the hole", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  const v2 = await commit(pages, v1.root, BLOCKS, { 1: ZERO_HASH });
  const got = await collect(changedChunks(pages.read, v1.root, v2.root, v2.levels));
  expect(got.sort(byHash)).toEqual(expected(v2.written, []));
  expect(got.some((c) => c.hash === ZERO_HASH)).toBe(false);
  // The reverse diff (what the old version had that the new one lacks) finds the removed chunk.
  const removed = (await collect(changedChunks(pages.read, v2.root, v1.root, v1.levels))).filter(
    (c) => !c.page,
  );
  expect(removed).toEqual([{ hash: chunk(1), page: false }]);
});

test("a leaf emptied entirely disappears from the new tree: nothing under it is yielded", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  const lastLeaf = BLOCKS - 1; // alone in its leaf and in its middle page
  const v2 = await commit(pages, v1.root, BLOCKS, { [lastLeaf]: ZERO_HASH });
  // The root and the second middle page are rewritten; the emptied leaf became a hole (no page).
  expect(v2.written).toHaveLength(2);
  const got = await collect(changedChunks(pages.read, v1.root, v2.root, v2.levels));
  expect(got.sort(byHash)).toEqual(expected(v2.written, []));
  expect(got.every((c) => c.page)).toBe(true);
});

test("the reverse diff of several changes finds every chunk the old version had elsewhere", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  const v2 = await commit(pages, v1.root, BLOCKS, {
    0: chunk(4000), // replaced
    300: ZERO_HASH, // removed
    777: chunk(4001), // added in a hole
  });
  const added = (await collect(changedChunks(pages.read, v1.root, v2.root, v2.levels)))
    .filter((c) => !c.page)
    .map((c) => c.hash);
  const removed = (await collect(changedChunks(pages.read, v2.root, v1.root, v1.levels)))
    .filter((c) => !c.page)
    .map((c) => c.hash);
  expect(added.sort()).toEqual([chunk(4000), chunk(4001)].sort());
  expect(removed.sort()).toEqual([chunk(0), chunk(300)].sort());
});

test("a grown image diffs against its old root grown to the new height (growRoot)", async () => {
  const pages = new Pages();
  const small = await commit(pages, ZERO_HASH, FANOUT, { 3: chunk(3), 200: chunk(200) });
  expect(small.levels).toBe(1);
  // The image grows to two levels: the old map becomes the first subtree of the new root.
  const bigBlocks = FANOUT * 4;
  const grown = growRoot(small.root, small.levels, 2);
  for (const p of grown.pages) pages.bytes.set(p.hash, p.bytes);
  const v2 = await commit(pages, grown.root, bigBlocks, { [FANOUT * 2 + 1]: chunk(5000) });
  expect(v2.levels).toBe(2);
  const got = await collect(changedChunks(pages.read, grown.root, v2.root, v2.levels));
  // The new root and the new leaf, and the new chunk; the old leaf (now the first subtree) is shared.
  expect(got.sort(byHash)).toEqual(expected(v2.written, [chunk(5000)]));
  expect(got.some((c) => c.hash === small.root)).toBe(false);
  // Without a base, the grown tree's old leaf and its chunks are part of the walk.
  const full = await collect(changedChunks(pages.read, ZERO_HASH, v2.root, v2.levels));
  expect(full.sort(byHash)).toEqual(
    expected([...v2.written, small.root], [chunk(3), chunk(200), chunk(5000)]),
  );
});

test("an old page that cannot be read costs work, not correctness: its new subtree is walked in full", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  const v2 = await commit(pages, v1.root, BLOCKS, { 0: chunk(6000) });
  const fromZero = await collect(changedChunks(pages.read, ZERO_HASH, v2.root, v2.levels));
  pages.bytes.delete(v1.root); // the old root is gone from every replica
  const got = await collect(changedChunks(pages.read, v1.root, v2.root, v2.levels));
  expect(got.sort(byHash)).toEqual(fromZero.sort(byHash));
});

test("a new page that cannot be read makes the walk fail", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  const v2 = await commit(pages, v1.root, BLOCKS, { 0: chunk(7000) });
  for (const h of v2.written) if (h !== v2.root) pages.bytes.delete(h);
  await expect(collect(changedChunks(pages.read, v1.root, v2.root, v2.levels))).rejects.toThrow(
    "is not stored",
  );
});

test("pages in `skip` are neither yielded nor descended into", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  const all = await collect(changedChunks(pages.read, ZERO_HASH, v1.root, v1.levels));
  // The page right after the root in walk order is the first middle page: skip it.
  const middle = all[1]!;
  expect(middle.page).toBe(true);
  const skip = new Set([middle.hash]);
  pages.reads = [];
  const got = await collect(changedChunks(pages.read, ZERO_HASH, v1.root, v1.levels, skip));
  expect(pages.reads).not.toContain(middle.hash);
  // Blocks 0, 1 and 300 lie under the first middle page; the rest of the tree is still walked.
  const data = got.filter((c) => !c.page).map((c) => c.hash);
  expect(data.sort()).toEqual([chunk(7), chunk(9), chunk(99)].sort());
  expect(got.some((c) => c.hash === middle.hash)).toBe(false);
  // Skipping the root skips everything.
  expect(await collect(changedChunks(pages.read, ZERO_HASH, v1.root, v1.levels, new Set([v1.root])))).toEqual(
    [],
  );
});

test("a one-level tree: the root is the only page and its entries are data chunks", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, 16, { 0: chunk(10), 15: chunk(11) });
  expect(v1.levels).toBe(1);
  const v2 = await commit(pages, v1.root, 16, { 15: chunk(12), 4: chunk(13) });
  const got = await collect(changedChunks(pages.read, v1.root, v2.root, 1));
  expect(got.sort(byHash)).toEqual(expected([v2.root], [chunk(12), chunk(13)]));
});

/** The expected yields of a diff whose data chunks are all patch chunks. */
function withPatches(pagesHashes: readonly Hash[], patchHashes: readonly Hash[]): ChangedChunk[] {
  return [
    ...pagesHashes.map((hash) => ({ hash, page: true })),
    ...patchHashes.map((hash) => ({ hash, page: false, patch: true })),
  ].sort(byHash);
}

test("patch chunks on a leaf's stacks are data: a new one is yielded, one already at its place is not", async () => {
  const pages = new Pages();
  const v1 = await commit(pages, ZERO_HASH, BLOCKS, SPREAD);
  const stack = async (root: Hash, block: number, patches: Hash[]) => {
    const map = new BlockMap(pages.load, root, BLOCKS);
    await map.setPatches(block, patches);
    const c = await map.commit();
    for (const p of c.pages) pages.bytes.set(p.hash, p.bytes);
    return { root: c.root, written: c.pages.map((p) => p.hash) };
  };
  const v2 = await stack(v1.root, 300, [chunk(1000)]);
  expect((await collect(changedChunks(pages.read, v1.root, v2.root, v1.levels))).sort(byHash)).toEqual(
    withPatches(v2.written, [chunk(1000)]),
  );
  // Another patch on the same block: only it is new; a whole walk (a wiped store) finds both.
  const v3 = await stack(v2.root, 300, [chunk(1000), chunk(1001)]);
  expect((await collect(changedChunks(pages.read, v2.root, v3.root, v1.levels))).sort(byHash)).toEqual(
    withPatches(v3.written, [chunk(1001)]),
  );
  const all = await collect(changedChunks(pages.read, ZERO_HASH, v3.root, v1.levels));
  for (const h of [chunk(1000), chunk(1001)])
    expect(all).toContainEqual({ hash: h, page: false, patch: true });
  for (const h of Object.values(SPREAD)) expect(all).toContainEqual({ hash: h, page: false });
  // Patches over a hole in a leaf of its own are found too.
  const v4 = await stack(v3.root, FANOUT * FANOUT + FANOUT * 7 + 3, [chunk(1002)]);
  expect((await collect(changedChunks(pages.read, v3.root, v4.root, v1.levels))).sort(byHash)).toEqual(
    withPatches(v4.written, [chunk(1002)]),
  );
});
