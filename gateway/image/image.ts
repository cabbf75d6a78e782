/**
 * An open image: the NBD {@link BlockDevice} over one image incarnation, shared by every
 * connection of this gateway to it.
 *
 * It starts as a follower: reads come from the latest committed version (the head is read
 * from the register before a read, shared by reads that arrive together), and nothing
 * changes ownership. The first write makes it the owner (takeover: the epoch moves on, and
 * the gateway that owned it before is fenced); from then on writes land in the write-back
 * cache and commits run one at a time, in the background or when a flush asks. If another
 * gateway takes it over in turn, or the image is deleted, every later write and flush fails
 * with the reason (NBD EIO), and a log line names the new owner.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { uninitializedBytes } from "../../runtime/uninitialized-bytes.ts";
import { ImageDeletedError, ReadOnlyError, StaleEpochError } from "../errors.ts";
import {
  ALL_CAPABILITIES,
  type BlockDevice,
  type BlockDeviceCapabilities,
  type BlockSizes,
  type Extent,
} from "../nbd/block-device.ts";
import { type BlockEntry, BlockMap, MAX_PATCH_STACK, ZERO_HASH } from "./block-map.ts";
import { BlockPatch, type SpanFill } from "./block-patch.ts";
import { blockSpans, copySpan } from "./block-spans.ts";
import { commitBatch, commitGrowth } from "./commit-pipeline.ts";
import { CommitQueue } from "./commit-queue.ts";
import { blockCount, type Head, isTombstone, liveHead } from "./head.ts";
import { addSnapshot, removeSnapshot, takeOver } from "./head-writer.ts";
import type { ImageContext, InflightCommit } from "./image-context.ts";
import { blockWithPatches } from "./patch-chunk.ts";
import { SharedRefresh } from "./shared-refresh.ts";
import { StackFolder } from "./stack-folder.ts";
import { type Pending, type Resolved, WriteCache } from "./write-cache.ts";

/** Largest read or write request (NBD maximum block size). */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;

/** An owner folds its patch stacks once it had no write for this long (ImageCacheOptions.foldIdleMs). */
export const DEFAULT_FOLD_IDLE_MS = 2000;
/** Bytes of blocks one fold commit rewrites. */
const FOLD_BATCH_BYTES = 4 * 1024 * 1024;

/** Earlier commit attempts in doubt remembered at most (each is a commit id). */
const MAX_ATTEMPTS_IN_DOUBT = 64;

/**
 * The owner's read lease: an owner serves reads from its own state only within this long
 * of the START of its last confirmation that it still owns the image (a takeover, a
 * commit, or a head read). A gateway that takes an image over waits this long, plus a
 * margin, before it accepts the first write, so the old owner (which may not know yet, or
 * may be frozen) can no longer serve a read older than that write. Monotonic clocks only.
 */
export const OWNER_READ_LEASE_MS = 250;
/** Added to the lease when a takeover waits it out (clock-rate slack, scheduling). */
const LEASE_MARGIN_MS = 100;

/** An image open for I/O. */
export class Image implements BlockDevice {
  readonly capabilities: BlockDeviceCapabilities;
  readonly blockSizes: BlockSizes;
  readonly readOnly: boolean;
  readonly #ctx: ImageContext;
  #head: Head;
  #map: BlockMap;
  #viewSize: number;
  /** Owner mode: this gateway may commit (set by a takeover, lost when fenced). */
  #owner = false;
  #takingOver: Promise<void> | null = null;
  readonly #cache: WriteCache;
  /** The last committed version (the base of the next commit). */
  #committed: { root: Hash; size: number };
  /** Commit ids whose head write may or may not have landed. */
  readonly #inDoubt = new Set<string>();
  readonly #pending = new Set<string>();
  readonly #commits = new CommitQueue(() => this.#commitOnce());
  #timer: ReturnType<typeof setInterval> | undefined;
  #fenced: StaleEpochError | ImageDeletedError | null = null;
  /** A follower's head reads, shared by reads that arrive while one runs that started after them. */
  readonly #refresh = new SharedRefresh();
  /** Monotonic time at which the last confirmation of ownership started. */
  #confirmedAt = 0;
  /** The owner's lease confirmations, shared by reads within half a lease. */
  readonly #confirming = new SharedRefresh(OWNER_READ_LEASE_MS / 2);
  /** A snapshot view's frozen root, or null for the live image. */
  readonly #view: { root: Hash; size: number } | null;
  /** The owner's folding of patch stacks while idle (null: not the owner, or folding is off). */
  #folder: StackFolder | null = null;

