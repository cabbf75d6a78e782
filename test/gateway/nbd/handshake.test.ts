import { describe, expect, test } from "bun:test";
import type { BlockDeviceCapabilities, ExportEntry } from "../../../gateway/nbd/block-device.ts";
import { NBD_INFO, NBD_OPT, NBD_REP } from "../../../gateway/nbd/constants.ts";
import {
  type ExportDetails,
  Handshake,
  type HandshakeNext,
  type HandshakeTls,
  MAX_OPTION_BYTES,
  type NegotiatedSession,
} from "../../../gateway/nbd/handshake.ts";
import {
  be16,
  be32,
  be64,
  concat,
  hex,
  IHAVEOPT,
  infoData,
  metaData,
  option,
  optionReply,
  request,
  splits,
  text,
  toHex,
} from "./_bytes.ts";

const ALL: BlockDeviceCapabilities = {
  readOnly: false,
  flush: true,
  fua: true,
  trim: true,
  writeZeroes: true,
  fastZero: true,
  multiConn: true,
  blockStatus: true,
};
const SIZE = 0x100000;
const DISK: ExportDetails = {
  size: SIZE,
  capabilities: ALL,
  blockSizes: { minimum: 1, preferred: 4096, maximum: 32 << 20 },
  description: "test disk",
};
const SNAP: ExportDetails = {
  size: SIZE,
  capabilities: { ...ALL, readOnly: true, blockStatus: false },
  blockSizes: { minimum: 512, preferred: 65536, maximum: 1 << 20 },
};
const EXPORTS: Record<string, ExportDetails | Error> = {
  disk: DISK,
  "img@snap": SNAP,
  broken: new Error("store b returned 503"),
};
const LIST: ExportEntry[] = [{ name: "disk", description: "test disk" }, { name: "img@snap" }];

/** Flags of DISK: all capabilities, without (0x96d) and with (0x9ed, adds SEND_DF) structured replies. */
const DISK_FLAGS = 0x96d;
const DISK_FLAGS_STRUCTURED = 0x9ed;

/** What the server sends first, as the spec lays it out: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE|NO_ZEROES. */
const GREETING = hex("4e42444d41474943 49484156454f5054 0003");
const FLAGS_FIXED_NO_ZEROES = be32(3);

interface Outcome {
  sent: Uint8Array;
  final: HandshakeNext;
  session: NegotiatedSession | null;
  /** Bytes after the handshake: the session's leftover plus chunks not fed to the handshake. */
  after: Uint8Array;
  lookups: string[];
  /** Bytes the server sent before it asked for the TLS upgrade (plaintext), or null if it never did. */
  plaintext: Uint8Array | null;
}

/**
 * Runs a handshake over `chunks`, answering lookups from EXPORTS and lists from LIST.
 * With `tls`, a "starttls" step upgrades: `tlsStarted()` is called and `tlsChunks`
 * (what the client sends inside TLS) are fed from then on; plaintext chunks left at
 * that point would go to the TLS layer in a real server, so they count as `after`.
 */
function drive(
  chunks: Uint8Array[],
  list: ExportEntry[] | Error = LIST,
  options: { tls?: HandshakeTls; tlsChunks?: Uint8Array[] } = {},
): Outcome {
  const hs = new Handshake({ tls: options.tls ?? "none" });
  const sent: Uint8Array[] = [hs.start()];
  const lookups: string[] = [];
  let final: HandshakeNext = { kind: "more" };
  let session: NegotiatedSession | null = null;
  let plaintext: Uint8Array | null = null;
  const rest: Uint8Array[] = [];
  const queue = [...chunks];
  for (let chunk = queue.shift(); chunk !== undefined; chunk = queue.shift()) {
    if (final.kind === "transmission" || final.kind === "close" || final.kind === "starttls") {
      rest.push(chunk);
      continue;
    }
    let step = hs.feed(chunk);
    for (;;) {
      sent.push(...step.send);
      const next = step.next;
      if (next.kind === "list") {
        step = hs.answerList(list);
      } else if (next.kind === "lookup") {
        lookups.push(`${next.purpose}:${next.name}`);
        step = hs.answerLookup(EXPORTS[next.name] ?? null);
      } else if (next.kind === "starttls" && options.tlsChunks !== undefined && plaintext === null) {
        plaintext = concat(...sent);
        rest.push(...queue.splice(0)); // would reach the TLS layer, not the handshake
        queue.push(...options.tlsChunks);
        step = hs.tlsStarted();
      } else {
        final = next;
        if (next.kind === "transmission") session = next.session;
        break;
      }
    }
  }
  return {
    sent: concat(...sent),
    final,
    session,
    after: concat(session?.leftover ?? new Uint8Array(0), ...rest),
    lookups,
    plaintext,
  };
}

