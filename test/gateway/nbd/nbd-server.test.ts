/**
 * The server over real sockets with a raw test client: concurrency, reply
 * framing, backpressure, error isolation and lifecycle. Interop with real
 * clients (qemu, libnbd) is in interop.test.ts.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import type { BlockDevice, ExportProvider } from "../../../gateway/nbd/block-device.ts";
import { NBD_CMD, NBD_CMD_FLAG, NBD_ERRNO, NBD_REP, NBD_REPLY_TYPE } from "../../../gateway/nbd/constants.ts";
import { MemoryDevice } from "../../../gateway/nbd/memory-device.ts";
import { type NbdServer, startNbdServer } from "../../../gateway/nbd/nbd-server.ts";
import { be32, infoData, option } from "./_bytes.ts";
import { chunkErrno, chunkMessage, RawClient } from "./_raw-client.ts";

/** Wraps a device so tests can hold operations back and count what is pending. */
class GatedDevice implements BlockDevice {
  readonly inner: MemoryDevice;
  /** Called before every operation; the operation waits for the returned promise. */
  gate: (op: string, offset: number) => Promise<void> | void = () => {};
  /** Replaces an operation's result with a thrown value. */
  fail: ((op: string) => unknown) | null = null;
  pending = 0;
  maxPending = 0;
  calls = 0;

  constructor(inner: MemoryDevice) {
    this.inner = inner;
  }
  get size() {
    return this.inner.size;
  }
  get blockSizes() {
    return this.inner.blockSizes;
  }
  get capabilities() {
    return this.inner.capabilities;
  }
  async #run<T>(op: string, offset: number, fn: () => Promise<T>): Promise<T> {
    this.calls++;
    this.pending++;
    this.maxPending = Math.max(this.maxPending, this.pending);
    try {
      await this.gate(op, offset);
      const failure = this.fail?.(op);
      if (failure !== undefined) throw failure;
      return await fn();
    } finally {
      this.pending--;
    }
  }
  read(offset: number, length: number) {
    return this.#run("read", offset, () => this.inner.read(offset, length));
  }
  write(offset: number, data: Uint8Array, o: { fua: boolean }) {
    return this.#run("write", offset, () => this.inner.write(offset, data, o));
  }
  flush() {
    return this.#run("flush", 0, () => this.inner.flush());
  }
  trim(offset: number, length: number, o: { fua: boolean }) {
    return this.#run("trim", offset, () => this.inner.trim(offset, length, o));
  }
  writeZeroes(offset: number, length: number, o: { fua: boolean; noHole: boolean; fastZero: boolean }) {
    return this.#run("zero", offset, () => this.inner.writeZeroes(offset, length, o));
  }
  blockStatus(offset: number, length: number) {
    return this.#run("status", offset, () => this.inner.blockStatus(offset, length));
  }
}

class TestProvider implements ExportProvider {
  readonly exports = new Map<string, () => BlockDevice | Error>();
  opened = 0;
  released = 0;
  openDelayMs = 0;
  async list() {
    return [...this.exports.keys()].map((name) => ({ name }));
  }
  async open(name: string) {
    if (this.openDelayMs > 0) await Bun.sleep(this.openDelayMs);
    const make = this.exports.get(name);
    if (!make) return null;
    const device = make();
    if (device instanceof Error) throw device;
    this.opened++;
    return device;
  }
  async release() {
    this.released++;
  }
}

const servers: NbdServer[] = [];
const clients: RawClient[] = [];

async function serve(provider: ExportProvider, options: Parameters<typeof startNbdServer>[1] = {}) {
  const server = await startNbdServer(provider, { hostname: "127.0.0.1", port: 0, ...options });
  servers.push(server);
  return server;
}

async function open(port: number, name: string, options?: { structured?: boolean; meta?: boolean }) {
  const result = await RawClient.open(port, name, options);
  clients.push(result.client);
  return result;
}

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