  /**
   * @param view for a snapshot: the frozen root and size to serve (read-only).
   */
  constructor(
    ctx: ImageContext,
    head: Head,
    options: { readOnly: boolean; view?: { root: Hash; size: number } },
  ) {
    this.#ctx = ctx;
    this.#head = head;
    this.readOnly = options.readOnly;
    this.#view = options.view ?? null;
    this.#viewSize = this.#view?.size ?? head.size;
    this.#committed = { root: head.root, size: head.size };
    this.#map = this.#newMap(this.#view?.root ?? head.root, this.#viewSize);
    this.#cache = new WriteCache(ctx.budget);
    // Everything an NBD client can use; a snapshot view is the same, read-only.
    this.capabilities = { ...ALL_CAPABILITIES, readOnly: this.readOnly };
    this.blockSizes = { minimum: 1, preferred: Math.max(4096, head.chunkSize), maximum: MAX_REQUEST_BYTES };
  }

  get name(): string {
    return this.#head.name;
  }
  get incarnation(): string {
    return this.#head.incarnation;
  }
  get size(): number {
    return this.#viewSize;
  }
  get chunkSize(): number {
    return this.#head.chunkSize;
  }
  /** The head as this image last knew it (the register has the current one). */
  get head(): Head {
    return this.#head;
  }
  get description(): string {
    return `blockmend image ${this.name}${this.readOnly ? " (read-only)" : ""}`;
  }
  /** Whether this gateway owns the image now (it wrote since it opened it). */
  get owner(): boolean {
    return this.#owner;
  }
  /** Bytes written but not yet committed. */
  get dirtyBytes(): number {
    return this.#cache.dirtyBytes;
  }
  /** Set once the image was taken over by another gateway or deleted; every later write and flush fails with it. */
  get fenced(): StaleEpochError | ImageDeletedError | null {
    return this.#fenced;
  }
  /** The owner's folding of patch stacks: blocks known to carry one, and blocks folded (null: none runs). */
  get folding(): { pending: number; scanning: boolean; folded: number } | null {
    const f = this.#folder;
    return f ? { pending: f.pending, scanning: f.scanning, folded: f.folded } : null;
  }
  /** The commit in flight now, if any: which stores have not yet received all of it. */
  get inflight(): InflightCommit | null {
    return this.#pending.size > 0 ? { image: this.name, pending: new Set(this.#pending) } : null;
  }

