import { describe, expect, test } from "bun:test";
import { exportFlags } from "../../../gateway/nbd/block-device.ts";
import {
  NBD_CMD,
  NBD_CMD_FLAG,
  NBD_ERRNO,
  NBD_REPLY_FLAG,
  NBD_STATE,
} from "../../../gateway/nbd/constants.ts";
import { ALL_CAPABILITIES } from "../../../gateway/nbd/memory-device.ts";
import { type Admission, TransmissionSession } from "../../../gateway/nbd/session.ts";
import {
  encodeBlockStatus,
  encodeErrorChunk,
  encodeNoneChunk,
  encodeOffsetDataHeader,
  encodeSimpleReply,
  type NbdRequest,
  type TransmissionContext,
} from "../../../gateway/nbd/transmission.ts";
import { toHex } from "./_bytes.ts";

const structured: TransmissionContext = {
  size: 1 << 20,
  flags: exportFlags(ALL_CAPABILITIES, { structuredReplies: true }),
  blockSizes: { minimum: 1, preferred: 4096, maximum: 65536 },
  structuredReplies: true,
  metaContextId: 7,
};
const simple: TransmissionContext = { ...structured, structuredReplies: false, metaContextId: null };

let nextHandle = 1n;
function req(type: number, fields: Partial<NbdRequest> = {}): NbdRequest {
  const length = fields.length ?? 4096;
  return {
    flags: 0,
    type,
    handle: nextHandle++,
    offset: 0,
    length,
    payload: type === NBD_CMD.WRITE ? new Uint8Array(length) : null,
    payloadDropped: false,
    ...fields,
  };
}

/** A session with small limits and a reply queue the test controls. */
function session(context = structured, limits = { maxInFlightBytes: 16384, maxInFlightRequests: 2 }) {
  const replies = { queuedBytes: 0, blocked: false };
  return { s: new TransmissionSession(context, limits, replies), replies };
}

function kinds(admissions: Admission[]): string[] {
  return admissions.map((a) => a.kind);
}

