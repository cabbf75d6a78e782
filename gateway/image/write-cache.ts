/**
 * An image's write-back cache: blocks written but not yet committed (`dirty`), and the
 * ones a commit is taking (`flushing`). A partial write to a block held here patches a copy
 * of it; a partial write to a block that is not here is kept as a {@link BlockPatch} (the
 * bytes and ranges written), which the commit lays over the committed block. Operations on
 * one block are serialized so writes never interleave. Blocks and patches are never
 * modified in place (a commit or a read may hold one).
 *
 * Patches are relative to the committed block: one in `dirty` over a patch in `flushing`
 * includes that patch's ranges. A commit resolves the patches it took into whole blocks
 * ({@link WriteCache.resolved}) before it changes the map; if it fails, a newer patch in
 * `dirty` is laid over the block it failed to commit ({@link WriteCache.failed}): the map
 * may already name that block's chunk, which no head references (a collection may take it).
 *
 * Dirty bytes count against a budget shared by all images of the gateway
 * (`DirtyBudget`); a writer waits while it is spent.
 */

import { BlockPatch } from "./block-patch.ts";

/** A block's pending content: bytes, a patch over the committed block, or null for a hole (trimmed or zeroed). */
export type Pending = Uint8Array | BlockPatch | null;

/**
 * What a commit stores for a block once it has chosen (Image.#resolvePatches): a whole
 * block, a hole, or a small patch kept as it is, stored as a patch chunk on the block's
 * patch stack (block-map.ts).
 */
export type Resolved = Uint8Array | BlockPatch | null;

function sizeOf(content: Pending): number {
  return content === null ? 0 : content.byteLength;
}

/**
 * Dirty bytes across every image of a gateway: a writer waits while the total is over the
 * limit, and is woken when a commit takes blocks out.
 */
export class DirtyBudget {
  readonly limit: number;
  #used = 0;
  #waiters: (() => void)[] = [];

  /** @param limit bytes of dirty data the gateway holds at most (writers wait beyond). */
  constructor(limit: number) {
    if (!(limit > 0)) throw new RangeError(`Dirty budget must be positive; got ${limit}`);
    this.limit = limit;
  }

  get used(): number {
    return this.#used;
  }

  add(bytes: number): void {
    this.#used += bytes;
  }

  release(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes);
    if (this.#used < this.limit) {
      const w = this.#waiters;
      this.#waiters = [];
      for (const f of w) f();
    }
  }

  /** Resolves when there is room; `nudge` is called (once per wait) to get a commit going. */
  async room(nudge: () => void): Promise<void> {
    while (this.#used >= this.limit) {
      nudge();
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }
}

/** The dirty and flushing blocks of one image. */
export class WriteCache {
  readonly #dirty = new Map<number, Pending>();
  readonly #flushing = new Map<number, Pending>();
  readonly #locks = new Map<number, Promise<void>>();
  readonly #budget: DirtyBudget;
  #dirtyBytes = 0;
  #dirtySince = 0;

  constructor(budget: DirtyBudget) {
    this.#budget = budget;
  }

  /** Bytes written and not yet taken by a commit. */
  get dirtyBytes(): number {
    return this.#dirtyBytes;
  }

  /** Blocks written and not yet taken by a commit. */
  get dirtyBlocks(): number {
    return this.#dirty.size;
  }

  /** When the oldest dirty block was written (Date.now()), 0 if none. */
  get dirtySince(): number {
    return this.#dirty.size === 0 ? 0 : this.#dirtySince;
  }

  /** Whether `index` has pending content, and which (undefined: none, read the committed block). */
  pending(index: number): { content: Pending } | undefined {
    if (this.#dirty.has(index)) return { content: this.#dirty.get(index)! };
    if (this.#flushing.has(index)) return { content: this.#flushing.get(index)! };
    return undefined;
  }

  /** Runs `fn` after earlier operations on the same block. */
  serialized(index: number, fn: () => Promise<void> | void): Promise<void> {
    const prev = this.#locks.get(index) ?? Promise.resolve();
    const next = prev.then(fn);
    const tail = next.catch(() => {});
    this.#locks.set(index, tail);
    void tail.then(() => {
      if (this.#locks.get(index) === tail) this.#locks.delete(index);
    });
    return next;
  }

  /** Replaces block `index` (call from inside {@link serialized}). */
  put(index: number, content: Pending): void {
    const old = this.#dirty.get(index);
    if (old) this.#unaccount(sizeOf(old));
    if (this.#dirty.size === 0) this.#dirtySince = Date.now();
    this.#dirty.set(index, content);
    this.#account(sizeOf(content));
  }

  /** A commit resolved the patch it took for `index` into the whole block `content`. */
  resolved(index: number, patch: BlockPatch, content: Resolved): void {
    if (this.#flushing.get(index) === patch) this.#flushing.set(index, content);
  }

  /** Moves every dirty block to `flushing` for a commit and returns them. */
  take(): Map<number, Pending> {
    const batch = new Map(this.#dirty);
    this.#dirty.clear();
    for (const [i, c] of batch) this.#flushing.set(i, c);
    this.#unaccount(this.#dirtyBytes);
    return batch;
  }

  /** The commit of `batch` landed: its blocks are committed (unless rewritten meanwhile). */
  committed(batch: ReadonlyMap<number, Pending>): void {
    for (const [index, content] of batch)
      if (this.#flushing.get(index) === content) this.#flushing.delete(index);
  }

  /**
   * The commit of `batch` failed: put its blocks back, unless a newer write replaced one; a
   * newer patch is laid over a whole block now, as the map may name a chunk that never
   * landed. A failed patch needs neither: the commit put its stack back, and a newer patch
   * includes the failed one's ranges.
   */
  failed(batch: ReadonlyMap<number, Pending>): void {
    for (const [index, content] of batch) {
      const newer = this.#dirty.get(index);
      if (!this.#dirty.has(index)) {
        if (this.#dirty.size === 0) this.#dirtySince = Date.now();
        this.#dirty.set(index, content);
        this.#account(sizeOf(content));
      } else if (newer instanceof BlockPatch && !(content instanceof BlockPatch)) {
        const whole = newer.over(content);
        this.#dirty.set(index, whole);
        this.#account(whole.byteLength - newer.byteLength); // a whole block holds more than the patch did
      }
      if (this.#flushing.get(index) === content) this.#flushing.delete(index);
    }
  }

  /** Forgets everything (the image was taken over or deleted: none of it can be committed). */
  drop(): void {
    this.#dirty.clear();
    this.#flushing.clear();
    this.#unaccount(this.#dirtyBytes);
  }

  #account(bytes: number): void {
    this.#dirtyBytes += bytes;
    this.#budget.add(bytes);
  }

  #unaccount(bytes: number): void {
    this.#dirtyBytes -= bytes;
    this.#budget.release(bytes);
  }
}
