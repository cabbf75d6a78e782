import { describe, expect, test } from "bun:test";
import { exportFlags } from "../../../gateway/nbd/block-device.ts";
import { NBD_CMD, NBD_CMD_FLAG, NBD_ERRNO, NBD_REPLY_FLAG } from "../../../gateway/nbd/constants.ts";
import { ALL_CAPABILITIES } from "../../../gateway/nbd/memory-device.ts";
import {
  encodeBlockStatus,
  encodeErrorChunk,
  encodeErrorOffsetChunk,
  encodeNoneChunk,
  encodeOffsetDataHeader,
  encodeOffsetHole,
  encodeSimpleReply,
  NbdProtocolError,
  type NbdRequest,
  RequestParser,
  type TransmissionContext,
  toStatusDescriptors,
  validateRequest,
} from "../../../gateway/nbd/transmission.ts";
import { concat, hex, request, splits, toHex } from "./_bytes.ts";

const MAX = 32 << 20;

function parseAll(chunks: Uint8Array[], maxPayload = MAX): NbdRequest[] {
  const parser = new RequestParser({ maxPayload });
  const out: NbdRequest[] = [];
  for (const c of chunks) parser.push(c, (r) => out.push(r));
  return out;
}

/** Requests as plain data with payloads in hex, for comparisons. */
function plain(requests: NbdRequest[]) {
  return requests.map((r) => ({ ...r, payload: r.payload === null ? null : toHex(r.payload) }));
}