  #newMap(root: Hash, size: number): BlockMap {
    const blocks = Math.max(1, blockCount({ size, chunkSize: this.#head.chunkSize }));
    return new BlockMap((h) => this.#chunk(h), root, blocks);
  }

  /** A committed chunk or map page, through the gateway's shared cache. */
  async #chunk(hash: Hash): Promise<Uint8Array> {
    const cached = this.#ctx.chunkCache.get(hash);
    if (cached) return cached;
    const bytes = await this.#ctx.stores.getChunk(hash);
    this.#ctx.chunkCache.set(hash, bytes);
    return bytes;
  }

  // ---- following the committed version (not the owner)

  /**
   * Before a read by a follower: the head as committed now, so a read never returns older
   * data than a flush acknowledged anywhere before it began. Reads that arrive while a
   * refresh runs that started after them share it.
   */
  async #follow(): Promise<void> {
    if (this.#view) return;
    if (this.#owner) {
      const age = performance.now() - this.#confirmedAt;
      if (age < OWNER_READ_LEASE_MS) {
        // Renew ahead of time while reads come, so that they rarely wait for it.
        if (age > OWNER_READ_LEASE_MS / 2) void this.#confirm().catch(() => {});
        return;
      }
      await this.#confirm();
      if (this.#owner) return;
    }
    // Taken over by another gateway: reads go on from what it commits; deleted: nothing does.
    if (this.#fenced instanceof ImageDeletedError) throw this.#fenced;
    await this.#refresh.run(async () => {
      const head = await this.#readOwnHead();
      if (this.#owner) return; // became the owner meanwhile: its own state is current
      this.#followHead(head);
    });
  }

  /** The head of this image's incarnation from the register; fenced (and thrown) if it is gone. */
  async #readOwnHead(): Promise<Head> {
    const value = await this.#ctx.heads.read(this.name);
    const head = liveHead(value);
    if (head && head.incarnation === this.#head.incarnation) return head;
    const why = isTombstone(value)
      ? `deleted at ${value.deletedAt}`
      : "another image of that name exists now";
    this.#fence(new ImageDeletedError(this.name, this.#head.incarnation, why));
    throw this.#fenced;
  }

  /**
   * The owner's read lease ran out: read the head and either renew it (still the owner) or
   * learn that the image was taken over or deleted (fenced; reads then follow the head).
   */
  #confirm(): Promise<void> {
    return this.#confirming.run(async (started) => {
      const head = await this.#readOwnHead();
      if (head.epoch !== this.#head.epoch || head.owner !== this.#ctx.gatewayId) {
        this.#fence(new StaleEpochError(this.name, this.#head.epoch, head.epoch, head.owner));
        return;
      }
      this.#confirmedAt = Math.max(this.#confirmedAt, started);
    });
  }

