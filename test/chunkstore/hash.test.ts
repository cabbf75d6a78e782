import { expect, test } from "bun:test";
import {
  fromHex,
  HASH_ENGINE,
  hashBytes,
  hashBytesWasm,
  hashChunk,
  isHash,
  toHex,
} from "../../chunkstore/hash.ts";

test("the BLAKE3 of the empty input is the published test vector", () => {
  expect(hashChunk(new Uint8Array(0))).toBe(
    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
  );
});

test("the native engine is in use here and agrees with blake3-wasm on many sizes", () => {
  expect(HASH_ENGINE).toBe("native");
  for (const size of [1, 63, 64, 1023, 1024, 1025, 4096, 65536, 65537, 1 << 20]) {
    const bytes = new Uint8Array(size);
    crypto.getRandomValues(bytes.subarray(0, Math.min(size, 65536)));
    expect(toHex(hashBytes(bytes))).toBe(toHex(hashBytesWasm(bytes)));
  }
});

test("isHash accepts only 64 lowercase hex characters", () => {
  expect(isHash("a".repeat(64))).toBe(true);
  expect(isHash("A".repeat(64))).toBe(false);
  expect(isHash("a".repeat(63))).toBe(false);
  expect(isHash(42)).toBe(false);
});

test("fromHex is the inverse of toHex, for lower and upper case digits", () => {
  const bytes = new Uint8Array(256).map((_, i) => i);
  expect(fromHex(toHex(bytes))).toEqual(bytes);
  expect(fromHex(toHex(bytes).toUpperCase())).toEqual(bytes);
  expect(fromHex("00ff10aB")).toEqual(new Uint8Array([0, 255, 16, 171]));
});