describe("RequestParser", () => {
  test("parses a READ request from the spec's layout", () => {
    const bytes = hex("25609513 0000 0000 0102030405060708 0000000000001000 00000200");
    expect(parseAll([bytes])).toEqual([
      {
        flags: 0,
        type: NBD_CMD.READ,
        handle: 0x0102030405060708n,
        offset: 4096,
        length: 512,
        payload: null,
        payloadDropped: false,
      },
    ]);
  });

  test("parses a WRITE with FUA and its payload", () => {
    const bytes = hex("25609513 0001 0001 ffffffffffffffff 0000000100000000 00000003 aabbcc");
    expect(plain(parseAll([bytes]))).toEqual([
      {
        flags: NBD_CMD_FLAG.FUA,
        type: NBD_CMD.WRITE,
        handle: 0xffffffffffffffffn,
        offset: 2 ** 32,
        length: 3,
        payload: "aabbcc",
        payloadDropped: false,
      },
    ]);
  });

  test("a stream of requests with payloads gives the same requests however it is split", () => {
    const payload1 = Uint8Array.from({ length: 37 }, (_, i) => i);
    const payload2 = Uint8Array.from({ length: 300 }, (_, i) => 255 - (i % 256));
    const stream = concat(
      request(NBD_CMD.WRITE, { handle: 1n, offset: 10, payload: payload1 }),
      request(NBD_CMD.READ, { handle: 2n, offset: 512, length: 4096 }),
      request(NBD_CMD.WRITE, { handle: 3n, offset: 0, length: 0 }),
      request(NBD_CMD.FLUSH, { handle: 4n }),
      request(NBD_CMD.WRITE, { flags: NBD_CMD_FLAG.FUA, handle: 5n, offset: 1 << 20, payload: payload2 }),
      request(NBD_CMD.BLOCK_STATUS, { flags: NBD_CMD_FLAG.REQ_ONE, handle: 6n, length: 1 << 30 }),
      request(NBD_CMD.DISC, { handle: 7n }),
    );
    const whole = plain(parseAll([stream]));
    expect(whole.map((r) => [r.handle, r.type, r.length])).toEqual([
      [1n, NBD_CMD.WRITE, 37],
      [2n, NBD_CMD.READ, 4096],
      [3n, NBD_CMD.WRITE, 0],
      [4n, NBD_CMD.FLUSH, 0],
      [5n, NBD_CMD.WRITE, 300],
      [6n, NBD_CMD.BLOCK_STATUS, 1 << 30],
      [7n, NBD_CMD.DISC, 0],
    ]);
    expect(whole[0]!.payload).toBe(toHex(payload1));
    expect(whole[4]!.payload).toBe(toHex(payload2));
    for (const { label, chunks } of splits(stream)) {
      const got = plain(parseAll(chunks));
      if (
        JSON.stringify(got, (_k, v) => (typeof v === "bigint" ? `${v}n` : v)) !==
        JSON.stringify(whole, (_k, v) => (typeof v === "bigint" ? `${v}n` : v))
      ) {
        throw new Error(`${label}: requests differ`);
      }
    }
  });

  test("a 32 MiB WRITE arriving in 64 KiB reads is assembled into one exact buffer", () => {
    const length = 32 << 20;
    const payload = new Uint8Array(length);
    for (let i = 0; i < length; i += 4096) payload[i] = (i / 4096) & 0xff;
    const stream = concat(
      request(NBD_CMD.WRITE, { handle: 9n, payload }),
      request(NBD_CMD.FLUSH, { handle: 10n }),
    );
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < stream.byteLength; at += 65536) chunks.push(stream.subarray(at, at + 65536));
    const got = parseAll(chunks);
    expect(got).toHaveLength(2);
    expect(got[0]!.payload!.byteLength).toBe(length);
    expect(got[0]!.payload!.buffer.byteLength).toBe(length);
    expect(Buffer.compare(got[0]!.payload!, payload)).toBe(0);
    expect(got[1]!.handle).toBe(10n);
  });

  test("a payload that arrives whole in one chunk is passed on without a copy", () => {
    const stream = request(NBD_CMD.WRITE, { payload: new Uint8Array(100).fill(7) });
    const [req] = parseAll([stream]);
    expect(req!.payload!.buffer).toBe(stream.buffer);
  });

  test("a partial request is held between pushes", () => {
    const parser = new RequestParser({ maxPayload: MAX });
    const stream = request(NBD_CMD.WRITE, { payload: new Uint8Array(100) });
    const seen: NbdRequest[] = [];
    parser.push(stream.subarray(0, 10), (r) => seen.push(r));
    expect(parser.buffered).toBe(10);
    parser.push(stream.subarray(10, 60), (r) => seen.push(r));
    expect(parser.buffered).toBe(32);
    parser.push(stream.subarray(60), (r) => seen.push(r));
    expect(parser.buffered).toBe(0);
    expect(seen).toHaveLength(1);
  });

  test("a WRITE announcing 32 MiB holds only what arrived, not the announced length", () => {
    // Issue 9: 200 clients each announcing 32 MiB and sending 4 KiB must not cost 6.4 GiB.
    const parser = new RequestParser({ maxPayload: MAX });
    const header = request(NBD_CMD.WRITE, { length: MAX }).subarray(0, 28);
    parser.push(concat(header, new Uint8Array(4096).fill(7)), () => {
      throw new Error("not complete yet");
    });
    expect(parser.buffered).toBe(4096);
    expect(parser.midRequest).toBe(true);
    expect(parser.retainedBytes).toBeLessThanOrEqual(64 * 1024);
  });

  test("a small piece cut from a large read is copied, so the large read is not kept alive", () => {
    // One 1 MiB socket read: FLUSH requests, then a WRITE header and the first 100 payload bytes.
    const flush = request(NBD_CMD.FLUSH);
    const tail = concat(request(NBD_CMD.WRITE, { length: 1 << 20 }).subarray(0, 28), new Uint8Array(100));
    const count = Math.floor(((1 << 20) - tail.byteLength) / flush.byteLength);
    const chunk = concat(...Array.from({ length: count }, () => flush), tail);
    const parser = new RequestParser({ maxPayload: MAX });
    let flushes = 0;
    parser.push(chunk, () => flushes++);
    expect(flushes).toBe(count);
    expect(parser.buffered).toBe(100);
    expect(parser.retainedBytes).toBeLessThanOrEqual(64 * 1024);
  });

  test("a payload trickled a byte at a time is kept in a few segments and reassembled exactly", () => {
    const parser = new RequestParser({ maxPayload: MAX });
    const payload = Uint8Array.from({ length: 200_000 }, (_, i) => (i * 7) & 0xff);
    const stream = request(NBD_CMD.WRITE, { payload });
    const got: NbdRequest[] = [];
    parser.push(stream.subarray(0, 28), (r) => got.push(r));
    for (let i = 28; i < stream.byteLength - 1; i++)
      parser.push(stream.subarray(i, i + 1), (r) => got.push(r));
    expect(parser.retainedBytes).toBeLessThanOrEqual(payload.byteLength + 64 * 1024);
    parser.push(stream.subarray(stream.byteLength - 1), (r) => got.push(r));
    expect(got).toHaveLength(1);
    expect(toHex(got[0]!.payload!)).toBe(toHex(payload));
    expect(parser.midRequest).toBe(false);
    expect(parser.retainedBytes).toBe(0);
  });

  test("a payload arriving in mixed large and small pieces is reassembled in order", () => {
    const payload = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 13 + 5) & 0xff);
    const stream = request(NBD_CMD.WRITE, { payload });
    const sizes = [40, 70_000, 3, 20_000, 1, 16_384, 9_000, 100_000];
    const chunks: Uint8Array[] = [];
    let at = 0;
    for (let i = 0; at < stream.byteLength; i++) {
      const n = sizes[i % sizes.length]!;
      chunks.push(stream.slice(at, at + n)); // each piece in its own buffer, like socket reads
      at += n;
    }
    const [req] = parseAll(chunks);
    expect(toHex(req!.payload!)).toBe(toHex(payload));
  });

  test("a WRITE longer than maxPayload is read, dropped and flagged; the next request parses", () => {
    const stream = concat(
      request(NBD_CMD.WRITE, { handle: 1n, payload: new Uint8Array(2048).fill(1) }),
      request(NBD_CMD.READ, { handle: 2n, length: 10 }),
    );
    for (const { label, chunks } of splits(stream)) {
      const got = parseAll(chunks, 1024);
      expect(got.map((r) => [r.handle, r.payload, r.payloadDropped])).toEqual([
        [1n, null, true],
        [2n, null, false],
      ]);
      if (got.length !== 2) throw new Error(label);
    }
  });

  test("offsets beyond 2^53 come out as numbers beyond any export size", () => {
    const [req] = parseAll([hex("25609513 0000 0000 0000000000000000 ffffffffffffffff 00000001")]);
    expect(req!.offset).toBeGreaterThan(Number.MAX_SAFE_INTEGER);
  });

  test("a request without the magic is a protocol error, wherever the stream is split", () => {
    const bad = concat(request(NBD_CMD.READ, { length: 1 }), hex("deadbeef"), new Uint8Array(24));
    for (const { chunks } of splits(bad)) {
      expect(() => parseAll(chunks)).toThrow(NbdProtocolError);
    }
    expect(() => parseAll([new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")])).toThrow(
      NbdProtocolError,
    );
  });
});