function pattern(offset: number, length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => ((offset + i) * 7) & 0xff);
}

function setup(size = 64 << 20) {
  const provider = new TestProvider();
  const device = new GatedDevice(new MemoryDevice(size));
  provider.exports.set("disk", () => device);
  return { provider, device };
}

describe("NBD server: concurrency and framing", () => {
  test("replies come back out of order when a later request finishes first", async () => {
    const { provider, device } = setup();
    await device.inner.write(0, pattern(0, 1 << 20), { fua: false });
    let releaseSlow!: () => void;
    const slow = new Promise<void>((resolve) => {
      releaseSlow = resolve;
    });
    device.gate = (op, offset) => (op === "read" && offset === 0 ? slow : undefined);
    const server = await serve(provider);
    const { client } = await open(server.port, "disk");
    client.send(NBD_CMD.READ, { handle: 1n, offset: 0, length: 4096 });
    client.send(NBD_CMD.READ, { handle: 2n, offset: 8192, length: 4096 });
    const first = await client.reply();
    expect(first.handle).toBe(2n);
    releaseSlow();
    const second = await client.reply();
    expect(second.handle).toBe(1n);
    for (const [reply, offset] of [
      [first, 8192],
      [second, 0],
    ] as const) {
      if (reply.kind !== "chunk") throw new Error("expected a structured reply");
      expect(reply.type).toBe(NBD_REPLY_TYPE.OFFSET_DATA);
      expect(reply.flags).toBe(1); // DONE
      expect(Number(new DataView(reply.payload.buffer).getBigUint64(0))).toBe(offset);
      expect(reply.payload.subarray(8)).toEqual(pattern(offset, 4096));
    }
  });

  test("hundreds of pipelined requests of mixed sizes complete in random order without interleaving", async () => {
    const { provider, device } = setup();
    await device.inner.write(0, pattern(0, 8 << 20), { fua: false });
    device.gate = () => new Promise((resolve) => setTimeout(resolve, Math.random() * 5));
    const server = await serve(provider);
    for (const structured of [true, false]) {
      const { client } = await open(server.port, "disk", { structured });
      const sizes = [1, 512, 4096, 65535, 65536, 65537, 300_000, 1 << 20];
      const expected = new Map<bigint, { offset: number; length: number }>();
      for (let i = 0; i < 300; i++) {
        const length = sizes[i % sizes.length]!;
        const offset = (i * 40_961) % ((8 << 20) - length);
        expected.set(BigInt(i), { offset, length });
        client.send(NBD_CMD.READ, { handle: BigInt(i), offset, length });
        if (i % 7 === 0) {
          const payload = pattern(offset, Math.min(length, 70_000));
          client.send(NBD_CMD.WRITE, { handle: BigInt(10_000 + i), offset, payload });
        }
      }
      let reads = 0;
      let writes = 0;
      while (reads + writes < 300 + 43) {
        // Simple replies do not say how long their data is: look the handle up first.
        const head = await client.read(16);
        const view = new DataView(head.buffer);
        const handle = view.getBigUint64(8);
        if (handle >= 10_000n) {
          expect(view.getUint32(0)).toBe(0x67446698);
          expect(view.getUint32(4)).toBe(0);
          writes++;
          continue;
        }
        const want = expected.get(handle)!;
        let data: Uint8Array;
        if (structured) {
          expect(view.getUint32(0)).toBe(0x668e33ef);
          const rest = await client.read(4 + 8);
          const length = new DataView(rest.buffer).getUint32(0);
          expect(length).toBe(8 + want.length);
          data = await client.read(want.length);
        } else {
          expect(view.getUint32(4)).toBe(0);
          data = await client.read(want.length);
        }
        // The writes wrote the same pattern, so the data is right whatever the ordering.
        if (Buffer.compare(data, pattern(want.offset, want.length)) !== 0)
          throw new Error(`handle ${handle}: bad data`);
        reads++;
      }
      expect(reads).toBe(300);
      expect(client.buffered).toBe(0);
    }
  });

  test("a zero-length READ gets a final NONE chunk; BLOCK_STATUS honours REQ_ONE", async () => {
    const { provider, device } = setup(1 << 20);
    await device.inner.write(65536, new Uint8Array(10).fill(1), { fua: false });
    const server = await serve(provider);
    const { client } = await open(server.port, "disk");
    client.send(NBD_CMD.READ, { handle: 1n, offset: 0, length: 0 });
    expect(await client.reply()).toMatchObject({
      kind: "chunk",
      type: NBD_REPLY_TYPE.NONE,
      flags: 1,
      handle: 1n,
    });
    client.send(NBD_CMD.BLOCK_STATUS, { handle: 2n, offset: 0, length: 1 << 20 });
    const all = await client.reply();
    if (all.kind !== "chunk") throw new Error("expected chunk");
    expect(all.type).toBe(NBD_REPLY_TYPE.BLOCK_STATUS);
    const v = new DataView(all.payload.buffer);
    expect(v.getUint32(0)).toBe(1); // the context ID given in SET_META_CONTEXT
    expect([
      v.getUint32(4),
      v.getUint32(8),
      v.getUint32(12),
      v.getUint32(16),
      v.getUint32(20),
      v.getUint32(24),
    ]).toEqual([65536, 3, 65536, 0, (1 << 20) - 131072, 3]);
    client.send(NBD_CMD.BLOCK_STATUS, {
      flags: NBD_CMD_FLAG.REQ_ONE,
      handle: 3n,
      offset: 0,
      length: 1 << 20,
    });
    const one = await client.reply();
    if (one.kind !== "chunk") throw new Error("expected chunk");
    expect(one.payload.byteLength).toBe(4 + 8);
  });
});

