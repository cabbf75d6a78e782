/** `image/size-text.ts`: the one size parser of the CLI and the HTTP API. */
import { expect, test } from "bun:test";
import { parseSizeText, SizeTextError } from "../../../gateway/image/size-text.ts";

test("bytes, and K M G T P with or without iB, any case, are powers of 1024", () => {
  expect(parseSizeText("4096")).toBe(4096);
  expect(parseSizeText("10G")).toBe(10 * 2 ** 30);
  expect(parseSizeText("10GiB")).toBe(10 * 2 ** 30);
  expect(parseSizeText(" 10 g ")).toBe(10 * 2 ** 30);
  expect(parseSizeText("1.5M")).toBe(1.5 * 2 ** 20);
  expect(parseSizeText("64kib")).toBe(65536);
  expect(parseSizeText("1P")).toBe(2 ** 50);
  expect(parseSizeText("512B")).toBe(512);
  expect(parseSizeText("0")).toBe(0);
});

test("KB MB GB TB PB are refused with both readings spelled out", () => {
  expect(() => parseSizeText("10GB")).toThrow(
    '"10GB" is ambiguous: write 10G or 10GiB for 10 x 1024^3 bytes, or 10000000000 for 10 x 1000^3',
  );
  expect(() => parseSizeText("5 mb")).toThrow("write 5M or 5MiB");
});

test("negative, fractional bytes, too large and garbage are refused, each saying why", () => {
  expect(() => parseSizeText("-1G")).toThrow('"-1G" is negative');
  expect(() => parseSizeText("1.3K")).toThrow("is not a whole number of bytes");
  expect(() => parseSizeText("9999P")).toThrow("is too large");
  expect(() => parseSizeText("12Q")).toThrow(
    '"12Q" is not a size: use bytes, or a number with K, M, G, T or P',
  );
  expect(() => parseSizeText("")).toThrow(SizeTextError);
});
