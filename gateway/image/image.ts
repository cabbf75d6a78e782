/**
 * An open image: the write-back cache over its block map and replicated stores, and
 * the block device the NBD server and the HTTP API use.
 *
 * Writes land in `dirty` (whole blocks; a partial write reads, patches and replaces its
 * block, with writes to one block serialized). A commit moves `dirty` to `flushing`,
 * hashes the blocks in the worker pool, puts the chunks on their stores, writes the
 * changed map pages and compare-and-sets the head. Commits run one at a time, in the
 * background or when a flush asks; writers wait when dirty memory is full.
 */
import type { LRUCache } from "lru-cache";
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { toHex } from "../../chunkstore/hash.ts";
import type { TaskPool } from "../../workers/task-pool.ts";
import { ImageNotFoundError, ReadOnlyError, StaleEpochError } from "../errors.ts";
import {
  ALL_CAPABILITIES,
  type BlockDevice,
  type BlockDeviceCapabilities,
  type BlockSizes,
  type Extent,
} from "../nbd/block-device.ts";
import type { HeadState, HeadStore } from "../replication/head-store.ts";
import type { StoreSet } from "../replication/store-set.ts";
import { BlockMap, growRoot, levelsFor, ZERO_HASH } from "./block-map.ts";
import { blockSpans } from "./block-spans.ts";
import { advanceSynced, blockCount, type Head, type SyncedVersion } from "./head.ts";

/** Largest read or write request (NBD maximum block size). */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;

/** Blocks hashed per worker task: 16 x 64 KiB = 1 MiB, enough to amortize the hand-off. */
const HASH_TASK_BYTES = 1024 * 1024;

/** Tunables of the write-back cache. */
export interface ImageCacheOptions {
  /** Writers wait when this much dirty data is held. */
  readonly maxDirtyBytes: number;
  /** A background commit starts when this much is dirty. */
  readonly flushThresholdBytes: number;
  /** A background commit starts when dirty data is this old (ms). */
  readonly flushIntervalMs: number;
}

export const DEFAULT_CACHE_OPTIONS: ImageCacheOptions = {
  maxDirtyBytes: 256 * 1024 * 1024,
  flushThresholdBytes: 32 * 1024 * 1024,
  flushIntervalMs: 1000,
};

/** What an image needs from the gateway. */
export interface ImageContext {
  readonly stores: StoreSet;
  readonly heads: HeadStore;
  readonly pool: TaskPool;
  /** Clean chunks by hash, shared by all images of the gateway (dedup makes that pay). */
  readonly chunkCache: LRUCache<Hash, Uint8Array>;
  readonly cache: ImageCacheOptions;
}

/** A block's pending content: bytes, or null for a hole (trimmed or zeroed). */
type Pending = Uint8Array | null;

/** An image open for I/O; implements the NBD {@link BlockDevice}. */
export class Image implements BlockDevice {
  readonly capabilities: BlockDeviceCapabilities;
  readonly blockSizes: BlockSizes;
  #state: HeadState;
  #map: BlockMap;
  readonly #dirty = new Map<number, Pending>();
  readonly #flushing = new Map<number, Pending>();
  readonly #blockLocks = new Map<number, Promise<void>>();
  #dirtyBytes = 0;
  #dirtySince = 0;
  #commitRunning: Promise<void> = Promise.resolve();
  #commitQueued: Promise<void> | null = null;
  #spaceWaiters: (() => void)[] = [];
  #timer: ReturnType<typeof setInterval> | undefined;

  private readonly ctx: ImageContext;

  readonly readOnly: boolean;

  constructor(
    ctx: ImageContext,
    state: HeadState,
    readOnly: boolean /** For a snapshot view: the frozen root and size to serve instead of the head's. */,
    view?: { root: Hash; size: number },
  ) {
    this.ctx = ctx;

    this.readOnly = readOnly;
    this.#state = state;
    const size = view?.size ?? state.head.size;
    this.#map = new BlockMap(
      (h) => this.#loadPage(h),
      view?.root ?? state.head.root,
      Math.max(1, blockCount({ size, chunkSize: state.head.chunkSize })),
    );
    this.#viewSize = size;
    // Everything an NBD client can use; a snapshot view is the same, read-only.
    this.capabilities = { ...ALL_CAPABILITIES, readOnly };
    this.blockSizes = {
      minimum: 1,
      preferred: Math.max(4096, state.head.chunkSize),
      maximum: MAX_REQUEST_BYTES,
    };
    if (!readOnly) {
      this.#timer = setInterval(() => this.#maybeBackgroundCommit(true), ctx.cache.flushIntervalMs / 2);
      (this.#timer as { unref?: () => void }).unref?.();
    }
  }