describe("NBD server: errors stay with their request", () => {
  test("device errors map to errno values, with messages in structured replies", async () => {
    const { provider, device } = setup();
    const server = await serve(provider);
    const full = new Error("store a has 0 bytes left");
    full.name = "StoreFullError";
    device.fail = (op) =>
      op === "write" ? full : op === "read" ? new Error("all replicas down") : undefined;
    const { client } = await open(server.port, "disk");
    client.send(NBD_CMD.WRITE, { handle: 1n, offset: 0, payload: new Uint8Array(10) });
    const w = await client.reply();
    if (w.kind !== "chunk") throw new Error("expected chunk");
    expect([w.type, w.flags, chunkErrno(w.payload)]).toEqual([NBD_REPLY_TYPE.ERROR, 1, NBD_ERRNO.ENOSPC]);
    expect(chunkMessage(w.payload)).toContain("0 bytes left");
    client.send(NBD_CMD.READ, { handle: 2n, offset: 0, length: 100 });
    const r = await client.reply();
    if (r.kind !== "chunk") throw new Error("expected chunk");
    expect(chunkErrno(r.payload)).toBe(NBD_ERRNO.EIO);
    // The connection goes on.
    device.fail = null;
    client.send(NBD_CMD.READ, { handle: 3n, offset: 0, length: 100 });
    expect((await client.reply()).handle).toBe(3n);
  });

  test("with simple replies a failed READ is a bare error reply (no data follows)", async () => {
    const { provider, device } = setup();
    const server = await serve(provider);
    device.fail = (op) => (op === "read" ? "not even an Error" : undefined);
    const { client } = await open(server.port, "disk", { structured: false });
    client.send(NBD_CMD.READ, { handle: 1n, offset: 0, length: 4096 });
    client.send(NBD_CMD.FLUSH, { handle: 2n });
    expect(await client.reply()).toEqual({ kind: "simple", error: NBD_ERRNO.EIO, handle: 1n });
    expect(await client.reply()).toEqual({ kind: "simple", error: 0, handle: 2n });
  });

  test("invalid requests are refused without reaching the device", async () => {
    const { provider, device } = setup(1 << 20);
    const server = await serve(provider);
    const { client } = await open(server.port, "disk", { structured: false });
    client.send(NBD_CMD.READ, { handle: 1n, offset: 1 << 20, length: 1 });
    client.send(NBD_CMD.WRITE, { handle: 2n, offset: (1 << 20) - 1, payload: new Uint8Array(2) });
    client.send(NBD_CMD.BLOCK_STATUS, { handle: 3n, length: 1 }); // no meta context negotiated
    client.send(99, { handle: 4n });
    expect(await client.reply()).toEqual({ kind: "simple", error: NBD_ERRNO.EINVAL, handle: 1n });
    expect(await client.reply()).toEqual({ kind: "simple", error: NBD_ERRNO.ENOSPC, handle: 2n });
    expect(await client.reply()).toEqual({ kind: "simple", error: NBD_ERRNO.EINVAL, handle: 3n });
    expect(await client.reply()).toEqual({ kind: "simple", error: NBD_ERRNO.EINVAL, handle: 4n });
    expect(device.calls).toBe(0);
  });

  test("writes to a read-only export fail with EPERM and change nothing", async () => {
    const provider = new TestProvider();
    const snapshot = new MemoryDevice(1 << 20, { capabilities: { readOnly: true } });
    provider.exports.set("img@snap", () => snapshot);
    const server = await serve(provider);
    const { client, flags } = await open(server.port, "img@snap", { structured: false });
    expect(flags & 2).toBe(2); // NBD_FLAG_READ_ONLY
    client.send(NBD_CMD.WRITE, { handle: 1n, payload: new Uint8Array([1]) });
    client.send(NBD_CMD.TRIM, { handle: 2n, length: 4096 });
    client.send(NBD_CMD.WRITE_ZEROES, { handle: 3n, length: 4096 });
    client.send(NBD_CMD.FLUSH, { handle: 4n });
    expect(await client.reply()).toEqual({ kind: "simple", error: NBD_ERRNO.EPERM, handle: 1n });
    expect(await client.reply()).toEqual({ kind: "simple", error: NBD_ERRNO.EPERM, handle: 2n });
    expect(await client.reply()).toEqual({ kind: "simple", error: NBD_ERRNO.EPERM, handle: 3n });
    expect(await client.reply()).toEqual({ kind: "simple", error: 0, handle: 4n });
    expect(snapshot.allocatedBlocks).toBe(0);
  });

  test("a WRITE larger than the maximum block size is drained and refused; the stream stays in sync", async () => {
    const provider = new TestProvider();
    provider.exports.set(
      "small",
      () => new MemoryDevice(1 << 20, { blockSizes: { minimum: 1, preferred: 4096, maximum: 65536 } }),
    );
    const server = await serve(provider);
    const { client } = await open(server.port, "small");
    client.send(NBD_CMD.WRITE, { handle: 1n, payload: new Uint8Array(200_000).fill(9) });
    client.send(NBD_CMD.READ, { handle: 2n, offset: 0, length: 4 });
    const refused = await client.reply();
    if (refused.kind !== "chunk") throw new Error("expected chunk");
    expect([refused.handle, chunkErrno(refused.payload)]).toEqual([1n, NBD_ERRNO.EINVAL]);
    const read = await client.reply();
    if (read.kind !== "chunk") throw new Error("expected chunk");
    expect(read.payload.subarray(8)).toEqual(new Uint8Array(4)); // nothing was written
  });

  test("garbage in the transmission phase disconnects that client only", async () => {
    const { provider, device } = setup();
    const server = await serve(provider);
    const { client: good } = await open(server.port, "disk");
    const { client: bad } = await open(server.port, "disk");
    bad.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: nbd\r\n\r\n"));
    await bad.closed;
    good.send(NBD_CMD.WRITE, { handle: 1n, offset: 0, payload: new Uint8Array([1, 2, 3]) });
    expect((await good.reply()).handle).toBe(1n);
    expect(await device.inner.read(0, 3)).toEqual(new Uint8Array([1, 2, 3]));
  });

  test("garbage in the handshake, a silent client, and an unknown export are all disconnected", async () => {
    const { provider } = setup();
    const server = await serve(provider, { handshakeTimeoutMs: 200 });
    const garbage = await RawClient.connect(server.port);
    clients.push(garbage);
    await garbage.read(18);
    garbage.write(be32(3));
    garbage.write(new Uint8Array(64).fill(0x41));
    await garbage.closed;

    const silent = await RawClient.connect(server.port);
    clients.push(silent);
    await silent.read(18);
    await silent.closed; // handshake timeout

    const unknown = await RawClient.connect(server.port);
    clients.push(unknown);
    await unknown.read(18);
    unknown.write(be32(3));
    unknown.write(option(1, new TextEncoder().encode("nope"))); // NBD_OPT_EXPORT_NAME cannot be refused politely
    await unknown.closed;
    expect(unknown.buffered).toBe(0);
  });

  test("an export that fails to open is refused with a message and the client may try another", async () => {
    const { provider } = setup();
    provider.exports.set("broken", () => new Error("head is fenced by epoch 7"));
    const server = await serve(provider);
    const client = await RawClient.connect(server.port);
    clients.push(client);
    await client.read(18);
    client.write(be32(3));
    client.write(option(7, infoData("broken")));
    const [refusal] = await client.optionReplies();
    expect(refusal!.type).toBe(NBD_REP.ERR_UNKNOWN);
    expect(new TextDecoder().decode(refusal!.data)).toContain("fenced by epoch 7");
    client.write(option(7, infoData("disk")));
    expect((await client.optionReplies()).at(-1)!.type).toBe(NBD_REP.ACK);
  });
});

