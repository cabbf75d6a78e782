/** WriteCache with patches: their budget, and a failed commit's rebase. */
import { expect, test } from "bun:test";
import { BlockPatch } from "../../../gateway/image/block-patch.ts";
import { DirtyBudget, WriteCache } from "../../../gateway/image/write-cache.ts";

const SIZE = 8;
const patch = (start: number, length: number, value: number) =>
  BlockPatch.of(SIZE, start, length, (b, at) => b.fill(value, at, at + length));

test("a patch counts the bytes it holds against the budget, and the budget comes back on commit", () => {
  const budget = new DirtyBudget(1024);
  const cache = new WriteCache(budget);
  cache.put(0, patch(0, 2, 1));
  expect(cache.dirtyBytes).toBe(2);
  expect(budget.used).toBe(2);
  const batch = cache.take();
  expect(budget.used).toBe(0);
  cache.committed(batch);
  expect(cache.pending(0)).toBeUndefined();
});

test("a failed commit: a newer patch is laid over the block it failed to commit (the map may name a chunk that never landed)", () => {
  const budget = new DirtyBudget(1024);
  const cache = new WriteCache(budget);
  const p0 = patch(0, 2, 1);
  cache.put(0, p0);
  cache.put(1, patch(0, 2, 5));
  const batch = cache.take();
  const whole = p0.over(new Uint8Array(SIZE).fill(9)); // [1,1,9,9,9,9,9,9]
  cache.resolved(0, p0, whole);
  batch.set(0, whole);
  // A write during the resolution window: a patch including p0's range.
  cache.put(
    0,
    p0.with(4, 2, (b, at) => b.fill(2, at, at + 2)),
  );
  cache.failed(batch);
  const after = cache.pending(0)!.content;
  expect(after).toBeInstanceOf(Uint8Array);
  expect([...(after as Uint8Array)]).toEqual([1, 1, 9, 9, 2, 2, 9, 9]);
  // Block 1 was never resolved (the commit failed before): its patch goes back as it was.
  expect(cache.pending(1)!.content).toBeInstanceOf(BlockPatch);
  expect(cache.dirtyBytes).toBe(SIZE + 2); // the whole block 0, the patch of block 1
  expect(budget.used).toBe(SIZE + 2);
});