describe("reply encoders", () => {
  const H = 0x0102030405060708n;
  const h = "0102030405060708";

  test.each([
    ["simple reply, success", encodeSimpleReply(H, 0), `67446698 00000000 ${h}`],
    ["simple reply, EINVAL", encodeSimpleReply(H, NBD_ERRNO.EINVAL), `67446698 00000016 ${h}`],
    [
      "OFFSET_DATA header for 512 bytes at 4096, final",
      encodeOffsetDataHeader(H, NBD_REPLY_FLAG.DONE, 4096, 512),
      `668e33ef 0001 0001 ${h} 00000208 0000000000001000`,
    ],
    [
      "OFFSET_HOLE of 64 KiB at 8 GiB",
      encodeOffsetHole(H, 0, 2 ** 33, 65536),
      `668e33ef 0000 0002 ${h} 0000000c 0000000200000000 00010000`,
    ],
    [
      "BLOCK_STATUS with two descriptors",
      encodeBlockStatus(H, NBD_REPLY_FLAG.DONE, 1, [
        { length: 65536, flags: 0 },
        { length: 131072, flags: 3 },
      ]),
      `668e33ef 0001 0005 ${h} 00000014 00000001 00010000 00000000 00020000 00000003`,
    ],
    [
      "ERROR with a message",
      encodeErrorChunk(H, NBD_REPLY_FLAG.DONE, NBD_ERRNO.EINVAL, "bad"),
      `668e33ef 0001 8001 ${h} 00000009 00000016 0003 626164`,
    ],
    [
      "ERROR without a message",
      encodeErrorChunk(H, NBD_REPLY_FLAG.DONE, NBD_ERRNO.EIO),
      `668e33ef 0001 8001 ${h} 00000006 00000005 0000`,
    ],
    [
      "ERROR_OFFSET",
      encodeErrorOffsetChunk(H, NBD_REPLY_FLAG.DONE, NBD_ERRNO.EIO, 4096, "io"),
      `668e33ef 0001 8002 ${h} 00000010 00000005 0002 696f 0000000000001000`,
    ],
    ["NONE (always DONE)", encodeNoneChunk(H), `668e33ef 0001 0000 ${h} 00000000`],
  ])("%s", (_label, bytes, expected) => {
    expect(toHex(bytes)).toBe(expected.replace(/ /g, ""));
  });

  test("long error messages are cut to at most 1 KiB without splitting a character", () => {
    const bytes = encodeErrorChunk(1n, 1, 5, "é".repeat(5000));
    const messageLength = (bytes[24]! << 8) | bytes[25]!;
    expect(messageLength).toBeLessThanOrEqual(1024);
    expect(bytes.byteLength).toBe(20 + 6 + messageLength);
    const message = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(26));
    expect(message).toMatch(/^é+$/);
  });
});

