import { describe, expect, test } from "bun:test";
import { AwsChunkedDecoder, type ChunkedEvent } from "../../../gateway/s3/aws-chunked-decoder.ts";

const SIG_A = "a".repeat(64);
const SIG_B = "b".repeat(64);
const SIG_T = "c".repeat(64);

/** Runs the decoder over `body` cut at `cuts`, and folds the events into a comparable summary. */
function decode(body: Uint8Array, cuts: number[]) {
  const d = new AwsChunkedDecoder();
  const events: ChunkedEvent[] = [];
  let at = 0;
  for (const c of [...cuts, body.byteLength]) {
    events.push(...d.push(body.subarray(at, c)));
    at = c;
  }
  events.push(...d.finish());
  const data: number[] = [];
  const shape: unknown[] = [];
  for (const e of events) {
    if (e.type === "data") data.push(...e.bytes);
    else shape.push(e);
  }
  return { data: Buffer.from(data).toString(), shape };
}

const enc = (s: string) => new TextEncoder().encode(s);

describe("aws-chunked decoder", () => {
  const signed = enc(
    `5;chunk-signature=${SIG_A}\r\nhello\r\n0;chunk-signature=${SIG_B}\r\nx-amz-checksum-crc32:AAAAAA==\r\nx-amz-trailer-signature:${SIG_T}\r\n\r\n`,
  );
  const expected = {
    data: "hello",
    shape: [
      { type: "chunk", size: 5, signature: SIG_A },
      { type: "chunk-end" },
      { type: "chunk", size: 0, signature: SIG_B },
      { type: "chunk-end" },
      { type: "trailer", headers: [["x-amz-checksum-crc32", "AAAAAA=="]], signature: SIG_T },
      { type: "end" },
    ],
  };

  test("a signed body with a trailer decodes the same split at every byte", () => {
    for (let i = 0; i <= signed.byteLength; i++) expect(decode(signed, [i])).toEqual(expected);
  });

  test("a signed body decodes the same split at every pair of bytes", () => {
    for (let i = 0; i <= signed.byteLength; i += 3) {
      for (let j = i; j <= signed.byteLength; j += 5) expect(decode(signed, [i, j])).toEqual(expected);
    }
  });

  test("an unsigned body that ends at 0 CRLF without a trailer (as some SDKs send) is complete", () => {
    const body = enc("3\r\nabc\r\na\r\n0123456789\r\n0\r\n");
    for (let i = 0; i <= body.byteLength; i++) {
      const r = decode(body, [i]);
      expect(r.data).toBe("abc0123456789");
      expect(r.shape.at(-2)).toEqual({ type: "trailer", headers: [] });
    }
  });

  test("a body cut short, a bad chunk header or missing CRLF after data are IncompleteBody", () => {
    for (const bad of ["5\r\nhel", "zz\r\n", "3\r\nabcX\r\n0\r\n\r\n", `${"1".repeat(5000)}`]) {
      expect(() => decode(enc(bad), [])).toThrow(/aws-chunked/);
    }
  });
});