/** Splits server output after the greeting into option replies. */
function parseReplies(bytes: Uint8Array): { option: number; type: number; data: Uint8Array }[] {
  const out: { option: number; type: number; data: Uint8Array }[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at < bytes.byteLength) {
    expect(toHex(bytes.subarray(at, at + 8))).toBe("0003e889045565a9");
    const length = view.getUint32(at + 16);
    out.push({
      option: view.getUint32(at + 8),
      type: view.getUint32(at + 12),
      data: bytes.slice(at + 20, at + 20 + length),
    });
    at += 20 + length;
  }
  return out;
}

/**
 * Runs `client` whole, checks the result with `check`, then delivers it split
 * at every byte position (and byte by byte) and expects identical output.
 * Messages over 2 KiB (the option-limit tests) are split at every 61st
 * position only, to keep the quadratic cost of the test itself in check.
 */
function everySplit(client: Uint8Array, check: (outcome: Outcome) => void): void {
  const whole = drive([client]);
  check(whole);
  const step = client.byteLength > 2048 ? 61 : 1;
  for (const { label, chunks } of splits(client)) {
    const at = chunks.length === 2 ? chunks[0]!.byteLength : -1;
    if (at > 20 && at % step !== 0 && at < client.byteLength - 20) continue;
    const split = drive(chunks);
    if (toHex(split.sent) !== toHex(whole.sent)) throw new Error(`${label}: server output differs`);
    if (split.final.kind !== whole.final.kind) throw new Error(`${label}: ended in ${split.final.kind}`);
    if (whole.final.kind === "transmission" && toHex(split.after) !== toHex(whole.after))
      throw new Error(`${label}: leftover differs`);
    expect(split.lookups).toEqual(whole.lookups);
  }
}

function afterGreeting(o: Outcome): Uint8Array {
  expect(toHex(o.sent.subarray(0, 18))).toBe(toHex(GREETING));
  return o.sent.subarray(18);
}

function expectError(
  reply: { type: number; data: Uint8Array } | undefined,
  type: number,
  pattern?: RegExp,
): void {
  expect(reply?.type).toBe(type);
  const message = new TextDecoder().decode(reply!.data);
  expect(message.length).toBeGreaterThan(0); // error replies carry a message for humans
  if (pattern) expect(message).toMatch(pattern);
}

