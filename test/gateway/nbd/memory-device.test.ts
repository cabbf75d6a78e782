import { describe, expect, test } from "bun:test";
import { MEMORY_BLOCK_SIZE, MemoryDevice } from "../../../gateway/nbd/memory-device.ts";

const B = MEMORY_BLOCK_SIZE;
const NO_FUA = { fua: false };

function filled(length: number, value: number): Uint8Array {
  return new Uint8Array(length).fill(value);
}

describe("MemoryDevice", () => {
  test("a new device is one hole that reads as zeroes", async () => {
    const d = new MemoryDevice(4 * B);
    expect(await d.read(100, 2 * B)).toEqual(new Uint8Array(2 * B));
    expect(await d.blockStatus(0, 4 * B)).toEqual([{ length: 4 * B, hole: true, zero: true }]);
    expect(d.allocatedBlocks).toBe(0);
  });

  test("an unaligned write across a block boundary reads back and allocates two blocks", async () => {
    const d = new MemoryDevice(4 * B);
    const data = Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff);
    await d.write(B - 300, data, NO_FUA);
    expect(await d.read(B - 300, 1000)).toEqual(data);
    expect(await d.read(B - 301, 1)).toEqual(new Uint8Array(1));
    expect(d.allocatedBlocks).toBe(2);
    expect(await d.blockStatus(0, 4 * B)).toEqual([
      { length: 2 * B, hole: false, zero: false },
      { length: 2 * B, hole: true, zero: true },
    ]);
  });

  test("read returns a copy that later writes do not change", async () => {
    const d = new MemoryDevice(B);
    await d.write(0, filled(10, 1), NO_FUA);
    const before = await d.read(0, 10);
    await d.write(0, filled(10, 2), NO_FUA);
    expect(before).toEqual(filled(10, 1));
  });

  test("write after trim reads back the new data", async () => {
    const d = new MemoryDevice(4 * B);
    await d.write(0, filled(4 * B, 0xab), NO_FUA);
    await d.trim(B, 2 * B, NO_FUA);
    expect(d.allocatedBlocks).toBe(2);
    expect(await d.read(B, 10)).toEqual(new Uint8Array(10));
    await d.write(B + 5, filled(3, 0xcd), NO_FUA);
    expect(await d.read(B + 4, 5)).toEqual(new Uint8Array([0, 0xcd, 0xcd, 0xcd, 0]));
  });

  test("partial-block trims and zero writes clear bytes but keep the block", async () => {
    const d = new MemoryDevice(2 * B);
    await d.write(0, filled(2 * B, 0xff), NO_FUA);
    await d.writeZeroes(10, 20, { fua: false, noHole: false, fastZero: false });
    expect(await d.read(8, 24)).toEqual(new Uint8Array([0xff, 0xff, ...new Array(20).fill(0), 0xff, 0xff]));
    expect(d.allocatedBlocks).toBe(2);
  });

  test("writeZeroes punches whole blocks unless noHole is set", async () => {
    const d = new MemoryDevice(4 * B);
    await d.write(0, filled(4 * B, 1), NO_FUA);
    await d.writeZeroes(0, 2 * B, { fua: false, noHole: false, fastZero: true });
    expect(d.allocatedBlocks).toBe(2);
    await d.writeZeroes(2 * B, 2 * B, { fua: false, noHole: true, fastZero: false });
    expect(d.allocatedBlocks).toBe(2);
    expect(await d.read(0, 4 * B)).toEqual(new Uint8Array(4 * B));
    expect(await d.blockStatus(0, 4 * B)).toEqual([
      { length: 2 * B, hole: true, zero: true },
      { length: 2 * B, hole: false, zero: false },
    ]);
    // noHole on a hole allocates zeroes there.
    const e = new MemoryDevice(B);
    await e.writeZeroes(0, B, { fua: false, noHole: true, fastZero: false });
    expect(e.allocatedBlocks).toBe(1);
  });

  test("blockStatus starts at an unaligned offset and covers exactly the range", async () => {
    const d = new MemoryDevice(4 * B);
    await d.write(2 * B, filled(1, 1), NO_FUA);
    expect(await d.blockStatus(B + 7, 2 * B)).toEqual([
      { length: B - 7, hole: true, zero: true },
      { length: B, hole: false, zero: false },
      { length: 7, hole: true, zero: true },
    ]);
  });

  test("out-of-range calls throw RangeError", async () => {
    const d = new MemoryDevice(B);
    await expect(d.read(B - 1, 2)).rejects.toBeInstanceOf(RangeError);
    await expect(d.write(-1, filled(1, 0), NO_FUA)).rejects.toBeInstanceOf(RangeError);
    expect(() => new MemoryDevice(-5)).toThrow(RangeError);
  });

  test("a read-only device refuses writes with a ReadOnlyError", async () => {
    const d = new MemoryDevice(B, { capabilities: { readOnly: true } });
    await expect(d.write(0, filled(1, 1), NO_FUA)).rejects.toMatchObject({ name: "ReadOnlyError" });
    await expect(d.trim(0, 1, NO_FUA)).rejects.toMatchObject({ name: "ReadOnlyError" });
    expect(d.capabilities.readOnly).toBe(true);
    expect(d.capabilities.flush).toBe(true);
  });

  test("flush is counted", async () => {
    const d = new MemoryDevice(B);
    await d.flush();
    await d.flush();
    expect(d.flushes).toBe(2);
  });
});