describe("toStatusDescriptors", () => {
  const data = { hole: false, zero: false };
  const hole = { hole: true, zero: true };

  test("merges neighbours with equal status and maps hole/zero to flags", () => {
    expect(
      toStatusDescriptors(
        [
          { length: 100, ...data },
          { length: 50, ...data },
          { length: 200, ...hole },
          { length: 10, hole: false, zero: true },
        ],
        1000,
        false,
      ),
    ).toEqual([
      { length: 150, flags: 0 },
      { length: 200, flags: 3 },
      { length: 10, flags: 2 },
    ]);
  });

  test("never describes more than the request", () => {
    expect(
      toStatusDescriptors(
        [
          { length: 4096, ...hole },
          { length: 4096, ...data },
        ],
        5000,
        false,
      ),
    ).toEqual([
      { length: 4096, flags: 3 },
      { length: 904, flags: 0 },
    ]);
  });

  test("REQ_ONE keeps only the first descriptor", () => {
    expect(
      toStatusDescriptors(
        [
          { length: 10, ...hole },
          { length: 10, ...data },
        ],
        20,
        true,
      ),
    ).toEqual([{ length: 10, flags: 3 }]);
  });

  test("a device that reports nothing usable gets one 'allocated' descriptor", () => {
    expect(toStatusDescriptors([], 512, false)).toEqual([{ length: 512, flags: 0 }]);
    expect(toStatusDescriptors([{ length: 0, ...hole }], 512, true)).toEqual([{ length: 512, flags: 0 }]);
  });
});

