/**
 * A minimal NBD client over a raw socket, for server tests that real clients
 * cannot express (pipelining with chosen handles, garbage, not reading
 * replies). Message layouts are written out here, independently of the server.
 */
import net from "node:net";
import { be32, infoData, metaData, option, request } from "./_bytes.ts";

export interface SimpleReply {
  kind: "simple";
  error: number;
  handle: bigint;
}

export interface ChunkReply {
  kind: "chunk";
  flags: number;
  type: number;
  handle: bigint;
  payload: Uint8Array;
}

export type Reply = SimpleReply | ChunkReply;

export interface OptionReply {
  option: number;
  type: number;
  data: Uint8Array;
}

/** A byte-stream reader over a socket: `read(n)` resolves with exactly n bytes, or rejects at EOF. */
export class RawClient {
  readonly socket: net.Socket;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #waiter: (() => void) | null = null;
  #ended = false;
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#buffered += chunk.byteLength;
      this.#wake();
    });
    this.closed = new Promise((resolve) => {
      socket.on("close", () => {
        this.#ended = true;
        this.#wake();
        resolve();
      });
    });
    socket.on("error", () => {});
  }

  /** Connects to 127.0.0.1:`port`, or to the unix socket at `port` if it is a path. */
  static connect(port: number | string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const ready = () => resolve(new RawClient(socket));
      const socket =
        typeof port === "string" ? net.connect(port, ready) : net.connect(port, "127.0.0.1", ready);
      socket.once("error", reject);
    });
  }

  /**
   * Connects and negotiates fixed newstyle with NO_ZEROES, optionally
   * structured replies and base:allocation, then NBD_OPT_GO.
   */
  static async open(
    port: number | string,
    name: string,
    options: { structured?: boolean; meta?: boolean } = {},
  ): Promise<{ client: RawClient; size: number; flags: number }> {
    const client = await RawClient.connect(port);
    await client.read(18);
    client.write(be32(3));
    if (options.structured ?? true) {
      client.write(option(8));
      await client.optionReplies();
      if (options.meta ?? true) {
        client.write(option(10, metaData(name, ["base:allocation"])));
        await client.optionReplies();
      }
    }
    client.write(option(7, infoData(name)));
    const replies = await client.optionReplies();
    const info = replies.find((r) => r.type === 3 && r.data[1] === 0);
    if (!info) throw new Error(`GO failed: ${JSON.stringify(replies.map((r) => r.type))}`);
    const view = new DataView(info.data.buffer, info.data.byteOffset);
    return { client, size: Number(view.getBigUint64(2)), flags: view.getUint16(10) };
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Sends a request. */
  send(type: number, fields: Parameters<typeof request>[1] = {}): void {
    this.write(request(type, fields));
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = null;
    w?.();
  }

  get buffered(): number {
    return this.#buffered;
  }

  async read(n: number): Promise<Uint8Array> {
    while (this.#buffered < n) {
      if (this.#ended) throw new Error(`connection closed with ${this.#buffered} of ${n} bytes`);
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
      });
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const first = this.#chunks[0]!;
      const take = Math.min(first.byteLength, n - at);
      out.set(first.subarray(0, take), at);
      at += take;
      if (take === first.byteLength) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(take);
    }
    this.#buffered -= n;
    return out;
  }

  /** Reads option replies up to and including the final one (ACK or an error). */
  async optionReplies(): Promise<OptionReply[]> {
    const out: OptionReply[] = [];
    for (;;) {
      const header = await this.read(20);
      const view = new DataView(header.buffer);
      const reply = {
        option: view.getUint32(8),
        type: view.getUint32(12),
        data: await this.read(view.getUint32(16)),
      };
      out.push(reply);
      if (reply.type === 1 || reply.type >= 0x80000000) return out;
    }
  }

  /** Reads the next reply; for a successful simple READ reply pass the expected data length. */
  async reply(simpleReadLength = 0): Promise<Reply & { data?: Uint8Array }> {
    const head = await this.read(4);
    const magic = new DataView(head.buffer).getUint32(0);
    if (magic === 0x67446698) {
      const rest = new DataView((await this.read(12)).buffer);
      const error = rest.getUint32(0);
      const handle = rest.getBigUint64(4);
      const data = error === 0 && simpleReadLength > 0 ? await this.read(simpleReadLength) : undefined;
      return { kind: "simple", error, handle, ...(data ? { data } : {}) };
    }
    if (magic === 0x668e33ef) {
      const rest = new DataView((await this.read(16)).buffer);
      const length = rest.getUint32(12);
      return {
        kind: "chunk",
        flags: rest.getUint16(0),
        type: rest.getUint16(2),
        handle: rest.getBigUint64(4),
        payload: await this.read(length),
      };
    }
    throw new Error(`bad reply magic 0x${magic.toString(16)}`);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Errno of an ERROR chunk payload. */
export function chunkErrno(payload: Uint8Array): number {
  return new DataView(payload.buffer, payload.byteOffset).getUint32(0);
}

/** Message of an ERROR chunk payload. */
export function chunkMessage(payload: Uint8Array): string {
  const length = (payload[4]! << 8) | payload[5]!;
  return new TextDecoder().decode(payload.subarray(6, 6 + length));
}