describe("Handshake: entering transmission", () => {
  test("greeting is NBDMAGIC, IHAVEOPT and FIXED_NEWSTYLE|NO_ZEROES", () => {
    expect(toHex(new Handshake().start())).toBe(toHex(GREETING));
  });

  test("NBD_OPT_EXPORT_NAME with NO_ZEROES: size and flags, no padding", () => {
    const client = concat(FLAGS_FIXED_NO_ZEROES, option(NBD_OPT.EXPORT_NAME, text("disk")));
    everySplit(client, (o) => {
      expect(toHex(afterGreeting(o))).toBe(toHex(concat(be64(SIZE), be16(DISK_FLAGS))));
      expect(o.final.kind).toBe("transmission");
      expect(o.session).toMatchObject({
        name: "disk",
        structuredReplies: false,
        metaContextId: null,
        flags: DISK_FLAGS,
      });
      expect(o.lookups).toEqual(["go:disk"]);
    });
  });

  test("NBD_OPT_EXPORT_NAME without NO_ZEROES gets the 124 zero bytes", () => {
    const o = drive([concat(be32(1), option(NBD_OPT.EXPORT_NAME, text("disk")))]);
    expect(toHex(afterGreeting(o))).toBe(toHex(concat(be64(SIZE), be16(DISK_FLAGS), new Uint8Array(124))));
  });

  test("a non-fixed-newstyle client (flags 0) can still use NBD_OPT_EXPORT_NAME", () => {
    const o = drive([concat(be32(0), option(NBD_OPT.EXPORT_NAME, text("disk")))]);
    expect(o.final.kind).toBe("transmission");
    expect(afterGreeting(o).byteLength).toBe(8 + 2 + 124);
  });

  test("the empty name is an ordinary lookup (the provider decides on a default)", () => {
    const o = drive([concat(FLAGS_FIXED_NO_ZEROES, option(NBD_OPT.EXPORT_NAME))]);
    expect(o.lookups).toEqual(["go:"]);
    expect(o.final.kind).toBe("close");
  });

  test("qemu's sequence: STRUCTURED_REPLY, SET_META_CONTEXT, GO, then a request in the same packet", () => {
    const firstRequest = request(0, { handle: 7n, offset: 0, length: 512 });
    const client = concat(
      FLAGS_FIXED_NO_ZEROES,
      option(NBD_OPT.STRUCTURED_REPLY),
      option(NBD_OPT.SET_META_CONTEXT, metaData("disk", ["base:allocation"])),
      option(NBD_OPT.GO, infoData("disk", [NBD_INFO.BLOCK_SIZE])),
      firstRequest,
    );
    everySplit(client, (o) => {
      expect(toHex(afterGreeting(o))).toBe(
        toHex(
          concat(
            optionReply(NBD_OPT.STRUCTURED_REPLY, NBD_REP.ACK),
            optionReply(
              NBD_OPT.SET_META_CONTEXT,
              NBD_REP.META_CONTEXT,
              concat(be32(1), text("base:allocation")),
            ),
            optionReply(NBD_OPT.SET_META_CONTEXT, NBD_REP.ACK),
            optionReply(
              NBD_OPT.GO,
              NBD_REP.INFO,
              concat(be16(NBD_INFO.EXPORT), be64(SIZE), be16(DISK_FLAGS_STRUCTURED)),
            ),
            optionReply(
              NBD_OPT.GO,
              NBD_REP.INFO,
              concat(be16(NBD_INFO.BLOCK_SIZE), be32(1), be32(4096), be32(32 << 20)),
            ),
            optionReply(NBD_OPT.GO, NBD_REP.ACK),
          ),
        ),
      );
      expect(o.session).toMatchObject({ name: "disk", structuredReplies: true, metaContextId: 1 });
      expect(toHex(o.after)).toBe(toHex(firstRequest));
      expect(o.lookups).toEqual(["meta:disk", "go:disk"]);
    });
  });

  test("NBD_OPT_INFO answers NAME and DESCRIPTION when asked, ignores unknown info types, and continues", () => {
    const client = concat(
      FLAGS_FIXED_NO_ZEROES,
      option(NBD_OPT.INFO, infoData("disk", [NBD_INFO.NAME, 99, NBD_INFO.DESCRIPTION])),
      option(NBD_OPT.GO, infoData("img@snap")),
    );
    everySplit(client, (o) => {
      const replies = parseReplies(afterGreeting(o));
      expect(replies.map((r) => [r.option, r.type])).toEqual([
        [NBD_OPT.INFO, NBD_REP.INFO],
        [NBD_OPT.INFO, NBD_REP.INFO],
        [NBD_OPT.INFO, NBD_REP.INFO],
        [NBD_OPT.INFO, NBD_REP.INFO],
        [NBD_OPT.INFO, NBD_REP.ACK],
        [NBD_OPT.GO, NBD_REP.INFO],
        [NBD_OPT.GO, NBD_REP.INFO],
        [NBD_OPT.GO, NBD_REP.ACK],
      ]);
      expect(toHex(replies[1]!.data)).toBe(toHex(concat(be16(NBD_INFO.NAME), text("disk"))));
      expect(toHex(replies[2]!.data)).toBe(toHex(concat(be16(NBD_INFO.DESCRIPTION), text("test disk"))));
      // img@snap is read-only: HAS_FLAGS | READ_ONLY | SEND_FLUSH | CAN_MULTI_CONN.
      expect(toHex(replies[5]!.data)).toBe(toHex(concat(be16(NBD_INFO.EXPORT), be64(SIZE), be16(0x107))));
      expect(toHex(replies[6]!.data)).toBe(toHex(concat(be16(3), be32(512), be32(65536), be32(1 << 20))));
      expect(o.session).toMatchObject({ name: "img@snap", flags: 0x107 });
    });
  });

  test("meta contexts selected for another export do not carry over to GO", () => {
    const o = drive([
      concat(
        FLAGS_FIXED_NO_ZEROES,
        option(NBD_OPT.STRUCTURED_REPLY),
        option(NBD_OPT.SET_META_CONTEXT, metaData("disk", ["base:allocation"])),
        option(NBD_OPT.GO, infoData("img@snap")),
      ),
    ]);
    expect(o.session?.metaContextId).toBeNull();
  });

  test("a later SET_META_CONTEXT without base:allocation deselects it", () => {
    const o = drive([
      concat(
        FLAGS_FIXED_NO_ZEROES,
        option(NBD_OPT.STRUCTURED_REPLY),
        option(NBD_OPT.SET_META_CONTEXT, metaData("disk", ["base:allocation"])),
        option(NBD_OPT.SET_META_CONTEXT, metaData("disk", [])),
        option(NBD_OPT.GO, infoData("disk")),
      ),
    ]);
    expect(o.session?.metaContextId).toBeNull();
  });
});

