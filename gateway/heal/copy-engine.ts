/**
 * The copy engine: heal, repair and (later) backup copy chunks with it. It reads a batch
 * from the other replicas with one `getMany` per source store (each chunk verified by the
 * store client that reads it; a chunk that batch read does not bring, or a batch that
 * fails, is read chunk by chunk, with hedging and bad copies reported), puts it on the
 * target with one request, keeps `concurrency` batches in flight, and spends the throttle's
 * bytes before each batch.
 */
import type { ChunkPut, Hash } from "../../chunkstore/chunk-store.ts";
import { ChunkNotFoundError } from "../../chunkstore/errors.ts";
import { rememberHash } from "../../chunkstore/hashed-here.ts";
import type { StoreSet } from "../replication/store-set.ts";
import type { HealThrottle } from "./throttle.ts";

/** Chunks per batch: one has/put request each (64 x 64 KiB = 4 MiB). */
const COPY_BATCH = 64;

/** A chunk to copy and the bytes it is expected to weigh (for the throttle and progress). */
export interface CopyItem {
  readonly hash: Hash;
  readonly estimate: number;
}

/** What a copy did. */
export interface CopyResult {
  readonly copiedChunks: number;
  readonly copiedBytes: number;
  /** Chunks no other replica had a good copy of (data loss, unless the target has one). */
  readonly lost: Hash[];
}

/** Copies chunks onto a store from the other replicas. */
export class CopyEngine {
  readonly #stores: StoreSet;
  readonly #throttle: HealThrottle;

  constructor(stores: StoreSet, throttle: HealThrottle) {
    this.#stores = stores;
    this.#throttle = throttle;
  }

  /**
   * Copies `items` onto store `target`. Stops starting batches when `proceed()` turns false
   * (a lost lease, a stop); `onBatch` hears of each batch put.
   */
  async copy(
    target: string,
    items: readonly CopyItem[],
    options: { proceed?: () => boolean; onBatch?: (chunks: number, bytes: number) => void } = {},
  ): Promise<CopyResult> {
    const store = this.#stores.member(target)?.store;
    if (!store) throw new RangeError(`No store "${target}"`);
    const proceed = options.proceed ?? (() => true);
    let next = 0;
    let copiedChunks = 0;
    let copiedBytes = 0;
    const lost: Hash[] = [];
    const worker = async () => {
      while (next < items.length && proceed()) {
        const batch = items.slice(next, next + COPY_BATCH);
        next += batch.length;
        await this.#throttle.rate.take(batch.reduce((a, i) => a + i.estimate, 0));
        const found = await this.#read(batch, target, lost);
        if (found.length === 0) continue;
        await store.putMany(found);
        const bytes = found.reduce((a, c) => a + c.bytes.byteLength, 0);
        copiedChunks += found.length;
        copiedBytes += bytes;
        options.onBatch?.(found.length, bytes);
      }
    };
    const lanes = Math.max(
      1,
      Math.min(this.#throttle.limits().concurrency, Math.ceil(items.length / COPY_BATCH)),
    );
    await Promise.all(Array.from({ length: lanes }, worker));
    return { copiedChunks, copiedBytes, lost };
  }

  /** Reads a batch from the other replicas; chunks no replica has go to `lost`. */
  async #read(batch: readonly CopyItem[], target: string, lost: Hash[]): Promise<ChunkPut[]> {
    const bySource = new Map<string, Hash[]>();
    for (const { hash } of batch) {
      const source = this.#stores.readOrder(hash, target)[0];
      if (source === undefined) continue;
      const list = bySource.get(source) ?? [];
      list.push(hash);
      bySource.set(source, list);
    }
    const got = new Map<Hash, Uint8Array>();
    await Promise.all(
      [...bySource].map(async ([source, hashes]) => {
        const store = this.#stores.member(source)?.store;
        const bytes = await store?.getMany(hashes).catch(() => null);
        bytes?.forEach((b, i) => {
          if (b) got.set(hashes[i]!, b);
        });
      }),
    );
    // Every read verified these bytes in this process, and nothing writes them before the
    // put: the target's client need not hash them again (a store server still does).
    const read = await Promise.all(
      batch.map(async ({ hash }): Promise<ChunkPut | null> => {
        const bytes = got.get(hash);
        if (bytes) return { hash, bytes: rememberHash(bytes, hash) };
        // Not in the batch read (missing there, a corrupt copy, a failed request): one by one.
        return this.#stores.getChunk(hash, target).then(
          (b) => ({ hash, bytes: rememberHash(b, hash) }),
          (err) => {
            if (err instanceof ChunkNotFoundError) {
              lost.push(hash);
              return null;
            }
            throw err;
          },
        );
      }),
    );
    return read.filter((r): r is ChunkPut => r !== null);
  }

  /**
   * Replaces a bad copy of `hash` on `target` with a good one from another replica: a
   * corrupt copy is dropped first (the file store keeps its bytes in the segment, out of
   * reach, until compaction). Resolves true if a good copy is there now.
   */
  async repair(target: string, hash: Hash, corrupt: boolean): Promise<boolean> {
    const store = this.#stores.member(target)?.store;
    if (!store) return false;
    let bytes: Uint8Array;
    try {
      // Quiet: a repair is the answer to a bad copy already recorded. Had it reported the
      // other stores' bad copies of a chunk no version needs, the heal would clear that
      // garbage's record and this read would put it back, every second, for good.
      bytes = await this.#stores.getChunk(hash, target, { reportBadCopies: false });
    } catch (err) {
      if (err instanceof ChunkNotFoundError) return false;
      throw err;
    }
    await this.#throttle.rate.take(bytes.byteLength);
    if (corrupt) await store.delete(hash);
    await store.put(hash, bytes);
    return true;
  }
}