  #viewSize: number;

  get name(): string {
    return this.#state.head.name;
  }
  get size(): number {
    return this.#viewSize;
  }
  get chunkSize(): number {
    return this.#state.head.chunkSize;
  }
  get head(): Head {
    return this.#state.head;
  }
  get description(): string {
    return `blockmend image ${this.name}${this.readOnly ? " (read-only)" : ""}`;
  }
  /** Bytes written but not yet committed. */
  get dirtyBytes(): number {
    return this.#dirtyBytes;
  }

  async #loadPage(hash: Hash): Promise<Uint8Array> {
    return this.ctx.stores.getChunk(hash);
  }

  // ---- reads

  /** Current content of one block: pending data first, then the committed chunk. Never modified by callers. */
  async #block(index: number): Promise<Uint8Array | null> {
    if (this.#dirty.has(index)) return this.#dirty.get(index)!;
    if (this.#flushing.has(index)) return this.#flushing.get(index)!;
    const hash = await this.#map.get(index);
    if (hash === ZERO_HASH) return null;
    const cached = this.ctx.chunkCache.get(hash);
    if (cached) return cached;
    const bytes = await this.ctx.stores.getChunk(hash);
    this.ctx.chunkCache.set(hash, bytes);
    return bytes;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.#checkRange(offset, length);
    const out = new Uint8Array(length);
    const jobs: Promise<void>[] = [];
    for (const s of blockSpans(offset, length, this.chunkSize)) {
      jobs.push(
        this.#block(s.index).then((b) => {
          if (b) out.set(b.subarray(s.inBlock, Math.min(s.inBlock + s.length, b.byteLength)), s.at);
        }),
      );
    }
    await Promise.all(jobs);
    return out;
  }

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    this.#checkRange(offset, length);
    const extents: { length: number; hole: boolean; zero: boolean }[] = [];
    for (const { index, length: n } of blockSpans(offset, length, this.chunkSize)) {
      let hole: boolean;
      if (this.#dirty.has(index)) hole = this.#dirty.get(index) === null;
      else if (this.#flushing.has(index)) hole = this.#flushing.get(index) === null;
      else hole = (await this.#map.get(index)) === ZERO_HASH;
      const last = extents.at(-1);
      if (last && last.hole === hole) last.length += n;
      else extents.push({ length: n, hole, zero: hole });
    }
    return extents;
  }

  // ---- writes

  async write(offset: number, data: Uint8Array, options: { fua: boolean }): Promise<void> {
    this.#checkWritable();
    this.#checkRange(offset, data.byteLength);
    await this.#waitForSpace();
    const jobs: Promise<void>[] = [];
    for (const { index, inBlock, length: n, at } of blockSpans(offset, data.byteLength, this.chunkSize)) {
      const src = data.subarray(at, at + n);
      if (n === this.chunkSize) {
        // A whole block: keep the caller's bytes (the NBD server hands them over) instead of copying.
        jobs.push(this.#setBlock(index, src));
      } else {
        jobs.push(this.#patchBlock(index, (b) => b.set(src, inBlock), n === this.#blockLength(index)));
      }
    }
    await Promise.all(jobs);
    if (options.fua) await this.flush();
  }

  async trim(offset: number, length: number, options: { fua: boolean }): Promise<void> {
    await this.writeZeroes(offset, length, { fua: options.fua, noHole: false, fastZero: false });
  }

  /**
   * Zeroes a range. Whole blocks become holes (content addressing never stores a zero
   * block, so `noHole` cannot be honoured and is not needed: the range reads as zeroes).
   */
  async writeZeroes(
    offset: number,
    length: number,
    options: { fua: boolean; noHole: boolean; fastZero: boolean },
  ): Promise<void> {
    this.#checkWritable();
    this.#checkRange(offset, length);
    const jobs: Promise<void>[] = [];
    for (const { index, inBlock, length: n } of blockSpans(offset, length, this.chunkSize)) {
      if (n === this.#blockLength(index)) jobs.push(this.#setBlock(index, null));
      else jobs.push(this.#patchBlock(index, (b) => b.fill(0, inBlock, inBlock + n), false));
    }
    await Promise.all(jobs);
    if (options.fua) await this.flush();
  }

  /** Bytes of image data in block `index` (the last block may hold less; its stored chunk is zero-padded). */
  #blockLength(index: number): number {
    return Math.min(this.chunkSize, this.size - index * this.chunkSize);
  }

  /** Runs `fn` after earlier operations on the same block, so read-modify-writes never interleave. */
  #serialized(index: number, fn: () => Promise<void> | void): Promise<void> {
    const prev = this.#blockLocks.get(index) ?? Promise.resolve();
    const next = prev.then(fn);
    const tail = next.catch(() => {});
    this.#blockLocks.set(index, tail);
    void tail.then(() => {
      if (this.#blockLocks.get(index) === tail) this.#blockLocks.delete(index);
    });
    return next;
  }

  #setBlock(index: number, content: Pending): Promise<void> {
    return this.#serialized(index, () => this.#putDirty(index, content));
  }

  /**
   * Replaces block `index` with a patched copy (`whole`: the patch covers all its data, skip
   * the read). Blocks are never modified in place: a commit or a read may hold the old one.
   */
  #patchBlock(index: number, patch: (b: Uint8Array) => void, whole: boolean): Promise<void> {
    return this.#serialized(index, async () => {
      const next = new Uint8Array(this.chunkSize);
      if (!whole) {
        const current = await this.#block(index);
        if (current) next.set(current);
      }
      patch(next);
      this.#putDirty(index, next);
    });
  }

  #putDirty(index: number, content: Pending): void {
    const old = this.#dirty.get(index);
    if (old) this.#dirtyBytes -= old.byteLength;
    if (this.#dirty.size === 0) this.#dirtySince = Date.now();
    this.#dirty.set(index, content);
    if (content) this.#dirtyBytes += content.byteLength;
    this.#maybeBackgroundCommit(false);
  }

  async #waitForSpace(): Promise<void> {
    while (this.#dirtyBytes >= this.ctx.cache.maxDirtyBytes) {
      void this.#queueCommit();
      await new Promise<void>((resolve) => this.#spaceWaiters.push(resolve));
    }
  }

  #maybeBackgroundCommit(timer: boolean): void {
    if (this.#dirty.size === 0 || this.#commitQueued) return;
    const old = timer && Date.now() - this.#dirtySince >= this.ctx.cache.flushIntervalMs;
    if (old || this.#dirtyBytes >= this.ctx.cache.flushThresholdBytes) {
      this.#queueCommit().catch(() => {}); // a background failure is reported to the next flush
    }
  }

  // ---- commits

  /**
   * Resolves once every write that resolved before the call is on at least `minReplicas`
   * stores and its head is on a majority of head holders. A failed background commit put
   * its blocks back, so this retries them and reports the error if it fails again.
   */
  async flush(): Promise<void> {
    if (this.#fenced) throw this.#fenced;
    if (!this.readOnly) await this.#queueCommit();
  }

  /** Queues a commit after the running one; concurrent callers share the queued one. */
  #queueCommit(): Promise<void> {
    if (this.#commitQueued) return this.#commitQueued;
    const queued = this.#commitRunning
      .catch(() => {})
      .then(() => {
        this.#commitQueued = null;
        return this.#commitOnce();
      });
    this.#commitQueued = queued;
    this.#commitRunning = queued;
    return queued;
  }

  async #commitOnce(): Promise<void> {
    if (this.#dirty.size === 0) return;
    const batch = new Map(this.#dirty);
    this.#dirty.clear();
    for (const [i, c] of batch) this.#flushing.set(i, c);
    this.#dirtyBytes = 0;
    this.#wakeWriters();
    try {
      const hashes = await this.#hashBlocks(batch);
      const chunks: { hash: Hash; bytes: Uint8Array }[] = [];
      for (const [index, content] of batch) {
        const hash = hashes.get(index)!;
        if (hash !== ZERO_HASH && content) chunks.push({ hash, bytes: content });
      }
      const dataOutcome = await this.ctx.stores.putChunks(chunks);
      for (const [index] of batch) await this.#map.set(index, hashes.get(index)!);
      const { root, pages } = await this.#map.commit();
      const pageOutcome = await this.ctx.stores.putChunks(pages);
      const failed = new Set([...dataOutcome.failedStores, ...pageOutcome.failedStores]);
      await this.#commitHead({ root }, failed);
      for (const [index, content] of batch) {
        if (this.#flushing.get(index) === content) this.#flushing.delete(index);
        if (content) this.ctx.chunkCache.set(hashes.get(index)!, content);
      }
    } catch (err) {
      if (err instanceof StaleEpochError) {
        // Another gateway owns the image now: what we hold can never be committed.
        this.#fenced = err;
        this.#dirty.clear();
        this.#flushing.clear();
        this.#dirtyBytes = 0;
        this.#wakeWriters();
        throw err;
      }
      // Nothing is lost: put the batch back unless a newer write replaced a block meanwhile.
      for (const [index, content] of batch) {
        if (!this.#dirty.has(index)) {
          this.#dirty.set(index, content);
          if (content) this.#dirtyBytes += content.byteLength;
        }
        if (this.#flushing.get(index) === content) this.#flushing.delete(index);
      }
      throw err;
    }
  }

  #wakeWriters(): void {
    const waiters = this.#spaceWaiters;
    this.#spaceWaiters = [];
    for (const w of waiters) w();
  }

  /** Hashes the batch's blocks in the worker pool; holes and all-zero blocks get ZERO_HASH. */
  async #hashBlocks(batch: Map<number, Pending>): Promise<Map<number, Hash>> {
    const out = new Map<number, Hash>();
    const cs = this.chunkSize;
    const perTask = Math.max(1, Math.floor(HASH_TASK_BYTES / cs));
    const entries: [number, Pending][] = [];
    for (const [i, c] of batch) {
      if (c) entries.push([i, c]);
      else out.set(i, ZERO_HASH);
    }
    const tasks: Promise<void>[] = [];
    for (let t = 0; t < entries.length; t += perTask) {
      const group = entries.slice(t, t + perTask);
      // Blocks are packed into one buffer (a copy: the originals stay readable) and moved to the worker.
      const packed = takePackBuffer(group.length * cs);
      group.forEach(([, c], k) => {
        packed.set(c!, k * cs);
      });
      tasks.push(
        this.ctx.pool
          .run(
            "hashBlocks",
            { data: packed, blockSize: cs, zeroIsHole: true },
            { transfer: [packed.buffer as ArrayBuffer] },
          )
          .then((r) => {
            group.forEach(([index], k) => {
              out.set(index, toHex(r.hashes.subarray(k * 32, k * 32 + 32)));
            });
            givePackBuffer(r.data);
          }),
      );
    }
    await Promise.all(tasks);
    return out;
  }

  /** Compare-and-sets the head to a new generation; advances `synced` for stores that got everything. */
  async #commitHead(
    change: {
      root?: Hash;
      size?: number;
      snapshots?: Head["snapshots"];
      syncedOverride?: Record<string, SyncedVersion>;
    },
    failedStores: ReadonlySet<string>,
  ): Promise<void> {
    const prev = this.#state;
    const generation = prev.head.generation + 1;
    const root = change.root ?? prev.head.root;
    const size = change.size ?? prev.head.size;
    const dataIds = this.ctx.stores.dataMembers.map((m) => m.id);
    const synced = {
      ...advanceSynced(prev.head, { generation, root, size }, dataIds, failedStores),
      ...change.syncedOverride,
    };
    const next: Head = {
      ...prev.head,
      root,
      size,
      snapshots: change.snapshots ?? prev.head.snapshots,
      generation,
      synced,
    };
    this.#state = await this.ctx.heads.commit(prev, next);
  }

  /**
   * Heal's last step, run between commits so no commit is in flight: if `store` holds
   * every chunk of the current version (`check` answers that, for the version about to
   * be committed), record it as in sync from this commit on. Resolves whether it did.
   * No VM request waits on this: writes go on into the cache; only the next commit
   * starts after it.
   */
  markSynced(store: string, check: (head: Head) => Promise<boolean>): Promise<boolean> {
    let marked = false;
    return this.#serializedCommit(async () => {
      const head = this.#state.head;
      if (!(await check(head))) return;
      const generation = head.generation + 1;
      await this.#commitHead(
        { syncedOverride: { [store]: { generation, root: head.root, size: head.size } } },
        new Set(),
      );
      marked = true;
    }).then(() => marked);
  }

  // ---- image-level operations (HTTP API)

  /** Flushes and freezes the current version as snapshot `name`. */
  async snapshot(name: string): Promise<void> {
    this.#checkWritable();
    await this.flush();
    await this.#serializedCommit(async () => {
      const head = this.#state.head;
      if (head.snapshots[name]) throw new RangeError(`Snapshot "${name}" of "${head.name}" exists already`);
      const frozen = {
        root: head.root,
        size: head.size,
        generation: head.generation,
        createdAt: new Date().toISOString(),
      };
      await this.#commitHead({ snapshots: { ...head.snapshots, [name]: frozen } }, new Set());
    });
  }

  /** Removes snapshot `name` (its chunks stay until garbage collection). */
  async deleteSnapshot(name: string): Promise<void> {
    this.#checkWritable();
    await this.#serializedCommit(async () => {
      const { [name]: gone, ...rest } = this.#state.head.snapshots;
      if (!gone) throw new ImageNotFoundError(`${this.name}@${name}`);
      await this.#commitHead({ snapshots: rest }, new Set());
    });
  }

  /** Grows the image to `size` bytes (shrinking would drop data: refused). */
  async resize(size: number): Promise<void> {
    this.#checkWritable();
    if (size < this.size)
      throw new RangeError(`Image "${this.name}" can only grow (from ${this.size} to ${size} refused)`);
    await this.flush();
    await this.#serializedCommit(async () => {
      const blocks = Math.max(1, blockCount({ size, chunkSize: this.chunkSize }));
      const grown = growRoot(this.#map.root, this.#map.levels, levelsFor(blocks));
      const outcome = await this.ctx.stores.putChunks(grown.pages);
      await this.#commitHead({ root: grown.root, size }, outcome.failedStores);
      this.#map = new BlockMap((h) => this.#loadPage(h), grown.root, blocks);
      this.#viewSize = size;
    });
  }

  #serializedCommit(fn: () => Promise<void>): Promise<void> {
    const run = this.#commitRunning.catch(() => {}).then(fn);
    this.#commitRunning = run;
    return run;
  }

  #checkRange(offset: number, length: number): void {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > this.size
    ) {
      throw new RangeError(`Range ${offset}+${length} is outside image "${this.name}" of ${this.size} bytes`);
    }
  }

  #checkWritable(): void {
    if (this.readOnly) throw new ReadOnlyError(this.name);
    if (this.#fenced) throw this.#fenced;
  }

  #fenced: StaleEpochError | null = null;

  /** Set once another gateway took the image over; every later write and flush fails with it. */
  get fenced(): StaleEpochError | null {
    return this.#fenced;
  }

  /** Commits what is dirty and stops the background flusher. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    if (!this.readOnly && !this.#fenced) await this.flush();
  }
}

/**
 * Reused buffers for packing blocks to hash: a fresh buffer per task makes the kernel
 * fault in and zero every page again (about 10 us per 4 KiB page on this VM, more CPU
 * than the hashing). They come back from the worker (moved both ways) for the next task.
 */
const packBuffers: Uint8Array[] = [];
/** Pack buffers kept: enough for the tasks of one commit in flight. */
const MAX_PACK_BUFFERS = 16;

function takePackBuffer(size: number): Uint8Array {
  const i = packBuffers.findIndex((b) => b.byteLength === size);
  return i >= 0 ? packBuffers.splice(i, 1)[0]! : new Uint8Array(size);
}

function givePackBuffer(buffer: Uint8Array): void {
  if (
    packBuffers.length < MAX_PACK_BUFFERS &&
    buffer.byteOffset === 0 &&
    buffer.byteLength === buffer.buffer.byteLength
  ) {
    packBuffers.push(buffer);
  }
}
