/**
 * SHA-256 of a stream, computed on a worker thread: the S3 endpoint must check the SigV4
 * payload hash of every signed upload, and on the gateway's one JavaScript thread that
 * was the largest single cost of an import (17 % of its time, docs/benchmarks.md). Bytes
 * are copied into 1 MiB buffers moved to one shared worker (Web Worker API: Bun and
 * Deno), which hashes them in order and moves each buffer back for reuse.
 *
 * If the worker fails, every digest still pending rejects and the next stream starts a
 * new worker; nothing is ever reported as verified that was not hashed. An idle worker is
 * ended after a few seconds (Deno has no `unref` for workers: one left running would keep
 * a process alive), and the next stream starts another.
 */

import { BufferPool } from "../runtime/buffer-pool.ts";

/** Main thread to worker. */
export type Sha256Request =
  | { readonly op: "update"; readonly id: number; readonly data: Uint8Array; readonly length: number }
  | { readonly op: "digest"; readonly id: number }
  | { readonly op: "drop"; readonly id: number };

/** Worker to main thread. */
export type Sha256Reply =
  | { readonly op: "free"; readonly data: Uint8Array }
  | { readonly op: "digest"; readonly id: number; readonly digest: Uint8Array };

/** Bytes gathered before a message to the worker. */
const BUFFER_BYTES = 1 << 20;
/** An idle worker is ended after this long. */
const IDLE_MS = 5000;

interface Shared {
  readonly worker: Worker;
  readonly waiting: Map<number, { resolve: (d: Uint8Array) => void; reject: (e: Error) => void }>;
  /** Buffers the worker handed back. */
  readonly free: BufferPool;
  failed: Error | null;
  /** Streams begun and not yet digested or dropped. */
  open: number;
  idleTimer: ReturnType<typeof setTimeout> | undefined;
}

let shared: Shared | null = null;
let nextId = 1;

function connect(): Shared {
  if (shared && !shared.failed) return shared;
  const worker = new Worker(new URL("./sha256-stream-worker.ts", import.meta.url).href, { type: "module" });
  const s: Shared = {
    worker,
    waiting: new Map(),
    free: new BufferPool(16),
    failed: null,
    open: 0,
    idleTimer: undefined,
  };
  const fail = (error: Error) => {
    s.failed = error;
    for (const w of s.waiting.values()) w.reject(error);
    s.waiting.clear();
    worker.terminate();
  };
  worker.onmessage = ({ data: m }: MessageEvent<Sha256Reply>) => {
    if (m.op === "free") {
      s.free.give(m.data);
    } else {
      s.waiting.get(m.id)?.resolve(m.digest);
      s.waiting.delete(m.id);
    }
  };
  worker.onerror = (event: ErrorEvent) => {
    event.preventDefault(); // else an error in a worker ends the process on Deno
    fail(new Error(`SHA-256 worker failed: ${event.message}`));
  };
  worker.onmessageerror = () => fail(new Error("SHA-256 worker: a message could not be deserialized"));
  // An idle worker must not keep the process alive (Bun and Node have unref; Deno does not need it).
  (worker as unknown as { unref?: () => void }).unref?.();
  shared = s;
  return s;
}

/** A stream began on `s`: the worker stays. */
function opened(s: Shared): void {
  s.open++;
  clearTimeout(s.idleTimer);
  s.idleTimer = undefined;
}

/** A stream ended on `s`: once none is open, and no digest is awaited, the worker ends after IDLE_MS. */
function closed(s: Shared): void {
  s.open--;
  if (s.open > 0 || s.failed) return;
  clearTimeout(s.idleTimer);
  s.idleTimer = setTimeout(() => {
    if (s.open > 0 || s.waiting.size > 0) return;
    s.failed = new Error("SHA-256 worker ended while idle");
    s.worker.terminate();
    if (shared === s) shared = null;
  }, IDLE_MS);
  // Bun's worker is unref'd already: its timer need not hold the process either. (Deno's
  // timer is a number without unref, and must fire to end the worker.)
  (s.idleTimer as { unref?: () => void }).unref?.();
}

/** A running SHA-256 whose hashing happens on the worker. */
export class OffThreadSha256 {
  readonly #s = connect();
  readonly #id = nextId++;
  #buf: Uint8Array | null = null;
  #fill = 0;
  #done = false;

  constructor() {
    opened(this.#s);
  }

  update(data: Uint8Array): void {
    if (this.#done) throw new Error("OffThreadSha256: update after digest or drop");
    let off = 0;
    while (off < data.byteLength) {
      this.#buf ??= this.#s.free.take(BUFFER_BYTES);
      const n = Math.min(BUFFER_BYTES - this.#fill, data.byteLength - off);
      this.#buf.set(data.subarray(off, off + n), this.#fill);
      this.#fill += n;
      off += n;
      if (this.#fill === BUFFER_BYTES) this.#send();
    }
  }

  /** The digest of everything given to `update`. */
  digest(): Promise<Uint8Array> {
    if (this.#done) return Promise.reject(new Error("OffThreadSha256: digest twice"));
    if (this.#s.failed) {
      this.#done = true;
      closed(this.#s);
      return Promise.reject(this.#s.failed);
    }
    if (this.#fill > 0) this.#send();
    this.#done = true;
    const result = new Promise<Uint8Array>((resolve, reject) =>
      this.#s.waiting.set(this.#id, { resolve, reject }),
    );
    this.#s.worker.postMessage({ op: "digest", id: this.#id } satisfies Sha256Request);
    void result.then(
      () => closed(this.#s),
      () => closed(this.#s),
    );
    return result;
  }

  /** Forgets the stream (a body that failed midway): the worker frees its state. */
  drop(): void {
    if (this.#done) return;
    this.#done = true;
    if (!this.#s.failed) this.#s.worker.postMessage({ op: "drop", id: this.#id } satisfies Sha256Request);
    closed(this.#s);
  }

  #send(): void {
    const data = this.#buf!;
    const message: Sha256Request = { op: "update", id: this.#id, data, length: this.#fill };
    if (!this.#s.failed) this.#s.worker.postMessage(message, [data.buffer as ArrayBuffer]);
    this.#buf = null;
    this.#fill = 0;
  }
}