describe("Handshake: listing", () => {
  test("NBD_OPT_LIST sends one SERVER reply per export, then ACK; ABORT is acknowledged and closes", () => {
    const client = concat(FLAGS_FIXED_NO_ZEROES, option(NBD_OPT.LIST), option(NBD_OPT.ABORT));
    everySplit(client, (o) => {
      expect(toHex(afterGreeting(o))).toBe(
        toHex(
          concat(
            optionReply(NBD_OPT.LIST, NBD_REP.SERVER, concat(be32(4), text("disk"), text("test disk"))),
            optionReply(NBD_OPT.LIST, NBD_REP.SERVER, concat(be32(8), text("img@snap"))),
            optionReply(NBD_OPT.LIST, NBD_REP.ACK),
            optionReply(NBD_OPT.ABORT, NBD_REP.ACK),
          ),
        ),
      );
      expect(o.final.kind).toBe("close");
    });
  });

  test("a failing export list is reported as NBD_REP_ERR_POLICY with the reason", () => {
    const o = drive([concat(FLAGS_FIXED_NO_ZEROES, option(NBD_OPT.LIST))], new Error("witness unreachable"));
    const [reply] = parseReplies(afterGreeting(o));
    expectError(reply, NBD_REP.ERR_POLICY, /witness unreachable/);
    expect(o.final.kind).toBe("more");
  });

  test("LIST_META_CONTEXT lists base:allocation (ID 0) for no query, for base: and for the full name", () => {
    for (const queries of [[], ["base:"], ["base:allocation"], ["qemu:dirty-bitmap:x", "base:allocation"]]) {
      const client = concat(
        FLAGS_FIXED_NO_ZEROES,
        option(NBD_OPT.STRUCTURED_REPLY),
        option(NBD_OPT.LIST_META_CONTEXT, metaData("disk", queries)),
      );
      everySplit(client, (o) => {
        expect(toHex(afterGreeting(o))).toBe(
          toHex(
            concat(
              optionReply(NBD_OPT.STRUCTURED_REPLY, NBD_REP.ACK),
              optionReply(
                NBD_OPT.LIST_META_CONTEXT,
                NBD_REP.META_CONTEXT,
                concat(be32(0), text("base:allocation")),
              ),
              optionReply(NBD_OPT.LIST_META_CONTEXT, NBD_REP.ACK),
            ),
          ),
        );
      });
    }
  });

  test("meta-context queries that match nothing, or an export without block status, get a bare ACK", () => {
    for (const [name, queries] of [
      ["disk", ["qemu:dirty-bitmap:x"]],
      ["disk", ["base:allocationX"]],
      ["img@snap", []],
    ] as const) {
      for (const opt of [NBD_OPT.LIST_META_CONTEXT, NBD_OPT.SET_META_CONTEXT]) {
        const o = drive([
          concat(
            FLAGS_FIXED_NO_ZEROES,
            option(NBD_OPT.STRUCTURED_REPLY),
            option(opt, metaData(name, [...queries])),
          ),
        ]);
        expect(toHex(afterGreeting(o))).toBe(
          toHex(concat(optionReply(NBD_OPT.STRUCTURED_REPLY, NBD_REP.ACK), optionReply(opt, NBD_REP.ACK))),
        );
      }
    }
  });
});

