/**
 * The batch frame is a frozen wire format: a golden fixture pins its bytes, and every
 * malformation decodes to a TypeError or RangeError (never a wrong record).
 */
import { describe, expect, test } from "bun:test";
import { BATCH_FRAME, decodeBatch, encodeBatch, RECORD_STATUS } from "../../chunkstore/_batch-frame.ts";
import { MAX_BATCH_HASHES } from "../../chunkstore/limits.ts";
import { randomChunk } from "./conformance.ts";

/** BLAKE3-256 of the empty input. */
const EMPTY_HASH = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
const ABC_HASH = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"; // BLAKE3("abc")

describe("batch frame", () => {
  test("golden bytes: header, then hash, status, length, bytes per record", () => {
    const frame = encodeBatch([
      { hash: ABC_HASH, bytes: new TextEncoder().encode("abc") },
      { hash: EMPTY_HASH, status: RECORD_STATUS.ABSENT },
    ]);
    const hex = Buffer.from(frame).toString("hex");
    expect(hex).toBe(`424d4231${"00000002"}${ABC_HASH}00${"00000003"}616263${EMPTY_HASH}01${"00000000"}`);
    expect(BATCH_FRAME.RECORD_HEADER_BYTES).toBe(37);
    const [a, b] = decodeBatch(frame);
    expect(a).toMatchObject({ hash: ABC_HASH, status: RECORD_STATUS.PRESENT });
    expect(new TextDecoder().decode(a!.bytes)).toBe("abc");
    expect(b).toMatchObject({ hash: EMPTY_HASH, status: RECORD_STATUS.ABSENT });
    expect(b!.bytes.byteLength).toBe(0);
  });

  test("round-trips every status, and decodes from an offset view without copying", () => {
    const c = randomChunk(1000);
    const records = [
      { hash: c.hash, bytes: c.bytes },
      { hash: EMPTY_HASH, status: RECORD_STATUS.ABSENT },
      { hash: ABC_HASH, status: RECORD_STATUS.CORRUPT },
      { hash: c.hash, status: RECORD_STATUS.OMITTED },
    ];
    const frame = encodeBatch(records);
    const padded = new Uint8Array(frame.byteLength + 10);
    padded.set(frame, 5);
    const decoded = decodeBatch(padded.subarray(5, 5 + frame.byteLength));
    expect(decoded.map((r) => [r.hash, r.status])).toEqual([
      [c.hash, 0],
      [EMPTY_HASH, 1],
      [ABC_HASH, 2],
      [c.hash, 3],
    ]);
    expect(decoded[0]!.bytes.buffer).toBe(padded.buffer);
    expect(Buffer.from(decoded[0]!.bytes).equals(Buffer.from(c.bytes))).toBe(true);
    expect(decodeBatch(encodeBatch([]))).toEqual([]);
  });

  test("every truncation of a valid frame is refused", () => {
    const frame = encodeBatch([randomChunk(20), randomChunk(0), randomChunk(7)]);
    for (let cut = 0; cut < frame.byteLength; cut++) {
      expect(() => decodeBatch(frame.subarray(0, cut))).toThrow(TypeError);
    }
  });

  test("bad magic, unknown status, bytes on a non-present record, trailing bytes, too many records", () => {
    const frame = encodeBatch([{ hash: ABC_HASH, bytes: new Uint8Array(3) }]);
    const mutate = (f: (b: Uint8Array, v: DataView) => void) => {
      const b = frame.slice();
      f(b, new DataView(b.buffer));
      return b;
    };
    expect(() => decodeBatch(mutate((b) => (b[3] = 0x32)))).toThrow(TypeError);
    expect(() => decodeBatch(mutate((b) => (b[8 + 32] = 9)))).toThrow(TypeError);
    expect(() => decodeBatch(mutate((b) => (b[8 + 32] = RECORD_STATUS.ABSENT)))).toThrow(TypeError);
    const trailing = new Uint8Array(frame.byteLength + 1);
    trailing.set(frame);
    expect(() => decodeBatch(trailing)).toThrow(TypeError);
    expect(() => decodeBatch(mutate((_, v) => v.setUint32(4, MAX_BATCH_HASHES + 1)))).toThrow(RangeError);
    expect(() => decodeBatch(mutate((_, v) => v.setUint32(8 + 33, 0xffffffff)))).toThrow(RangeError);
    expect(() => encodeBatch([{ hash: "nope" }])).toThrow(TypeError);
    expect(() =>
      encodeBatch([{ hash: ABC_HASH, status: RECORD_STATUS.ABSENT, bytes: new Uint8Array(1) }]),
    ).toThrow(TypeError);
  });
});
