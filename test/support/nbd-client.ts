/**
 * A small NBD client for tests that must time every request themselves (qemu-io does
 * not report per-request latency): fixed newstyle, OPT_GO, simple replies, many
 * requests in flight. Written from the spec (NetworkBlockDevice/nbd doc/proto.md).
 */
import net from "node:net";

const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const OPT_REPLY_MAGIC = 0x3e889045565a9n;
const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3 } as const;

/** A connected client for one export. */
export class NbdClient {
  readonly size: number;
  readonly #socket: net.Socket;
  #buf = new Uint8Array(0);
  #waiters: (() => void)[] = [];
  #closed: Error | null = null;
  #cookie = 1n;
  readonly #pending = new Map<
    bigint,
    { length: number; resolve: (d: Uint8Array) => void; reject: (e: Error) => void }
  >();

  private constructor(socket: net.Socket, size: number) {
    this.#socket = socket;
    this.size = size;
  }

  /** Connects to `nbd://host:port/export` and negotiates with OPT_GO. */
  static async connect(port: number, exportName: string, host = "127.0.0.1"): Promise<NbdClient> {
    const socket = net.connect({ port, host });
    socket.setNoDelay(true);
    const bootstrap = new NbdClient(socket, 0);
    bootstrap.#attach();
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const hello = await bootstrap.#take(18);
    if (new TextDecoder().decode(hello.subarray(0, 16)) !== "NBDMAGICIHAVEOPT")
      throw new Error("not an NBD server");
    const name = new TextEncoder().encode(exportName);
    const opt = new DataView(new ArrayBuffer(4 + 16 + 4 + name.length + 2));
    opt.setUint32(0, 1 | 2); // FIXED_NEWSTYLE | NO_ZEROES
    opt.setBigUint64(4, 0x49484156454f5054n); // IHAVEOPT
    opt.setUint32(12, 7); // NBD_OPT_GO
    opt.setUint32(16, 4 + name.length + 2);
    opt.setUint32(20, name.length);
    new Uint8Array(opt.buffer).set(name, 24);
    opt.setUint16(24 + name.length, 0);
    socket.write(new Uint8Array(opt.buffer));
    let size = -1;
    for (;;) {
      const h = new DataView((await bootstrap.#take(20)).slice().buffer);
      if (h.getBigUint64(0) !== OPT_REPLY_MAGIC) throw new Error("bad option reply magic");
      const type = h.getUint32(12);
      const payload = await bootstrap.#take(h.getUint32(16));
      if (type === 1) break; // ACK
      if (type === 3 && new DataView(payload.slice().buffer).getUint16(0) === 0) {
        size = Number(new DataView(payload.slice().buffer).getBigUint64(2));
      } else if (type >= 0x80000000) {
        throw new Error(`export "${exportName}" refused: ${new TextDecoder().decode(payload)}`);
      }
    }
    const client = new NbdClient(socket, size);
    client.#buf = bootstrap.#buf;
    socket.removeAllListeners("data");
    client.#attach();
    void client.#readLoop();
    return client;
  }

  #attach(): void {
    this.#socket.on("data", (d: Buffer) => {
      const next = new Uint8Array(this.#buf.length + d.length);
      next.set(this.#buf);
      next.set(d, this.#buf.length);
      this.#buf = next;
      for (const w of this.#waiters.splice(0)) w();
    });
    const fail = (e: Error) => {
      this.#closed = e;
      for (const w of this.#waiters.splice(0)) w();
      for (const p of this.#pending.values()) p.reject(e);
      this.#pending.clear();
    };
    this.#socket.on("error", fail);
    this.#socket.on("close", () => fail(new Error("connection closed")));
  }

  async #take(n: number): Promise<Uint8Array> {
    while (this.#buf.length < n) {
      if (this.#closed) throw this.#closed;
      await new Promise<void>((r) => this.#waiters.push(r));
    }
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }

  async #readLoop(): Promise<void> {
    try {
      for (;;) {
        const h = new DataView((await this.#take(16)).slice().buffer);
        if (h.getUint32(0) !== SIMPLE_REPLY_MAGIC) throw new Error("bad reply magic");
        const error = h.getUint32(4);
        const cookie = h.getBigUint64(8);
        const p = this.#pending.get(cookie);
        if (!p) throw new Error(`reply for unknown cookie ${cookie}`);
        this.#pending.delete(cookie);
        if (error !== 0) p.reject(new Error(`NBD error ${error}`));
        else p.resolve(p.length > 0 ? (await this.#take(p.length)).slice() : new Uint8Array(0));
      }
    } catch (e) {
      for (const p of this.#pending.values()) p.reject(e as Error);
    }
  }

  #request(type: number, offset: number, length: number, data?: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(this.#closed);
    const cookie = this.#cookie++;
    const h = new DataView(new ArrayBuffer(28));
    h.setUint32(0, REQUEST_MAGIC);
    h.setUint16(4, 0);
    h.setUint16(6, type);
    h.setBigUint64(8, cookie);
    h.setBigUint64(16, BigInt(offset));
    h.setUint32(24, length);
    const done = new Promise<Uint8Array>((resolve, reject) =>
      this.#pending.set(cookie, { length: type === CMD.READ ? length : 0, resolve, reject }),
    );
    this.#socket.write(new Uint8Array(h.buffer));
    if (data) this.#socket.write(data);
    return done;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    return this.#request(CMD.READ, offset, length);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.#request(CMD.WRITE, offset, data.length, data);
  }

  async flush(): Promise<void> {
    await this.#request(CMD.FLUSH, 0, 0);
  }

  /** Sends NBD_CMD_DISC and closes. */
  close(): void {
    if (!this.#closed) {
      const h = new DataView(new ArrayBuffer(28));
      h.setUint32(0, REQUEST_MAGIC);
      h.setUint16(6, CMD.DISC);
      this.#socket.end(new Uint8Array(h.buffer));
    }
  }
}