describe("validateRequest", () => {
  const base: TransmissionContext = {
    size: 1 << 20,
    flags: exportFlags(ALL_CAPABILITIES, { structuredReplies: true }),
    blockSizes: { minimum: 1, preferred: 4096, maximum: 65536 },
    structuredReplies: true,
    metaContextId: 1,
  };
  const readOnly: TransmissionContext = {
    ...base,
    flags: exportFlags({ ...ALL_CAPABILITIES, readOnly: true }),
  };
  const bare: TransmissionContext = {
    ...base,
    flags: exportFlags({
      ...ALL_CAPABILITIES,
      flush: false,
      fua: false,
      trim: false,
      writeZeroes: false,
      fastZero: false,
    }),
    structuredReplies: false,
    metaContextId: null,
  };
  const aligned: TransmissionContext = {
    ...base,
    size: (1 << 20) + 100,
    blockSizes: { minimum: 512, preferred: 4096, maximum: 65536 },
  };

  function req(type: number, fields: Partial<NbdRequest> = {}): NbdRequest {
    return {
      flags: 0,
      type,
      handle: 1n,
      offset: 0,
      length: 512,
      payload: null,
      payloadDropped: false,
      ...fields,
    };
  }

  test.each([
    ["READ", base, req(NBD_CMD.READ)],
    ["READ of the last byte", base, req(NBD_CMD.READ, { offset: (1 << 20) - 1, length: 1 })],
    ["READ with DF (structured)", base, req(NBD_CMD.READ, { flags: NBD_CMD_FLAG.DF })],
    [
      "READ with FUA (clients do that; FUA is valid on every command)",
      base,
      req(NBD_CMD.READ, { flags: NBD_CMD_FLAG.FUA }),
    ],
    ["WRITE with FUA", base, req(NBD_CMD.WRITE, { flags: NBD_CMD_FLAG.FUA })],
    ["WRITE of 0 bytes", base, req(NBD_CMD.WRITE, { length: 0 })],
    [
      "FLUSH (offset and length are reserved; junk tolerated)",
      base,
      req(NBD_CMD.FLUSH, { offset: 5, length: 9 }),
    ],
    ["TRIM beyond the maximum block size", base, req(NBD_CMD.TRIM, { length: 1 << 20 })],
    [
      "WRITE_ZEROES with NO_HOLE and FAST_ZERO",
      base,
      req(NBD_CMD.WRITE_ZEROES, { flags: NBD_CMD_FLAG.NO_HOLE | NBD_CMD_FLAG.FAST_ZERO }),
    ],
    [
      "BLOCK_STATUS with REQ_ONE",
      base,
      req(NBD_CMD.BLOCK_STATUS, { flags: NBD_CMD_FLAG.REQ_ONE, length: 1 << 20 }),
    ],
    ["DISC", bare, req(NBD_CMD.DISC)],
    ["READ on a read-only export", readOnly, req(NBD_CMD.READ)],
    ["aligned READ", aligned, req(NBD_CMD.READ, { offset: 1024, length: 512 })],
    [
      "READ of an unaligned tail that ends at the end",
      aligned,
      req(NBD_CMD.READ, { offset: 1 << 20, length: 100 }),
    ],
  ])("accepts %s", (_label, ctx, r) => {
    expect(validateRequest(r, ctx)).toBeNull();
  });

  test.each([
    ["an unknown command", base, req(42), NBD_ERRNO.EINVAL],
    ["NBD_CMD_CACHE (not offered)", base, req(NBD_CMD.CACHE), NBD_ERRNO.EINVAL],
    ["an unknown flag", base, req(NBD_CMD.READ, { flags: 1 << 9 }), NBD_ERRNO.EINVAL],
    ["REQ_ONE on READ", base, req(NBD_CMD.READ, { flags: NBD_CMD_FLAG.REQ_ONE }), NBD_ERRNO.EINVAL],
    ["NO_HOLE on WRITE", base, req(NBD_CMD.WRITE, { flags: NBD_CMD_FLAG.NO_HOLE }), NBD_ERRNO.EINVAL],
    ["DF without structured replies", bare, req(NBD_CMD.READ, { flags: NBD_CMD_FLAG.DF }), NBD_ERRNO.EINVAL],
    ["FUA when not advertised", bare, req(NBD_CMD.WRITE, { flags: NBD_CMD_FLAG.FUA }), NBD_ERRNO.EINVAL],
    [
      "FAST_ZERO when not advertised",
      { ...base, flags: exportFlags({ ...ALL_CAPABILITIES, fastZero: false }) },
      req(NBD_CMD.WRITE_ZEROES, { flags: NBD_CMD_FLAG.FAST_ZERO }),
      NBD_ERRNO.EINVAL,
    ],
    ["WRITE on a read-only export", readOnly, req(NBD_CMD.WRITE), NBD_ERRNO.EPERM],
    ["TRIM on a read-only export", readOnly, req(NBD_CMD.TRIM), NBD_ERRNO.EPERM],
    ["WRITE_ZEROES on a read-only export", readOnly, req(NBD_CMD.WRITE_ZEROES), NBD_ERRNO.EPERM],
    ["FLUSH when not supported", bare, req(NBD_CMD.FLUSH), NBD_ERRNO.EINVAL],
    ["TRIM when not supported", bare, req(NBD_CMD.TRIM), NBD_ERRNO.EINVAL],
    ["WRITE_ZEROES when not supported", bare, req(NBD_CMD.WRITE_ZEROES), NBD_ERRNO.EINVAL],
    ["BLOCK_STATUS without a meta context", bare, req(NBD_CMD.BLOCK_STATUS), NBD_ERRNO.EINVAL],
    ["BLOCK_STATUS of 0 bytes", base, req(NBD_CMD.BLOCK_STATUS, { length: 0 }), NBD_ERRNO.EINVAL],
    ["READ above the maximum block size", base, req(NBD_CMD.READ, { length: 65537 }), NBD_ERRNO.EINVAL],
    [
      "a dropped oversized WRITE",
      base,
      req(NBD_CMD.WRITE, { length: 65537, payloadDropped: true }),
      NBD_ERRNO.EINVAL,
    ],
    ["READ past the end", base, req(NBD_CMD.READ, { offset: (1 << 20) - 1, length: 2 }), NBD_ERRNO.EINVAL],
    ["READ at a huge offset", base, req(NBD_CMD.READ, { offset: 2 ** 64 - 1, length: 1 }), NBD_ERRNO.EINVAL],
    [
      "WRITE past the end (ENOSPC per spec)",
      base,
      req(NBD_CMD.WRITE, { offset: 1 << 20, length: 1 }),
      NBD_ERRNO.ENOSPC,
    ],
    ["TRIM past the end", base, req(NBD_CMD.TRIM, { offset: 1 << 20, length: 1 }), NBD_ERRNO.ENOSPC],
    ["WRITE_ZEROES past the end", base, req(NBD_CMD.WRITE_ZEROES, { length: 2 << 20 }), NBD_ERRNO.ENOSPC],
    [
      "BLOCK_STATUS past the end",
      base,
      req(NBD_CMD.BLOCK_STATUS, { offset: 1 << 20, length: 1 }),
      NBD_ERRNO.EINVAL,
    ],
    ["an unaligned offset", aligned, req(NBD_CMD.READ, { offset: 100, length: 512 }), NBD_ERRNO.EINVAL],
    ["an unaligned length", aligned, req(NBD_CMD.WRITE, { offset: 512, length: 100 }), NBD_ERRNO.EINVAL],
  ])("refuses %s", (_label, ctx, r, errno) => {
    const refused = validateRequest(r, ctx);
    expect(refused?.errno).toBe(errno);
    expect(refused?.message.length).toBeGreaterThan(0);
  });
});
