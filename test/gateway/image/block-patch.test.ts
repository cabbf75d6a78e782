/** BlockPatch: ranges merge, later writes win, and the patch lays over a base or a hole. */
import { expect, test } from "bun:test";
import { BlockPatch } from "../../../gateway/image/block-patch.ts";

const fillWith = (_start: number, length: number, value: number) => (b: Uint8Array, at: number) =>
  b.fill(value, at, at + length);

test("one write lays its bytes over the base and keeps the rest of it", () => {
  const p = BlockPatch.of(16, 4, 4, fillWith(4, 4, 7));
  expect(p.ranges).toEqual([[4, 8]]);
  const base = new Uint8Array(16).fill(1);
  expect([...p.over(base)]).toEqual([1, 1, 1, 1, 7, 7, 7, 7, 1, 1, 1, 1, 1, 1, 1, 1]);
  expect([...p.over(null)]).toEqual([0, 0, 0, 0, 7, 7, 7, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
  expect([...base]).toEqual(new Array(16).fill(1)); // the base is not modified
});

test("later writes win, ranges merge when they overlap or touch, and the older patch is unchanged", () => {
  const a = BlockPatch.of(16, 2, 4, fillWith(2, 4, 1)); // [2,6)
  const b = a.with(10, 2, fillWith(10, 2, 2)); // [2,6) [10,12)
  const c = b.with(5, 3, fillWith(5, 3, 3)); // [2,8) [10,12)
  const d = c.with(8, 2, fillWith(8, 2, 4)); // touches both: [2,12)
  expect(a.ranges).toEqual([[2, 6]]);
  expect(b.ranges).toEqual([
    [2, 6],
    [10, 12],
  ]);
  expect(c.ranges).toEqual([
    [2, 8],
    [10, 12],
  ]);
  expect(d.ranges).toEqual([[2, 12]]);
  const base = new Uint8Array(16).fill(9);
  expect([...c.over(base)]).toEqual([9, 9, 1, 1, 1, 3, 3, 3, 9, 9, 2, 2, 9, 9, 9, 9]);
  expect([...d.over(base)]).toEqual([9, 9, 1, 1, 1, 3, 3, 3, 4, 4, 2, 2, 9, 9, 9, 9]);
  expect([...a.over(base)]).toEqual([9, 9, 1, 1, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]);
});

test("a write before every range and one spanning several merge in order", () => {
  const p = BlockPatch.of(32, 10, 2, fillWith(10, 2, 1))
    .with(20, 2, fillWith(20, 2, 1))
    .with(0, 2, fillWith(0, 2, 1))
    .with(9, 14, fillWith(9, 14, 2));
  expect(p.ranges).toEqual([
    [0, 2],
    [9, 23],
  ]);
});

test("covers: only a patch over all of the block's data", () => {
  const p = BlockPatch.of(16, 0, 8, fillWith(0, 8, 1));
  expect(p.covers(16)).toBe(false);
  expect(p.covers(8)).toBe(true); // a last block of 8 data bytes
  expect(p.with(8, 8, fillWith(8, 8, 1)).covers(16)).toBe(true);
});

test("a patch holds only the bytes written: a 4 KiB write to a 64 KiB block holds 4 KiB, and a later write shares the ranges it misses", () => {
  const small = BlockPatch.of(65536, 8192, 4096, fillWith(8192, 4096, 3));
  expect(small.byteLength).toBe(4096);
  const two = small.with(40000, 100, fillWith(40000, 100, 4));
  expect(two.byteLength).toBe(4196);
  expect(two.segments()[0]!.bytes).toBe(small.segments()[0]!.bytes); // shared, not copied
  const joined = two.with(12288, 10, fillWith(12288, 10, 5)); // touches the first range
  expect(joined.ranges).toEqual([
    [8192, 12298],
    [40000, 40100],
  ]);
  expect(joined.segments()[1]!.bytes).toBe(two.segments()[1]!.bytes);
  const block = joined.over(null);
  expect([
    block[8191],
    block[8192],
    block[12287],
    block[12288],
    block[12297],
    block[12298],
    block[40000],
  ]).toEqual([0, 3, 3, 5, 5, 0, 4]);
});