  /** A follower takes `head` as its version: the map follows the head's root, always together. */
  #followHead(head: Head): void {
    if (head.root !== this.#committed.root || head.size !== this.#committed.size) {
      this.#map = this.#newMap(head.root, head.size);
      this.#viewSize = head.size;
      this.#committed = { root: head.root, size: head.size };
    }
    this.#head = head;
  }

  /** The first write: take the image over (or fail as fenced). Concurrent writers share it. */
  async #ensureOwner(): Promise<void> {
    if (this.#owner) return;
    this.#takingOver ??= (async () => {
      const sent = performance.now();
      const { head, result: previous } = await this.#ctx.heads.change(
        this.name,
        takeOver(this.name, this.#head.incarnation, this.#ctx.gatewayId),
      );
      const h = head as Head;
      // The previous owner may still serve reads for the rest of its read lease: no write
      // is accepted here before that lease has run out.
      if (previous && previous !== this.#ctx.gatewayId) await sleep(OWNER_READ_LEASE_MS + LEASE_MARGIN_MS);
      this.#confirmedAt = sent;
      this.#head = h;
      this.#map = this.#newMap(h.root, h.size);
      this.#viewSize = h.size;
      this.#committed = { root: h.root, size: h.size };
      this.#owner = true;
      if (previous && previous !== this.#ctx.gatewayId)
        this.#ctx.log(`image ${this.name}: taken over from gateway ${previous} (epoch ${h.epoch})`);
      const idleMs = this.#ctx.cache.foldIdleMs ?? DEFAULT_FOLD_IDLE_MS;
      if (Number.isFinite(idleMs))
        this.#folder = new StackFolder(
          {
            scan: (from, max, leaves) => this.#map.stackedBlocks(from, max, leaves),
            fold: (blocks) => this.#fold(blocks),
          },
          { idleMs, batchBlocks: Math.max(1, Math.floor(FOLD_BATCH_BYTES / this.chunkSize)) },
        );
      this.#timer = setInterval(() => {
        this.#maybeBackgroundCommit(true);
        this.#folder?.tick();
      }, this.#ctx.cache.flushIntervalMs / 2);
      (this.#timer as { unref?: () => void }).unref?.();
    })().finally(() => {
      this.#takingOver = null;
    });
    try {
      await this.#takingOver;
    } catch (err) {
      if (err instanceof StaleEpochError || err instanceof ImageDeletedError) this.#fence(err);
      throw err;
    }
  }

  // ---- reads

  /**
   * Current content of blocks: pending data first, then the committed chunks, fetched
   * together. Never modified by callers.
   */
  async #blocks(indices: readonly number[]): Promise<(Uint8Array | null)[]> {
    const pending = indices.map((i) => this.#cache.pending(i)?.content);
    // A patch includes every patch still in flight below it, so it lies over the map's block.
    const below = await this.#committedBlocks(
      indices.filter((_, k) => pending[k] === undefined || pending[k] instanceof BlockPatch),
    );
    let next = 0;
    return pending.map((p) => {
      if (p === undefined) return below[next++]!;
      if (p instanceof BlockPatch) return p.over(below[next++]!);
      return p;
    });
  }

  /**
   * The blocks as the map names them (null: a hole): each block's chunk with its patch
   * stack laid over it; the chunks not in the cache read together.
   */
  async #committedBlocks(indices: readonly number[]): Promise<(Uint8Array | null)[]> {
    if (indices.length === 0) return [];
    return this.#composed(await Promise.all(indices.map((i) => this.#map.entry(i))));
  }

  /** Map entries' blocks: each chunk with its patch stack laid over it; the chunks not in the cache read together. */
  async #composed(entries: readonly BlockEntry[]): Promise<(Uint8Array | null)[]> {
    const found = new Map<Hash, Uint8Array>();
    const wanted = new Set<Hash>();
    const want = (h: Hash) => {
      if (h === ZERO_HASH || found.has(h) || wanted.has(h)) return;
      const cached = this.#ctx.chunkCache.get(h);
      if (cached) found.set(h, cached);
      else wanted.add(h);
    };
    for (const e of entries) {
      want(e.hash);
      for (const p of e.patches) want(p);
    }
    if (wanted.size > 0) {
      const missing = [...wanted];
      const got = await this.#ctx.stores.getChunks(missing);
      missing.forEach((h, k) => {
        found.set(h, got[k]!);
        this.#ctx.chunkCache.set(h, got[k]!);
      });
    }
    return entries.map(({ hash, patches }) =>
      blockWithPatches(
        hash === ZERO_HASH ? null : found.get(hash)!,
        patches.map((p) => found.get(p)!),
        this.chunkSize,
      ),
    );
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.#folder?.read();
    await this.#follow();
    this.#checkRange(offset, length);
    // Not zeroed first: every span below is written, with its block or with zeroes.
    const out = uninitializedBytes(length);
    const spans = [...blockSpans(offset, length, this.chunkSize)];
    const blocks = await this.#blocks(spans.map((s) => s.index));
    for (let k = 0; k < spans.length; k++) copySpan(out, spans[k]!, blocks[k]!);
    return out;
  }

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    await this.#follow();
    this.#checkRange(offset, length);
    const extents: { length: number; hole: boolean; zero: boolean }[] = [];
    if (length === 0) return extents;
    // Committed runs first (hole subtrees are skipped whole), then pending blocks over them.
    const cs = this.chunkSize;
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + length - 1) / cs);
    const runs = await this.#map.runs(first, last - first + 1);
    let run = 0;
    let left = runs[0]!.blocks;
    // A plain loop, not blockSpans: a map request covers up to 2^20 blocks.
    for (let index = first; index <= last; index++) {
      const n = Math.min(offset + length, (index + 1) * cs) - Math.max(offset, index * cs);
      while (left === 0) left = runs[++run]!.blocks;
      left--;
      const pending = this.#cache.pending(index);
      const hole = pending ? pending.content === null : runs[run]!.hole;
      const last = extents.at(-1);
      if (last && last.hole === hole) last.length += n;
      else extents.push({ length: n, hole, zero: hole });
    }
    return extents;
  }

  // ---- writes

  async write(offset: number, data: Uint8Array, options: { fua: boolean }): Promise<void> {
    await this.#beforeWrite(offset, data.byteLength);
    await this.#ctx.budget.room(() => void this.#commits.commit().catch(() => {}));
    const jobs: Promise<void>[] = [];
    for (const { index, inBlock, length: n, at } of blockSpans(offset, data.byteLength, this.chunkSize)) {
      const src = data.subarray(at, at + n);
      if (n === this.chunkSize) {
        // A whole block: keep the caller's bytes (the NBD server hands them over) instead of copying.
        jobs.push(this.#setBlock(index, src));
      } else {
        jobs.push(this.#patchBlock(index, inBlock, n, (b, at) => b.set(src, at)));
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
    await this.#beforeWrite(offset, length);
    const jobs: Promise<void>[] = [];
    for (const { index, inBlock, length: n } of blockSpans(offset, length, this.chunkSize)) {
      if (n === this.#blockLength(index)) jobs.push(this.#setBlock(index, null));
      else jobs.push(this.#patchBlock(index, inBlock, n, (b, at) => b.fill(0, at, at + n)));
    }
    await Promise.all(jobs);
    if (options.fua) await this.flush();
  }

  async #beforeWrite(offset: number, length: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError(this.name);
    if (this.#fenced) throw this.#fenced;
    await this.#ensureOwner();
    this.#checkRange(offset, length);
  }

  /** Bytes of image data in block `index` (the last block may hold less; its stored chunk is zero-padded). */
  #blockLength(index: number): number {
    return Math.min(this.chunkSize, this.size - index * this.chunkSize);
  }

  #setBlock(index: number, content: Pending): Promise<void> {
    return this.#cache.serialized(index, () => this.#put(index, content));
  }

  /**
   * Writes `length` bytes at `start` of block `index` (`fill` writes them where it is
   * told). A block held in the cache is patched as a copy; otherwise the write is kept as
   * a {@link BlockPatch} that the next commit lays over the committed block, so a small
   * write never waits for a store read. Nothing is modified in place: a commit or a read may
   * hold the old block or patch.
   */
  #patchBlock(index: number, start: number, length: number, fill: SpanFill): Promise<void> {
    return this.#cache.serialized(index, () => {
      const pending = this.#cache.pending(index);
      const current = pending?.content;
      let next: Pending;
      if (current instanceof BlockPatch) next = current.with(start, length, fill);
      else if (pending) {
        // Over a block held here (or a pending hole): a patched copy of it.
        next = new Uint8Array(this.chunkSize);
        if (current) next.set(current);
        fill(next, start);
      } else next = BlockPatch.of(this.chunkSize, start, length, fill);
      // A patch over all of the block's data needs no base: it is the whole block.
      if (next instanceof BlockPatch && next.covers(this.#blockLength(index))) next = next.over(null);
      this.#put(index, next);
    });
  }

  /**
   * Chooses what the commit stores for each patch it took. A small one (at most a quarter
   * of the block) over a block whose patch stack has room stays a patch: it is stored as a
   * patch chunk on the stack. The others are laid over their committed blocks (fetched
   * together), so the batch holds whole blocks before the map changes (which folds the
   * block's stack into its new chunk); the cache keeps the results.
   */
  async #resolvePatches(batch: Map<number, Pending>): Promise<Map<number, Resolved>> {
    const patched = [...batch].filter((e): e is [number, BlockPatch] => e[1] instanceof BlockPatch);
    const stacks =
      this.#ctx.cache.patchWrites === false
        ? null
        : await Promise.all(patched.map(([i]) => this.#map.patches(i)));
    const small = this.chunkSize / 4;
    const folded = patched.filter(
      ([, patch], k) => !(stacks && stacks[k]!.length < MAX_PATCH_STACK && patch.byteLength <= small),
    );
    const bases = await this.#committedBlocks(folded.map(([index]) => index));
    folded.forEach(([index, patch], k) => {
      const whole: Resolved = patch.over(bases[k]!);
      batch.set(index, whole);
      this.#cache.resolved(index, patch, whole);
    });
    return batch;
  }

  #put(index: number, content: Pending): void {
    if (this.#fenced) throw this.#fenced;
    this.#folder?.wrote();
    this.#cache.put(index, content);
    this.#maybeBackgroundCommit(false);
  }

  #maybeBackgroundCommit(timer: boolean): void {
    if (this.#cache.dirtyBlocks === 0 || this.#commits.queued || this.#fenced) return;
    const old = timer && Date.now() - this.#cache.dirtySince >= this.#ctx.cache.flushIntervalMs;
    if (old || this.#cache.dirtyBytes >= this.#ctx.cache.flushThresholdBytes) {
      this.#commits.commit().catch(() => {}); // a background failure is reported to the next flush
    }
  }

  /**
   * Folds the patch stacks of `blocks` (StackFolder): each block, composed as the map names
   * it now, goes into the write cache as a whole block and the commit stores it as one
   * chunk, its content unchanged. A block with a write pending, or whose map entry changed
   * while it was read, is left alone (that write's commit decides). Resolves with how many
   * blocks it rewrote, once they are committed.
   */
  async #fold(blocks: readonly number[]): Promise<number> {
    const budget = this.#ctx.budget;
    if (this.#fenced || budget.used + blocks.length * this.chunkSize > budget.limit / 2) return 0;
    const map = this.#map;
    const entries = await Promise.all(blocks.map((i) => map.entry(i)));
    const whole = await this.#composed(entries);
    let rewritten = 0;
    await Promise.all(
      blocks.map((index, k) =>
        this.#cache.serialized(index, async () => {
          if (this.#fenced || this.#cache.pending(index)) return;
          const now = await this.#map.entry(index);
          if (this.#fenced || this.#cache.pending(index) || !sameEntry(now, entries[k]!)) return;
          this.#cache.put(index, whole[k]!);
          rewritten++;
        }),
      ),
    );
    if (rewritten > 0) await this.#commits.commit();
    return rewritten;
  }

  // ---- commits

  /**
   * Resolves once every write that resolved before the call is on at least `minReplicas`
   * stores and its head is on a majority of the register. A failed background commit put
   * its blocks back, so this retries them and reports the error if it fails again.
   */
  async flush(): Promise<void> {
    if (this.#fenced) throw this.#fenced;
    if (!this.readOnly && this.#owner) await this.#commits.commit();
  }

  async #commitOnce(): Promise<void> {
    if (this.#fenced) throw this.#fenced;
    if (this.#cache.dirtyBlocks === 0) return;
    const batch = this.#cache.take();
    const commitId = crypto.randomUUID();
    const started = performance.now();
    try {
      const whole = await this.#resolvePatches(batch);
      const { head, stored } = await commitBatch(this.#ctx, {
        head: this.#head,
        base: this.#committed,
        ownAttempts: this.#inDoubt,
        commitId,
        batch: whole,
        map: this.#map,
        chunkSize: this.chunkSize,
        pending: this.#pending,
      });
      this.#landed(head, started);
      this.#cache.committed(whole);
      if (this.#folder)
        for (const [index, content] of whole) {
          if (content instanceof BlockPatch) this.#folder.stacked(index);
          else this.#folder.unstacked(index);
        }
      for (const c of stored) this.#ctx.chunkCache.set(c.hash, c.bytes);
    } catch (err) {
      this.#pending.clear();
      if (err instanceof StaleEpochError || err instanceof ImageDeletedError) {
        this.#fence(err);
        throw err;
      }
      // Nothing is lost: the blocks go back. The head write may have landed all the same;
      // the next commit, which includes these blocks, recognises it.
      this.#inDoubt.add(commitId);
      if (this.#inDoubt.size > MAX_ATTEMPTS_IN_DOUBT)
        this.#inDoubt.delete(this.#inDoubt.values().next().value!);
      this.#cache.failed(batch);
      throw err;
    }
  }

  #landed(head: Head, started?: number): void {
    if (started !== undefined) this.#confirmedAt = Math.max(this.#confirmedAt, started);
    this.#head = head;
    this.#committed = { root: head.root, size: head.size };
    this.#inDoubt.clear();
  }

  /** Another gateway owns the image now, or it was deleted: what is cached can never be committed. */
  #fence(err: StaleEpochError | ImageDeletedError): void {
    if (this.#fenced) return;
    this.#fenced = err;
    this.#owner = false;
    clearInterval(this.#timer);
    void this.#folder?.stop();
    const lost = this.#cache.dirtyBytes;
    this.#cache.drop();
    this.#ctx.log(`image ${this.name}: ${err.message}${lost ? ` (${lost} unflushed bytes dropped)` : ""}`);
  }

  /** Marks the image deleted (this gateway deleted it): every later I/O fails. */
  deleted(): void {
    this.#fence(new ImageDeletedError(this.name, this.#head.incarnation, "deleted through this gateway"));
  }

  // ---- image-level operations (HTTP API)

  /**
   * Freezes the current version as snapshot `name`: on the owner after a flush (so it holds
   * every write acknowledged before), elsewhere the last committed version.
   */
  async snapshot(name: string): Promise<Head> {
    if (this.readOnly) throw new ReadOnlyError(this.name);
    if (this.#fenced) throw this.#fenced;
    await this.flush();
    return this.#commits.serialized(async () => {
      const { head } = await this.#ctx.heads.change(
        this.name,
        addSnapshot(this.name, this.#head.incarnation, name),
      );
      return this.#adopt(head as Head);
    });
  }

  /** Removes snapshot `name` (its chunks stay until garbage collection). */
  async deleteSnapshot(name: string): Promise<Head> {
    if (this.readOnly) throw new ReadOnlyError(this.name);
    return this.#commits.serialized(async () => {
      const { head } = await this.#ctx.heads.change(
        this.name,
        removeSnapshot(this.name, this.#head.incarnation, name),
      );
      return this.#adopt(head as Head);
    });
  }

  /**
   * A head this image changed (a snapshot): the owner keeps its own version (the change
   * moved no data); a follower takes the head and its root together, never the head alone
   * (found by the fault run: a snapshot through a follower left it serving its old map).
   */
  #adopt(head: Head): Head {
    if (this.#view) return head;
    if (this.#owner) {
      if (head.root === this.#committed.root) this.#head = head;
    } else this.#followHead(head);
    return head;
  }

  /** Grows the image to `size` bytes (a write: it takes the image over; shrinking would drop data: refused). */
  async resize(size: number): Promise<Head> {
    if (this.readOnly) throw new ReadOnlyError(this.name);
    if (size < this.size)
      throw new RangeError(`Image "${this.name}" can only grow (from ${this.size} to ${size} refused)`);
    await this.#ensureOwner();
    await this.flush();
    return this.#commits.serialized(async () => {
      const head = await commitGrowth(this.#ctx, {
        head: this.#head,
        base: this.#committed,
        ownAttempts: this.#inDoubt,
        size,
        chunkSize: this.chunkSize,
      });
      this.#landed(head);
      this.#map = this.#newMap(head.root, size);
      this.#viewSize = size;
      return head;
    });
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

  /** Commits what is dirty (if this gateway owns it) and stops the background flusher. */
  async close(): Promise<void> {
    try {
      await this.#folder?.stop();
      if (this.#owner && !this.#fenced) await this.flush();
    } finally {
      clearInterval(this.#timer);
    }
  }
}

function sameEntry(a: BlockEntry, b: BlockEntry): boolean {
  return (
    a.hash === b.hash &&
    a.patches.length === b.patches.length &&
    a.patches.every((p, i) => p === b.patches[i])
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
