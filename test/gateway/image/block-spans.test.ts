import { expect, test } from "bun:test";
import { blockSpans, copySpan } from "../../../gateway/image/block-spans.ts";

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

test("copySpan writes every byte of its span: the block's, zeroes for a hole and past a short block", () => {
  const out = new Uint8Array(24).fill(0xa5); // as a buffer that was not zeroed
  const spans = [...blockSpans(4, 24, 8)]; // [4,8) of block 0, block 1, block 2, [0,4) of block 3
  const blocks = [new Uint8Array(8).fill(1), null, new Uint8Array(5).fill(3), new Uint8Array(8).fill(4)];
  for (const s of spans) copySpan(out, s, blocks[s.index]!);
  expect([...out]).toEqual([1, 1, 1, 1, ...new Array(8).fill(0), 3, 3, 3, 3, 3, 0, 0, 0, 4, 4, 4, 4]);
});