describe("Handshake: errors the spec prescribes", () => {
  /** Sends one option after the client flags and returns the single reply. */
  function replyTo(opt: Uint8Array, before: Uint8Array = new Uint8Array(0)) {
    const client = concat(FLAGS_FIXED_NO_ZEROES, before, opt, option(NBD_OPT.LIST));
    let replies: ReturnType<typeof parseReplies> = [];
    everySplit(client, (o) => {
      replies = parseReplies(afterGreeting(o));
      expect(o.final.kind).toBe("more"); // the session goes on: the LIST after the error was answered
      expect(replies.at(-1)?.type).toBe(NBD_REP.ACK);
    });
    return replies.filter((r) => r.type >= 0x80000000); // the errors; ACKs and the final LIST are checked above
  }

  test.each([
    ["an unknown option", option(99), NBD_REP.ERR_UNSUP],
    ["NBD_OPT_EXTENDED_HEADERS (not implemented)", option(NBD_OPT.EXTENDED_HEADERS), NBD_REP.ERR_UNSUP],
    ["NBD_OPT_STARTTLS (no TLS here)", option(NBD_OPT.STARTTLS), NBD_REP.ERR_POLICY],
    ["NBD_OPT_LIST with data", option(NBD_OPT.LIST, text("x")), NBD_REP.ERR_INVALID],
    ["NBD_OPT_STRUCTURED_REPLY with data", option(NBD_OPT.STRUCTURED_REPLY, text("x")), NBD_REP.ERR_INVALID],
    ["NBD_OPT_GO shorter than 6 bytes", option(NBD_OPT.GO, hex("0000000000")), NBD_REP.ERR_INVALID],
    [
      "NBD_OPT_GO with a name longer than the data",
      option(NBD_OPT.GO, hex("00000010 6469736b 0000")),
      NBD_REP.ERR_INVALID,
    ],
    [
      "NBD_OPT_GO with a wrong info count",
      option(NBD_OPT.GO, concat(infoData("disk"), be16(3))),
      NBD_REP.ERR_INVALID,
    ],
    ["NBD_OPT_INFO with a NUL in the name", option(NBD_OPT.INFO, infoData("di\0sk")), NBD_REP.ERR_INVALID],
    [
      "NBD_OPT_INFO with invalid UTF-8",
      option(NBD_OPT.INFO, concat(be32(2), hex("c328"), be16(0))),
      NBD_REP.ERR_INVALID,
    ],
    [
      "NBD_OPT_INFO with a 4097-byte name",
      option(NBD_OPT.INFO, infoData("x".repeat(4097))),
      NBD_REP.ERR_TOO_BIG,
    ],
    ["NBD_OPT_GO for an unknown export", option(NBD_OPT.GO, infoData("nope")), NBD_REP.ERR_UNKNOWN],
    [
      "NBD_OPT_INFO for an export that fails to open",
      option(NBD_OPT.INFO, infoData("broken")),
      NBD_REP.ERR_UNKNOWN,
    ],
    [
      "LIST_META_CONTEXT before structured replies",
      option(NBD_OPT.LIST_META_CONTEXT, metaData("disk", [])),
      NBD_REP.ERR_INVALID,
    ],
    [
      "SET_META_CONTEXT before structured replies",
      option(NBD_OPT.SET_META_CONTEXT, metaData("disk", ["base:allocation"])),
      NBD_REP.ERR_INVALID,
    ],
  ])("%s", (_label, opt, type) => {
    const replies = replyTo(opt);
    expect(replies).toHaveLength(1);
    expectError(replies[0], type);
  });

  test("a failing export open is explained to the client", () => {
    const [reply] = replyTo(option(NBD_OPT.GO, infoData("broken")));
    expectError(reply, NBD_REP.ERR_UNKNOWN, /store b returned 503/);
  });

  test.each([
    ["an unknown export", metaData("nope", ["base:allocation"]), NBD_REP.ERR_UNKNOWN],
    [
      "a query count beyond the data",
      concat(be32(4), text("disk"), be32(2), be32(1), text("x")),
      NBD_REP.ERR_INVALID,
    ],
    ["trailing bytes", concat(metaData("disk", []), hex("00")), NBD_REP.ERR_INVALID],
    [
      "a query longer than the data",
      concat(be32(4), text("disk"), be32(1), be32(50), text("base:")),
      NBD_REP.ERR_INVALID,
    ],
  ])("SET_META_CONTEXT with %s", (_label, data, type) => {
    const replies = replyTo(option(NBD_OPT.SET_META_CONTEXT, data), option(NBD_OPT.STRUCTURED_REPLY));
    expect(replies).toHaveLength(1);
    expectError(replies[0], type);
  });

  test("an option longer than the limit is skipped without buffering and refused with ERR_TOO_BIG", () => {
    const big = new Uint8Array(MAX_OPTION_BYTES + 1).fill(0x41);
    const replies = replyTo(option(NBD_OPT.SET_META_CONTEXT, big));
    expectError(replies[0], NBD_REP.ERR_TOO_BIG);
    // Unknown options are refused as unknown, whatever their size.
    expectError(replyTo(option(1234, big))[0], NBD_REP.ERR_UNSUP);
  });

  test("an option at the limit is still read", () => {
    const name = "x".repeat(4096);
    const queries = Array.from({ length: 2 }, () => "y".repeat(4096));
    const data = metaData(name, queries);
    expect(data.byteLength).toBeLessThanOrEqual(MAX_OPTION_BYTES);
    const replies = replyTo(option(NBD_OPT.SET_META_CONTEXT, data), option(NBD_OPT.STRUCTURED_REPLY));
    expectError(replies[0], NBD_REP.ERR_UNKNOWN); // parsed fine; there is no such export
  });
});

