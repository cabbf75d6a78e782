/**
 * Copying images between local files and a gateway over its HTTP API, in pieces of
 * DATA_PIECE_BYTES with a few requests in flight and memory bounded by that:
 *
 * - import skips all-zero pieces (a new image reads as zeroes already; an existing one
 *   gets one zero request per run of them), so sparse and mostly-empty disks upload fast;
 * - export asks the allocation map first, downloads only data extents and writes a sparse
 *   file (holes are never written), next to the target as `FILE.part`, renamed at the end.
 */
import { open, rename, rm } from "node:fs/promises";
import { DATA_PIECE_BYTES } from "../gateway/http/http-wire.ts";
import { isZero } from "../workers/hash-task.ts";
import type { GatewayClient } from "./gateway-client.ts";

/** Requests in flight: enough to overlap network and commit latency, few enough to bound memory. */
export const TRANSFER_CONCURRENCY = 4;

/** What a transfer did. */
export interface TransferResult {
  /** Image (import) or file (export) size in bytes. */
  readonly size: number;
  /** Bytes that went over the wire. */
  readonly sentBytes: number;
  /** Bytes skipped: zero pieces on import, holes (and zero pieces) on export. */
  readonly skippedBytes: number;
  /** Import only: the image was created by this import. */
  readonly created: boolean;
}

/** Options shared by import and export. */
export interface TransferOptions {
  /** Called with the total size once known, then with each piece's bytes as it completes. */
  readonly onStart?: (size: number) => void;
  readonly onProgress?: (bytes: number) => void;
  readonly concurrency?: number;
}

/**
 * Uploads `file` into image `name`, creating it with the file's size rounded up to 512
 * bytes if it does not exist. An existing image must be at least as large; only the
 * file's range is written.
 */
export async function importImage(
  client: GatewayClient,
  file: string,
  name: string,
  options: TransferOptions & { chunkSize?: number } = {},
): Promise<TransferResult> {
  const fh = await open(file, "r");
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new TypeError(`Cannot import "${file}": not a regular file`);
    const size = st.size;
    let created = false;
    const existing = await client.infoIfExists(name);
    if (!existing) {
      await client.createImage(name, Math.ceil(size / 512) * 512, { chunkSize: options.chunkSize });
      created = true;
    } else if (existing.size < size) {
      throw new RangeError(
        `Image "${name}" has ${existing.size} bytes; "${file}" has ${size}: it does not fit`,
      );
    }
    options.onStart?.(size);

    const tasks = new TaskWindow(options.concurrency ?? TRANSFER_CONCURRENCY);
    let sent = 0;
    let skipped = 0;
    let zeroRun: { offset: number; length: number } | null = null;
    const endZeroRun = async () => {
      const run = zeroRun;
      zeroRun = null;
      if (run) await tasks.run(() => client.zero(name, run.offset, run.length));
    };
    for (let pos = 0; pos < size; pos += DATA_PIECE_BYTES) {
      const n = Math.min(DATA_PIECE_BYTES, size - pos);
      const piece = new Uint8Array(n);
      const { bytesRead } = await fh.read(piece, 0, n, pos);
      if (bytesRead !== n) throw new Error(`"${file}" shrank while importing: short read at ${pos}`);
      if (isZero(piece)) {
        skipped += n;
        // A new image is all holes: nothing to send. An existing one may hold old data there.
        if (!created) {
          if (zeroRun) zeroRun.length += n;
          else zeroRun = { offset: pos, length: n };
        }
        options.onProgress?.(n);
        continue;
      }
      await endZeroRun();
      const offset = pos;
      await tasks.run(async () => {
        await client.write(name, offset, piece);
        sent += n;
        options.onProgress?.(n);
      });
    }
    await endZeroRun();
    await tasks.drain();
    return { size, sentBytes: sent, skippedBytes: skipped, created };
  } finally {
    await fh.close();
  }
}

/**
 * Downloads image `name` (`image@snapshot` for a consistent copy of a running VM's disk)
 * into the sparse file `file`, replacing it.
 */
export async function exportImage(
  client: GatewayClient,
  name: string,
  file: string,
  options: TransferOptions = {},
): Promise<TransferResult> {
  let map = await client.map(name, 0);
  const size = map.size;
  options.onStart?.(size);
  const part = `${file}.part`;
  const fh = await open(part, "w");
  try {
    await fh.truncate(size); // all holes; only data is written below
    const tasks = new TaskWindow(options.concurrency ?? TRANSFER_CONCURRENCY);
    let sent = 0;
    let skipped = 0;
    while (true) {
      for (const extent of map.extents) {
        if (extent.hole) {
          skipped += extent.length;
          options.onProgress?.(extent.length);
          continue;
        }
        const end = extent.offset + extent.length;
        for (let pos = extent.offset; pos < end; pos += DATA_PIECE_BYTES) {
          const offset = pos;
          const n = Math.min(DATA_PIECE_BYTES, end - pos);
          await tasks.run(async () => {
            const bytes = await client.read(name, offset, n);
            sent += n;
            if (!isZero(bytes)) await fh.write(bytes, 0, n, offset);
            options.onProgress?.(n);
          });
        }
      }
      if (map.next === null) break;
      map = await client.map(name, map.next);
    }
    await tasks.drain();
    await fh.datasync();
    await fh.close();
    await rename(part, file);
    return { size, sentBytes: sent, skippedBytes: skipped, created: false };
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(part, { force: true });
    throw err;
  }
}

/**
 * At most `size` tasks in flight: `run` waits for a free slot (the producer slows down
 * instead of queueing pieces in memory). The first failure is thrown by the next `run`
 * or by `drain`, after the tasks in flight have settled.
 */
class TaskWindow {
  readonly #size: number;
  readonly #inFlight = new Set<Promise<void>>();
  #failure: { error: unknown } | null = null;

  constructor(size: number) {
    this.#size = size;
  }

  async run(task: () => Promise<void>): Promise<void> {
    while (this.#inFlight.size >= this.#size && !this.#failure) await Promise.race(this.#inFlight);
    if (this.#failure) await this.drain();
    const p: Promise<void> = task()
      .catch((error) => {
        this.#failure ??= { error };
      })
      .finally(() => this.#inFlight.delete(p));
    this.#inFlight.add(p);
  }

  async drain(): Promise<void> {
    await Promise.all(this.#inFlight);
    if (this.#failure) throw this.#failure.error;
  }
}