describe("TransmissionSession admission", () => {
  test("starts requests up to the request limit, holds the rest in order and starts them as others finish", () => {
    const { s } = session();
    const [a, b, c, d] = [req(NBD_CMD.READ), req(NBD_CMD.FLUSH), req(NBD_CMD.READ), req(NBD_CMD.FLUSH)];
    expect(kinds([a, b, c, d].map((r) => s.receive(r)))).toEqual(["start", "start", "held", "held"]);
    expect([s.inFlight, s.held, s.idle]).toEqual([2, 2, false]);
    expect(s.next()).toBeNull(); // still at the limit
    s.finished(b);
    expect(s.next()).toEqual({ kind: "start", req: c });
    expect(s.next()).toBeNull();
    s.finished(a);
    expect(s.next()).toEqual({ kind: "start", req: d });
    s.finished(c);
    s.finished(d);
    expect([s.inFlight, s.inFlightBytes, s.held, s.idle]).toEqual([0, 0, 0, true]);
  });

  test("counts READ and WRITE bytes against the byte limit; one request always fits however large", () => {
    const { s } = session(structured, { maxInFlightBytes: 8192, maxInFlightRequests: 100 });
    const big = req(NBD_CMD.WRITE, { length: 65536 });
    const small = req(NBD_CMD.READ, { length: 4096 });
    expect(s.receive(big).kind).toBe("start"); // over the limit alone, but nothing else is in flight
    expect(s.inFlightBytes).toBe(65536);
    expect(s.receive(small).kind).toBe("held");
    s.finished(big);
    expect(s.next()).toEqual({ kind: "start", req: small });
    const flush = req(NBD_CMD.FLUSH);
    const second = req(NBD_CMD.READ, { length: 4096 });
    expect(kinds([s.receive(flush), s.receive(second)])).toEqual(["start", "start"]); // 4096 + 0 + 4096 fits
    expect(s.inFlightBytes).toBe(8192);
  });

  test("a request that would fit is held behind an earlier held one (order is kept)", () => {
    const { s } = session(structured, { maxInFlightBytes: 8192, maxInFlightRequests: 100 });
    const first = req(NBD_CMD.READ, { length: 8192 });
    expect(s.receive(first).kind).toBe("start");
    expect(s.receive(req(NBD_CMD.READ, { length: 4096 })).kind).toBe("held");
    expect(s.receive(req(NBD_CMD.FLUSH)).kind).toBe("held"); // costs no bytes, yet waits its turn
    expect(s.held).toBe(2);
  });

  test("queued replies count against the byte limit, and a full send buffer holds everything", () => {
    const { s, replies } = session(structured, { maxInFlightBytes: 8192, maxInFlightRequests: 100 });
    replies.queuedBytes = 6000;
    const read = req(NBD_CMD.READ, { length: 4096 });
    expect(s.receive(read).kind).toBe("held");
    replies.queuedBytes = 0;
    expect(s.next()).toEqual({ kind: "start", req: read });
    s.finished(read);
    replies.blocked = true;
    const flush = req(NBD_CMD.FLUSH);
    expect(s.receive(flush).kind).toBe("held"); // even with nothing in flight
    expect(s.next()).toBeNull();
    replies.blocked = false;
    expect(s.next()).toEqual({ kind: "start", req: flush });
  });

  test("an invalid request is refused with an error reply and is not counted", () => {
    const { s } = session();
    const past = req(NBD_CMD.WRITE, { offset: 1 << 20, length: 4096 });
    const a = s.receive(past);
    expect(a.kind).toBe("refuse");
    if (a.kind !== "refuse") throw new Error("unreachable");
    expect(a.error.errno).toBe(NBD_ERRNO.ENOSPC);
    expect(toHex(a.reply)).toBe(
      toHex(encodeErrorChunk(past.handle, NBD_REPLY_FLAG.DONE, NBD_ERRNO.ENOSPC, a.error.message)),
    );
    expect([s.inFlight, s.idle]).toEqual([0, true]);
  });

  test("a held request that turns out invalid is refused when its turn comes", () => {
    const { s } = session(simple, { maxInFlightBytes: 16384, maxInFlightRequests: 1 });
    const ok = req(NBD_CMD.READ);
    const bad = req(NBD_CMD.BLOCK_STATUS); // no metadata context negotiated
    expect(kinds([s.receive(ok), s.receive(bad)])).toEqual(["start", "held"]);
    s.finished(ok);
    const next = s.next();
    expect(next?.kind).toBe("refuse");
    expect(toHex(next!.kind === "refuse" ? next!.reply : new Uint8Array())).toBe(
      toHex(encodeSimpleReply(bad.handle, NBD_ERRNO.EINVAL)),
    );
    expect(s.idle).toBe(true);
  });

  test("DISC: requests before it are still served, nothing after it is taken", () => {
    const { s } = session();
    const a = req(NBD_CMD.READ);
    const b = req(NBD_CMD.READ);
    const c = req(NBD_CMD.READ);
    expect(kinds([s.receive(a), s.receive(b), s.receive(c)])).toEqual(["start", "start", "held"]);
    expect(s.receive(req(NBD_CMD.DISC)).kind).toBe("disconnect");
    expect(s.disconnecting).toBe(true);
    expect(s.receive(req(NBD_CMD.READ)).kind).toBe("ignored");
    expect(s.receive(req(NBD_CMD.DISC)).kind).toBe("ignored");
    expect(s.shouldPause()).toBe(true);
    s.finished(a);
    expect(s.next()).toEqual({ kind: "start", req: c }); // received before DISC: answered
    s.finished(b);
    s.finished(c);
    expect(s.idle).toBe(true);
  });

  test("stop() refuses held requests with ESHUTDOWN and leaves those in flight to finish", () => {
    const { s } = session(structured, { maxInFlightBytes: 16384, maxInFlightRequests: 1 });
    const running = req(NBD_CMD.WRITE);
    const h1 = req(NBD_CMD.READ);
    const h2 = req(NBD_CMD.FLUSH);
    expect(kinds([s.receive(running), s.receive(h1), s.receive(h2)])).toEqual(["start", "held", "held"]);
    const refused = s.stop();
    expect(refused.map((r) => r.req)).toEqual([h1, h2]);
    expect(toHex(refused[1]!.reply)).toBe(
      toHex(
        encodeErrorChunk(h2.handle, NBD_REPLY_FLAG.DONE, NBD_ERRNO.ESHUTDOWN, "The server is shutting down"),
      ),
    );
    expect([s.held, s.inFlight, s.idle]).toEqual([0, 1, false]);
    expect(s.receive(req(NBD_CMD.READ)).kind).toBe("ignored");
    s.finished(running);
    expect(s.idle).toBe(true);
  });

  test("closed() drops held requests", () => {
    const { s } = session(structured, { maxInFlightBytes: 16384, maxInFlightRequests: 1 });
    const running = req(NBD_CMD.READ);
    s.receive(running);
    s.receive(req(NBD_CMD.READ));
    s.closed();
    expect([s.held, s.next()]).toEqual([0, null]);
    s.finished(running);
    expect(s.idle).toBe(true);
  });

  test("shouldPause: limits, held requests, a blocked socket, and a partial request only while busy", () => {
    const { s, replies } = session(structured, { maxInFlightBytes: 8192, maxInFlightRequests: 2 });
    expect(s.shouldPause()).toBe(false);
    // A WRITE header with half of an 8 KiB payload: alone it is read on (one request always fits).
    const header = new Uint8Array(28);
    const view = new DataView(header.buffer);
    view.setUint32(0, 0x25609513);
    view.setUint16(6, NBD_CMD.WRITE);
    view.setUint32(24, 8192);
    s.parser.push(header, () => {});
    s.parser.push(new Uint8Array(4096), () => {});
    expect(s.parser.buffered).toBe(4096);
    expect(s.shouldPause()).toBe(false);
    replies.queuedBytes = 5000; // alone under the limit, but with the 4096 received it is over
    expect(s.shouldPause()).toBe(true);
    replies.queuedBytes = 0;
    replies.blocked = true;
    expect(s.shouldPause()).toBe(true);
    replies.blocked = false;
    const fresh = session(structured, { maxInFlightBytes: 1 << 20, maxInFlightRequests: 2 }).s;
    fresh.receive(req(NBD_CMD.FLUSH));
    expect(fresh.shouldPause()).toBe(false);
    fresh.receive(req(NBD_CMD.FLUSH));
    expect(fresh.shouldPause()).toBe(true); // at the request limit
  });
});