describe("Handshake: hard disconnects", () => {
  test.each([
    ["unknown client flags", concat(be32(4), option(NBD_OPT.LIST))],
    [
      "an option without the IHAVEOPT magic",
      concat(FLAGS_FIXED_NO_ZEROES, hex("4948415645000000"), be32(3), be32(0)),
    ],
    [
      "NBD_OPT_EXPORT_NAME for an unknown export (it cannot be refused otherwise)",
      concat(FLAGS_FIXED_NO_ZEROES, option(NBD_OPT.EXPORT_NAME, text("nope"))),
    ],
    [
      "NBD_OPT_EXPORT_NAME for an export that fails to open",
      concat(FLAGS_FIXED_NO_ZEROES, option(NBD_OPT.EXPORT_NAME, text("broken"))),
    ],
    [
      "NBD_OPT_EXPORT_NAME with invalid UTF-8",
      concat(FLAGS_FIXED_NO_ZEROES, option(NBD_OPT.EXPORT_NAME, hex("ff"))),
    ],
    [
      "NBD_OPT_EXPORT_NAME longer than the option limit",
      concat(FLAGS_FIXED_NO_ZEROES, IHAVEOPT, be32(NBD_OPT.EXPORT_NAME), be32(MAX_OPTION_BYTES + 1)),
    ],
  ])("%s", (_label, client) => {
    everySplit(client, (o) => {
      expect(o.final.kind).toBe("close");
      expect(afterGreeting(o).byteLength).toBe(0);
    });
  });

  test("bytes after a close are ignored", () => {
    const hs = new Handshake();
    expect(hs.feed(concat(be32(8))).next.kind).toBe("close");
    expect(hs.feed(option(NBD_OPT.LIST)).next.kind).toBe("close");
  });
});

describe("Handshake: asynchronous answers", () => {
  test("bytes that arrive while a lookup is pending are kept and processed after the answer", () => {
    const hs = new Handshake();
    hs.start();
    let step = hs.feed(
      concat(FLAGS_FIXED_NO_ZEROES, option(NBD_OPT.STRUCTURED_REPLY), option(NBD_OPT.INFO, infoData("disk"))),
    );
    expect(step.next).toEqual({ kind: "lookup", name: "disk", purpose: "info" });
    expect(parseReplies(concat(...step.send)).map((r) => r.type)).toEqual([NBD_REP.ACK]);
    // The client pipelines the next option before the server answered (not allowed, but harmless).
    expect(hs.feed(option(NBD_OPT.GO, infoData("disk")))).toEqual({ send: [], next: { kind: "wait" } });
    const tail = request(0, { handle: 1n, length: 1 });
    expect(hs.feed(tail).next.kind).toBe("wait");
    step = hs.answerLookup(DISK);
    expect(step.next).toEqual({ kind: "lookup", name: "disk", purpose: "go" });
    step = hs.answerLookup(DISK);
    expect(step.next.kind).toBe("transmission");
    if (step.next.kind === "transmission") expect(toHex(step.next.session.leftover)).toBe(toHex(tail));
  });

  test("answers out of turn and feeding after the handshake are errors of the caller", () => {
    const hs = new Handshake();
    expect(() => hs.answerList([])).toThrow();
    expect(() => hs.answerLookup(DISK)).toThrow();
    const step = hs.feed(concat(FLAGS_FIXED_NO_ZEROES, option(NBD_OPT.EXPORT_NAME, text("disk"))));
    expect(step.next.kind).toBe("lookup");
    expect(hs.answerLookup(DISK).next.kind).toBe("transmission");
    expect(() => hs.feed(hex("00"))).toThrow();
  });
});

/**
 * FORCEDTLS (proto.md "TLS support"): runs `plain` (what the client sends before the
 * upgrade) and `inside` (what it sends inside TLS), each whole and then split at every
 * position, and expects the same output, the same ending and the same plaintext part.
 */
function everySplitTls(plain: Uint8Array, inside: Uint8Array, check: (outcome: Outcome) => void): void {
  const run = (p: Uint8Array[], t: Uint8Array[]) => drive(p, LIST, { tls: "required", tlsChunks: t });
  const whole = run([plain], [inside]);
  check(whole);
  const variants = [
    ...[...splits(plain)].map((s) => ({ label: `plaintext ${s.label}`, p: s.chunks, t: [inside] })),
    ...[...splits(inside)].map((s) => ({ label: `inside TLS ${s.label}`, p: [plain], t: s.chunks })),
  ];
  for (const { label, p, t } of variants) {
    const split = run(p, t);
    if (toHex(split.sent) !== toHex(whole.sent)) throw new Error(`${label}: server output differs`);
    if (split.final.kind !== whole.final.kind) throw new Error(`${label}: ended in ${split.final.kind}`);
    if (toHex(split.plaintext ?? new Uint8Array(0)) !== toHex(whole.plaintext ?? new Uint8Array(0)))
      throw new Error(`${label}: plaintext part differs`);
    expect(split.lookups).toEqual(whole.lookups);
  }
}

