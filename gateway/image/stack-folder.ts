/**
 * Folds patch stacks back into whole chunks while an image is idle.
 *
 * A small write is stored as a patch chunk on its block's stack (block-map.ts), and a read
 * of that block reads the chunk and every patch on it: up to five chunk reads instead of
 * one. A stack is folded on the block's fifth small write; a block written fewer times
 * would keep its stack forever. So once the image has had no write for `idleMs`, this
 * folds the stacks it knows of, a batch at a time: each block is rewritten as the whole
 * chunk a read composes (its content does not change), through the image's ordinary
 * commit. Between batches it rests as long as the batch took, or three times as long when
 * the VM read meanwhile (so a reading VM gets at least three quarters of the stores'
 * time); the first write stops the run.
 *
 * Which blocks carry a stack: the ones this gateway's commits stacked (told through
 * {@link StackFolder.stacked}), and, once per ownership, a scan of the map for the stacks
 * that other gateways or earlier runs left (a few leaf pages per batch).
 */

/** What the folder asks of its image. */
export interface FoldTarget {
  /** Blocks with a patch stack from `from` on (see BlockMap.stackedBlocks). */
  scan(from: number, max: number, maxLeaves: number): Promise<{ blocks: number[]; next: number | null }>;
  /** Rewrites `blocks` as whole chunks and commits them; resolves with how many it rewrote. */
  fold(blocks: readonly number[]): Promise<number>;
}

/** Tunables of {@link StackFolder}. */
export interface StackFolderOptions {
  /** Folding starts once the image had no write for this long (ms). */
  readonly idleMs: number;
  /** Blocks folded per commit. */
  readonly batchBlocks: number;
  /** Leaf pages the map scan reads per batch at most. */
  readonly scanLeaves?: number;
}

/** Folds one image's patch stacks while it is idle (see the module doc). */
export class StackFolder {
  readonly #target: FoldTarget;
  readonly #options: StackFolderOptions;
  /** Blocks known to carry a stack, not folded yet. */
  readonly #known = new Set<number>();
  /** Where the map scan goes on (null: done). */
  #scanFrom: number | null = 0;
  #lastWrite = performance.now();
  #running: Promise<void> | null = null;
  /** A read came since the last batch began. */
  #readSince = false;
  #stopped = false;
  #folded = 0;

  constructor(target: FoldTarget, options: StackFolderOptions) {
    this.#target = target;
    this.#options = options;
  }

  /** Blocks known to carry a stack and not folded yet (a lower bound while the scan runs). */
  get pending(): number {
    return this.#known.size;
  }

  /** Whether the map scan for stacks is still owed. */
  get scanning(): boolean {
    return this.#scanFrom !== null;
  }

  /** Blocks folded so far. */
  get folded(): number {
    return this.#folded;
  }

  /** A write came: folding waits for the next idle stretch. */
  wrote(): void {
    this.#lastWrite = performance.now();
  }

  /** A read came: the fold rests longer after its batch. */
  read(): void {
    this.#readSince = true;
  }

  /** A commit laid a patch on `block`'s stack. */
  stacked(block: number): void {
    this.#known.add(block);
  }

  /** A commit rewrote `block` whole (its stack is gone). */
  unstacked(block: number): void {
    this.#known.delete(block);
  }

  #idle(): boolean {
    return !this.#stopped && performance.now() - this.#lastWrite >= this.#options.idleMs;
  }

  /** Starts a fold run if the image is idle and none runs (the image's timer calls this). */
  tick(): void {
    if (this.#running || !this.#idle() || (this.#known.size === 0 && this.#scanFrom === null)) return;
    this.#running = this.#run()
      .catch(() => {}) // a failed commit put its blocks back; the next idle stretch tries again
      .finally(() => {
        this.#running = null;
      });
  }

  /** Resolves once a fold run in progress has ended; none starts afterwards. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running;
  }

  async #run(): Promise<void> {
    const max = this.#options.batchBlocks;
    while (this.#idle()) {
      const started = performance.now();
      this.#readSince = false;
      if (this.#known.size < max && this.#scanFrom !== null) {
        const { blocks, next } = await this.#target.scan(this.#scanFrom, max, this.#options.scanLeaves ?? 16);
        for (const b of blocks) this.#known.add(b);
        this.#scanFrom = next;
      }
      if (this.#known.size === 0) {
        if (this.#scanFrom === null) return;
        await sleep(performance.now() - started); // the scan read pages: rest as long
        continue;
      }
      if (!this.#idle()) return;
      const batch: number[] = [];
      for (const b of this.#known) {
        if (batch.length >= max) break;
        batch.push(b);
      }
      // A block skipped for a pending write is told again by the commit that stores it.
      for (const b of batch) this.#known.delete(b);
      this.#folded += await this.#target.fold(batch);
      await sleep((performance.now() - started) * (this.#readSince ? READ_REST_FACTOR : 1));
    }
  }
}

/** After a batch during which the VM read, the fold rests this many times the batch's time. */
export const READ_REST_FACTOR = 3;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
