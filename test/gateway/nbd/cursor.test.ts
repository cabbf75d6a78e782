import { describe, expect, test } from "bun:test";
import { Reader, utf8, Writer } from "../../../gateway/nbd/cursor.ts";
import { hex, toHex } from "./_bytes.ts";

describe("Writer", () => {
  test("writes big-endian integers, bytes and zeroes", () => {
    const bytes = new Writer(1 + 2 + 4 + 8 + 8 + 3 + 2)
      .u8(0xab)
      .u16(0x0102)
      .u32(0x03040506)
      .u64(0x0708090a0b0c0d0en)
      .u64(2 ** 40 + 5)
      .bytes(utf8("NBD"))
      .zeroes(2)
      .finish();
    expect(toHex(bytes)).toBe(
      "ab01020304050607080 90a0b0c0d0e0000010000000005 4e4244 0000".replace(/ /g, ""),
    );
  });

  test("refuses to overflow, to finish short, and unsafe u64 numbers", () => {
    expect(() => new Writer(1).u16(1)).toThrow(RangeError);
    expect(() => new Writer(2).u8(1).finish()).toThrow(RangeError);
    expect(() => new Writer(8).u64(2 ** 53)).toThrow(RangeError);
    expect(() => new Writer(8).u64(-1)).toThrow(RangeError);
  });
});

describe("Reader", () => {
  test("reads what Writer wrote", () => {
    const r = new Reader(hex("ab 0102 03040506 0708090a0b0c0d0e 0000010000000005 4e4244"));
    expect(r.u8()).toBe(0xab);
    expect(r.u16()).toBe(0x0102);
    expect(r.u32()).toBe(0x03040506);
    expect(r.u64()).toBe(0x0708090a0b0c0d0en);
    expect(r.u64n()).toBe(2 ** 40 + 5);
    expect(r.remaining).toBe(3);
    expect(r.string(3)).toBe("NBD");
    expect(r.remaining).toBe(0);
  });

  test("reads from a view with a byte offset", () => {
    const backing = hex("ffff 00000007 ffff");
    expect(new Reader(backing.subarray(2, 6)).u32()).toBe(7);
  });

  test("bytes() is a view, not a copy", () => {
    const backing = hex("010203");
    const view = new Reader(backing).bytes(2);
    backing[0] = 9;
    expect(view[0]).toBe(9);
  });

  test("reading past the end is a RangeError", () => {
    expect(() => new Reader(hex("0102")).u32()).toThrow(RangeError);
    expect(() => new Reader(hex("")).u8()).toThrow(RangeError);
  });

  test("u64n refuses values that are not safe integers", () => {
    expect(() => new Reader(hex("0020000000000000")).u64n()).toThrow(RangeError);
    expect(new Reader(hex("001fffffffffffff")).u64n()).toBe(Number.MAX_SAFE_INTEGER);
  });

  test("string() rejects invalid UTF-8", () => {
    expect(() => new Reader(hex("c328")).string(2)).toThrow(TypeError);
    expect(new Reader(utf8("grüße")).string(7)).toBe("grüße");
  });
});