const STARTTLS = option(NBD_OPT.STARTTLS);
const TLS_REQD_OPTIONS: [string, Uint8Array][] = [
  ["NBD_OPT_LIST", option(NBD_OPT.LIST)],
  ["NBD_OPT_INFO", option(NBD_OPT.INFO, infoData("disk"))],
  ["NBD_OPT_GO", option(NBD_OPT.GO, infoData("disk"))],
  ["NBD_OPT_STRUCTURED_REPLY", option(NBD_OPT.STRUCTURED_REPLY)],
  ["NBD_OPT_LIST_META_CONTEXT", option(NBD_OPT.LIST_META_CONTEXT, metaData("disk", []))],
  ["NBD_OPT_SET_META_CONTEXT", option(NBD_OPT.SET_META_CONTEXT, metaData("disk", ["base:allocation"]))],
  ["NBD_OPT_EXTENDED_HEADERS", option(NBD_OPT.EXTENDED_HEADERS)],
  ["an unknown option", option(99, text("junk"))],
  ["an option longer than the option limit", option(NBD_OPT.LIST, new Uint8Array(MAX_OPTION_BYTES + 1))],
];

describe("Handshake: TLS required (FORCEDTLS)", () => {
  test.each(TLS_REQD_OPTIONS)("%s before STARTTLS gets ERR_TLS_REQD and reaches no export", (_l, opt) => {
    const client = concat(FLAGS_FIXED_NO_ZEROES, opt, opt);
    const o = drive([client], LIST, { tls: "required" });
    const replies = parseReplies(afterGreeting(o));
    expect(replies).toHaveLength(2);
    for (const r of replies) expectError(r, NBD_REP.ERR_TLS_REQD, /STARTTLS/);
    expect(o.lookups).toEqual([]);
    expect(o.final.kind).toBe("more");
  });

  test("refused options, then STARTTLS, then qemu's sequence inside TLS reaches transmission", () => {
    const plain = concat(
      FLAGS_FIXED_NO_ZEROES,
      option(NBD_OPT.LIST),
      option(NBD_OPT.GO, infoData("x")),
      STARTTLS,
    );
    const firstRequest = request(0, { handle: 7n, length: 512 });
    const inside = concat(
      option(NBD_OPT.STRUCTURED_REPLY),
      option(NBD_OPT.SET_META_CONTEXT, metaData("disk", ["base:allocation"])),
      option(NBD_OPT.GO, infoData("disk")),
      firstRequest,
    );
    everySplitTls(plain, inside, (o) => {
      const plainReplies = parseReplies(afterGreeting({ ...o, sent: o.plaintext! }));
      expect(plainReplies.map((r) => [r.option, r.type])).toEqual([
        [NBD_OPT.LIST, NBD_REP.ERR_TLS_REQD],
        [NBD_OPT.GO, NBD_REP.ERR_TLS_REQD],
        [NBD_OPT.STARTTLS, NBD_REP.ACK],
      ]);
      expect(plainReplies[2]!.data.byteLength).toBe(0);
      const insideReplies = parseReplies(o.sent.subarray(o.plaintext!.byteLength));
      expect(insideReplies.map((r) => [r.option, r.type])).toEqual([
        [NBD_OPT.STRUCTURED_REPLY, NBD_REP.ACK],
        [NBD_OPT.SET_META_CONTEXT, NBD_REP.META_CONTEXT],
        [NBD_OPT.SET_META_CONTEXT, NBD_REP.ACK],
        [NBD_OPT.GO, NBD_REP.INFO],
        [NBD_OPT.GO, NBD_REP.INFO],
        [NBD_OPT.GO, NBD_REP.ACK],
      ]);
      expect(o.final.kind).toBe("transmission");
      expect(o.session).toMatchObject({ name: "disk", structuredReplies: true, metaContextId: 1, tls: true });
      expect(toHex(o.session!.leftover)).toBe(toHex(firstRequest));
      expect(o.lookups).toEqual(["meta:disk", "go:disk"]);
    });
  });

  test("NBD_OPT_EXPORT_NAME inside TLS is served like without TLS", () => {
    everySplitTls(concat(FLAGS_FIXED_NO_ZEROES, STARTTLS), option(NBD_OPT.EXPORT_NAME, text("disk")), (o) => {
      expect(o.final.kind).toBe("transmission");
      expect(o.session?.tls).toBe(true);
      expect(toHex(o.sent.subarray(o.plaintext!.byteLength))).toBe(
        toHex(concat(be64(SIZE), be16(DISK_FLAGS))),
      );
    });
  });

  test("a second STARTTLS inside TLS gets ERR_INVALID, and nothing inside TLS gets ERR_TLS_REQD", () => {
    everySplitTls(
      concat(FLAGS_FIXED_NO_ZEROES, STARTTLS),
      concat(STARTTLS, option(99), option(NBD_OPT.LIST)),
      (o) => {
        const replies = parseReplies(o.sent.subarray(o.plaintext!.byteLength));
        expect(replies.map((r) => [r.option, r.type])).toEqual([
          [NBD_OPT.STARTTLS, NBD_REP.ERR_INVALID],
          [99, NBD_REP.ERR_UNSUP],
          [NBD_OPT.LIST, NBD_REP.SERVER],
          [NBD_OPT.LIST, NBD_REP.SERVER],
          [NBD_OPT.LIST, NBD_REP.ACK],
        ]);
        expectError(replies[0], NBD_REP.ERR_INVALID, /already/);
        expect(o.final.kind).toBe("more");
      },
    );
  });

  test("NBD_OPT_EXPORT_NAME before STARTTLS ends the session without a lookup (spec: MUST terminate)", () => {
    const client = concat(FLAGS_FIXED_NO_ZEROES, option(NBD_OPT.EXPORT_NAME, text("disk")));
    for (const { label, chunks } of splits(client)) {
      const o = drive(chunks, LIST, { tls: "required" });
      expect(o.final, label).toMatchObject({
        kind: "close",
        reason: expect.stringMatching(/before NBD_OPT_STARTTLS/),
      });
      expect(afterGreeting(o).byteLength).toBe(0);
      expect(o.lookups).toEqual([]);
    }
  });

  test("NBD_OPT_ABORT before STARTTLS is acknowledged, then the session ends", () => {
    const o = drive([concat(FLAGS_FIXED_NO_ZEROES, option(NBD_OPT.ABORT, text("bye")))], LIST, {
      tls: "required",
    });
    expect(toHex(afterGreeting(o))).toBe(toHex(optionReply(NBD_OPT.ABORT, NBD_REP.ACK)));
    expect(o.final.kind).toBe("close");
  });

  test("STARTTLS with data gets ERR_INVALID and TLS is still required", () => {
    const o = drive(
      [concat(FLAGS_FIXED_NO_ZEROES, option(NBD_OPT.STARTTLS, text("x")), option(NBD_OPT.LIST))],
      LIST,
      {
        tls: "required",
      },
    );
    const replies = parseReplies(afterGreeting(o));
    expect(replies.map((r) => r.type)).toEqual([NBD_REP.ERR_INVALID, NBD_REP.ERR_TLS_REQD]);
  });

  test("bytes sent in plaintext right behind STARTTLS end the session (no option injection)", () => {
    // A man in the middle appends an option to the client's STARTTLS: it must never be taken as
    // if it came through TLS.
    const o = drive([concat(FLAGS_FIXED_NO_ZEROES, STARTTLS, option(NBD_OPT.GO, infoData("disk")))], LIST, {
      tls: "required",
      tlsChunks: [],
    });
    expect(o.final).toMatchObject({ kind: "close", reason: expect.stringMatching(/after NBD_OPT_STARTTLS/) });
    expect(afterGreeting(o).byteLength).toBe(0); // not even the ACK
    expect(o.plaintext).toBeNull();
  });

  test("a client without C_FIXED_NEWSTYLE is disconnected (TLS needs fixed newstyle)", () => {
    const o = drive([concat(be32(0), option(NBD_OPT.EXPORT_NAME, text("disk")))], LIST, { tls: "required" });
    expect(o.final).toMatchObject({ kind: "close", reason: expect.stringMatching(/fixed newstyle/) });
    expect(o.lookups).toEqual([]);
  });

  test("without TLS configured STARTTLS stays ERR_POLICY, with or without data", () => {
    const o = drive([concat(FLAGS_FIXED_NO_ZEROES, STARTTLS, option(NBD_OPT.STARTTLS, text("x")))]);
    const replies = parseReplies(afterGreeting(o));
    expect(replies.map((r) => r.type)).toEqual([NBD_REP.ERR_POLICY, NBD_REP.ERR_POLICY]);
    expect(o.final.kind).toBe("more");
  });

  test("feeding during the upgrade and tlsStarted() out of turn are errors of the caller", () => {
    const hs = new Handshake({ tls: "required" });
    expect(() => hs.tlsStarted()).toThrow();
    expect(hs.feed(concat(FLAGS_FIXED_NO_ZEROES, STARTTLS)).next.kind).toBe("starttls");
    expect(hs.tls).toBe(false);
    expect(() => hs.feed(hex("16030100"))).toThrow(/TLS upgrade/);
    expect(hs.tlsStarted().next.kind).toBe("more");
    expect(hs.tls).toBe(true);
    expect(() => hs.tlsStarted()).toThrow();
  });
});
