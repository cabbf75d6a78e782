import { expect, test } from "bun:test";
import { blockSpans } from "../../../gateway/image/block-spans.ts";

test("a range inside one block is one span", () => {
  expect([...blockSpans(100, 50, 4096)]).toEqual([{ index: 0, inBlock: 100, length: 50, at: 0 }]);
});

test("a range across blocks splits at block edges and the spans cover it exactly", () => {
  const spans = [...blockSpans(4000, 10_000, 4096)];
  expect(spans).toEqual([
    { index: 0, inBlock: 4000, length: 96, at: 0 },
    { index: 1, inBlock: 0, length: 4096, at: 96 },
    { index: 2, inBlock: 0, length: 4096, at: 4192 },
    { index: 3, inBlock: 0, length: 1712, at: 8288 },
  ]);
  expect(spans.reduce((a, s) => a + s.length, 0)).toBe(10_000);
});

test("an empty range has no spans", () => {
  expect([...blockSpans(8192, 0, 4096)]).toEqual([]);
});