describe("NBD server: backpressure", () => {
  test("stops reading requests while too many are in flight, then catches up", async () => {
    const { provider, device } = setup();
    let gateOpen = false;
    const waiters: (() => void)[] = [];
    device.gate = () => (gateOpen ? undefined : new Promise<void>((resolve) => waiters.push(resolve)));
    const server = await serve(provider, { maxInFlightRequests: 8, maxInFlightBytes: 1 << 20 });
    const { client } = await open(server.port, "disk");
    const count = 3000;
    for (let i = 0; i < count; i++) {
      client.send(NBD_CMD.WRITE, {
        handle: BigInt(i),
        offset: i * 4096,
        payload: new Uint8Array(4096).fill(i & 0xff),
      });
    }
    await Bun.sleep(300);
    // Requests already read in one socket chunk are dispatched, but the socket was paused long before 3000.
    expect(device.pending).toBeGreaterThanOrEqual(8);
    expect(device.pending).toBeLessThan(200);
    gateOpen = true;
    for (const w of waiters.splice(0)) w();
    const seen = new Set<bigint>();
    for (let i = 0; i < count; i++) {
      const r = await client.reply();
      expect(r.kind === "simple" && r.error).toBe(0);
      seen.add(r.handle);
    }
    expect(seen.size).toBe(count);
    expect(await device.inner.read(2999 * 4096, 1)).toEqual(new Uint8Array([2999 & 0xff]));
  });

  test("stops reading requests while the client does not read replies", async () => {
    const { provider, device } = setup();
    // What remains in flight is then bounded by the kernel's socket buffers plus this.
    const server = await serve(provider, { maxInFlightBytes: 1 << 20 });
    const { client } = await open(server.port, "disk");
    client.socket.pause(); // the client does not read
    const count = 2000;
    for (let i = 0; i < count; i++)
      client.send(NBD_CMD.READ, { handle: BigInt(i), offset: 0, length: 65536 });
    await Bun.sleep(500);
    const readsWhileBlocked = device.calls;
    // Kernel socket buffers (a few MiB on loopback) plus the 1 MiB limit: far fewer than 2000 x 64 KiB.
    expect(readsWhileBlocked).toBeLessThan(500);
    expect(device.pending).toBe(0);
    client.socket.resume();
    for (let i = 0; i < count; i++) {
      const r = await client.reply();
      if (r.kind !== "chunk" || r.payload.byteLength !== 8 + 65536) throw new Error(`bad reply ${i}`);
    }
    expect(device.calls).toBe(count);
  });
});

