/** Patch chunks (image/patch-chunk.ts): a small write stored as its ranges and bytes, laid over a block. */
import { expect, test } from "bun:test";
import { BlockPatch } from "../../../gateway/image/block-patch.ts";
import { applyPatchChunk, blockWithPatches, encodePatchChunk } from "../../../gateway/image/patch-chunk.ts";

const SIZE = 65536;

function patchOf(writes: [start: number, bytes: Uint8Array][]): BlockPatch {
  let p: BlockPatch | null = null;
  for (const [start, bytes] of writes) {
    const fill = (b: Uint8Array, at: number) => b.set(bytes, at);
    p = p ? p.with(start, bytes.byteLength, fill) : BlockPatch.of(SIZE, start, bytes.byteLength, fill);
  }
  return p!;
}

test("a patch chunk holds only the written ranges and lays them over any base", () => {
  const a = crypto.getRandomValues(new Uint8Array(4096));
  const b = crypto.getRandomValues(new Uint8Array(512));
  const patch = patchOf([
    [8192, a],
    [60000, b],
    [9000, b], // inside the first range
  ]);
  expect(patch.byteLength).toBe(4096 + 512);
  const chunk = encodePatchChunk(patch);
  expect(chunk.byteLength).toBe(12 + 2 * 8 + 4096 + 512);
  const base = crypto.getRandomValues(new Uint8Array(SIZE));
  const block = base.slice();
  applyPatchChunk(block, chunk);
  expect(block as Uint8Array).toEqual(patch.over(base));
  // Over a hole, and stacked: a later patch wins where they overlap.
  const later = patchOf([[8192, new Uint8Array(100).fill(9)]]);
  const stacked = blockWithPatches(null, [chunk, encodePatchChunk(later)], SIZE)!;
  expect(stacked).toEqual(later.over(patch.over(null)));
  expect(blockWithPatches(base, [], SIZE)).toBe(base); // no stack: the base itself, no copy
});

test("a chunk that is not a valid patch for the block is refused", () => {
  const chunk = encodePatchChunk(patchOf([[100, new Uint8Array(50).fill(1)]]));
  const block = () => new Uint8Array(SIZE);
  expect(() => applyPatchChunk(block(), chunk.subarray(0, 10))).toThrow(RangeError);
  expect(() => applyPatchChunk(block(), chunk.subarray(0, chunk.byteLength - 1))).toThrow(RangeError);
  expect(() => applyPatchChunk(block(), new Uint8Array(chunk.byteLength))).toThrow(/magic/);
  expect(() => applyPatchChunk(new Uint8Array(120), chunk)).toThrow(/outside/); // a shorter block
  const extra = new Uint8Array(chunk.byteLength + 1);
  extra.set(chunk);
  expect(() => applyPatchChunk(block(), extra)).toThrow(/trailing/);
});