describe("TransmissionSession replies", () => {
  test("structured session: READ success is a NONE chunk or OFFSET_DATA, others a simple reply", () => {
    const { s } = session(structured);
    const read = req(NBD_CMD.READ, { offset: 4096, length: 3 });
    const write = req(NBD_CMD.WRITE);
    expect(toHex(s.ok(read))).toBe(toHex(encodeNoneChunk(read.handle)));
    expect(toHex(s.ok(write))).toBe(toHex(encodeSimpleReply(write.handle, 0)));
    expect(toHex(s.dataHeader(read, new Uint8Array(3)))).toBe(
      toHex(encodeOffsetDataHeader(read.handle, NBD_REPLY_FLAG.DONE, 4096, 3)),
    );
    expect(toHex(s.error(write, 0, "boom"))).toBe(
      toHex(encodeErrorChunk(write.handle, NBD_REPLY_FLAG.DONE, NBD_ERRNO.EIO, "boom")),
    );
  });

  test("simple session: every reply is a simple reply, errors carry the errno only", () => {
    const { s } = session(simple);
    const read = req(NBD_CMD.READ);
    expect(toHex(s.ok(read))).toBe(toHex(encodeSimpleReply(read.handle, 0)));
    expect(toHex(s.dataHeader(read, new Uint8Array(4096)))).toBe(toHex(encodeSimpleReply(read.handle, 0)));
    expect(toHex(s.error(read, NBD_ERRNO.ENOSPC, "full"))).toBe(
      toHex(encodeSimpleReply(read.handle, NBD_ERRNO.ENOSPC)),
    );
  });

  test("BLOCK_STATUS uses the negotiated context id and honours REQ_ONE", () => {
    const { s } = session(structured);
    const q = req(NBD_CMD.BLOCK_STATUS, { flags: NBD_CMD_FLAG.REQ_ONE, length: 8192 });
    const extents = [
      { length: 4096, hole: true, zero: true },
      { length: 4096, hole: false, zero: false },
    ];
    expect(toHex(s.blockStatus(q, extents))).toBe(
      toHex(
        encodeBlockStatus(q.handle, NBD_REPLY_FLAG.DONE, 7, [
          { length: 4096, flags: NBD_STATE.HOLE | NBD_STATE.ZERO },
        ]),
      ),
    );
  });
});