describe("NBD server: lifecycle", () => {
  test("DISC waits for requests in flight, then closes; the device is released", async () => {
    const { provider, device } = setup();
    let finish!: () => void;
    device.gate = (op) =>
      op === "write"
        ? new Promise<void>((resolve) => {
            finish = resolve;
          })
        : undefined;
    const server = await serve(provider);
    const { client } = await open(server.port, "disk");
    client.send(NBD_CMD.WRITE, { handle: 1n, offset: 0, payload: new Uint8Array([7]) });
    client.send(NBD_CMD.DISC, { handle: 2n });
    client.send(NBD_CMD.READ, { handle: 3n, length: 1 }); // after DISC: ignored
    await Bun.sleep(50);
    finish();
    expect(await client.reply()).toEqual({ kind: "simple", error: 0, handle: 1n });
    await client.closed;
    expect(client.buffered).toBe(0);
    expect(await device.inner.read(0, 1)).toEqual(new Uint8Array([7]));
    await Bun.sleep(20);
    expect(provider.released).toBe(provider.opened);
  });

  test("every device opened (for INFO, meta contexts and GO) is released exactly once", async () => {
    const { provider } = setup();
    const server = await serve(provider);
    for (let i = 0; i < 3; i++) {
      const { client } = await open(server.port, "disk");
      client.send(NBD_CMD.DISC);
      await client.closed;
    }
    const { client } = await open(server.port, "disk"); // still open when the server closes
    expect(server.connections).toBeGreaterThanOrEqual(1);
    await server.close();
    await client.closed;
    expect(provider.opened).toBe(4 * 2); // SET_META_CONTEXT and GO each open the export
    expect(provider.released).toBe(provider.opened);
    expect(server.connections).toBe(0);
    await server.close(); // idempotent
  });

  test("a device still being opened when the client leaves or the server closes is released", async () => {
    const { provider } = setup();
    provider.openDelayMs = 100;
    const server = await serve(provider);
    const leaving = await RawClient.connect(server.port);
    clients.push(leaving);
    await leaving.read(18);
    leaving.write(be32(3));
    leaving.write(option(7, infoData("disk")));
    await Bun.sleep(20);
    leaving.close();
    const staying = await RawClient.connect(server.port);
    clients.push(staying);
    await staying.read(18);
    staying.write(be32(3));
    staying.write(option(7, infoData("disk")));
    await Bun.sleep(20);
    await server.close();
    await Bun.sleep(150);
    expect(provider.opened).toBe(2);
    expect(provider.released).toBe(2);
  });

  test("close() lets requests in flight finish first", async () => {
    const { provider, device } = setup();
    let finish!: () => void;
    device.gate = () =>
      new Promise<void>((resolve) => {
        finish = resolve;
      });
    const server = await serve(provider);
    const { client } = await open(server.port, "disk", { structured: false });
    client.send(NBD_CMD.FLUSH, { handle: 5n });
    await Bun.sleep(20);
    const closing = server.close();
    await Bun.sleep(20);
    finish();
    await closing;
    expect(await client.reply()).toEqual({ kind: "simple", error: 0, handle: 5n });
    expect(device.inner.flushes).toBe(1);
  });

  test("a second server cannot take a port in use: startNbdServer rejects", async () => {
    const { provider } = setup();
    const server = await serve(provider);
    await expect(startNbdServer(provider, { hostname: "127.0.0.1", port: server.port })).rejects.toThrow();
  });
});
