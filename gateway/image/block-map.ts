/**
 * An image's block map as a Merkle tree of pages. Leaf pages hold the 32-byte hashes of
 * data chunks (all zeros = a hole); upper pages hold the hashes of the pages below. Pages
 * are chunks too, so one root hash names a whole image version, and two versions share
 * every page they have in common (snapshots, clones, heal diffs).
 *
 * Page format (frozen): the concatenation of up to FANOUT raw hashes with trailing
 * zero entries trimmed. A page whose entries are all zero is never stored: its hash is
 * the zero hash, like a hole.
 *
 * Patch stacks (the write log): a leaf's block may also name, in order, up to
 * {@link MAX_PATCH_STACK} patch chunks (patch-chunk.ts) laid over its base chunk (or over
 * zeroes when the entry is a hole): a small write is stored as a small chunk instead of a
 * rewrite of the block. A leaf page with stacks is stored as its FANOUT entries in full
 * (8 KiB, untrimmed), then per block with a stack: u8 slot, u8 n, n raw hashes; then u32
 * the number of such blocks and "BMP2". It is longer than any plain page, so
 * {@link decodePage} refuses it: a walker that does not know stacks fails loudly instead
 * of missing the chunks they name ({@link decodeLeafPage} reads both forms).
 *
 * Memory: a hole costs nothing. A lookup that meets a zero entry stops there (the whole
 * subtree below is a hole), so reading or mapping a sparse image loads and allocates no
 * page for its holes; a page is made for a hole only when a block under it is written.
 * Loaded clean pages of one map are bounded by an LRU ({@link DEFAULT_LOADED_PAGE_BYTES});
 * an evicted page is loaded again through the page loader (the gateway's chunk cache).
 * Dirty pages stay until the commit that writes them, and the pages a commit wrote stay
 * until the caller says they are stored ({@link BlockMap.pagesStored}).
 */
import { LRUCache } from "lru-cache";
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { fromHex, HASH_BYTES, hashBytes, toHex } from "../../chunkstore/hash.ts";

/** Entries per page: 256 x 32 bytes = 8 KiB pages; a leaf covers 16 MiB of 64 KiB chunks. */
export const FANOUT = 256;

/** Bytes of a page in memory (a full FANOUT-entry page). */
export const PAGE_BYTES = FANOUT * HASH_BYTES;

/**
 * Clean pages one open map keeps loaded: 16 MiB = 2048 pages, the whole map of 32 GiB of
 * written data at 64 KiB chunks; past that the least recently used clean pages go (the
 * gateway's chunk cache keeps their bytes, so one comes back without a store read).
 */
export const DEFAULT_LOADED_PAGE_BYTES = 16 * 1024 * 1024;

/** Patch chunks one block's stack holds at most; a commit folds the block into a whole chunk past that. */
export const MAX_PATCH_STACK = 4;

const STACK_MAGIC = new TextEncoder().encode("BMP2");

/** The address of a hole (an all-zero block) and of an empty page. */
export const ZERO_HASH: Hash = "0".repeat(64);

const ZERO_ENTRY = new Uint8Array(HASH_BYTES);

/** Tree levels needed for `blocks` entries (1 = the root is the only leaf page). */
export function levelsFor(blocks: number): number {
  let levels = 1;
  let span = FANOUT;
  while (span < blocks) {
    span *= FANOUT;
    levels++;
  }
  return levels;
}

/** Bytes of a page: its entries with trailing zero entries cut. */
export function encodePage(entries: Uint8Array): Uint8Array {
  let end = entries.byteLength;
  while (end > 0 && isZeroEntry(entries, end - HASH_BYTES)) end -= HASH_BYTES;
  return entries.slice(0, end);
}

/** A full FANOUT-entry page from its stored bytes. */
export function decodePage(bytes: Uint8Array): Uint8Array {
  if (bytes.byteLength % HASH_BYTES !== 0 || bytes.byteLength > PAGE_BYTES) {
    throw new RangeError(`Invalid block map page of ${bytes.byteLength} bytes`);
  }
  const page = new Uint8Array(PAGE_BYTES);
  page.set(bytes);
  return page;
}

/** A leaf page's patch stacks: slot to patch chunk hashes, oldest first. */
export type PatchStacks = ReadonlyMap<number, readonly Hash[]>;

/** Bytes of a leaf page: {@link encodePage} without stacks, the stacked form (module doc) with them. */
export function encodeLeafPage(entries: Uint8Array, stacks: PatchStacks | null): Uint8Array {
  if (!stacks || stacks.size === 0) return encodePage(entries);
  const slots = [...stacks.keys()].sort((a, b) => a - b);
  let length = PAGE_BYTES + 4 + STACK_MAGIC.byteLength;
  for (const slot of slots) length += 2 + stacks.get(slot)!.length * HASH_BYTES;
  const out = new Uint8Array(length);
  out.set(entries.subarray(0, PAGE_BYTES));
  let at = PAGE_BYTES;
  for (const slot of slots) {
    const stack = stacks.get(slot)!;
    if (stack.length === 0 || stack.length > 255)
      throw new RangeError(`Invalid patch stack of ${stack.length}`);
    out[at] = slot;
    out[at + 1] = stack.length;
    at += 2;
    for (const h of stack) {
      out.set(rawHash(h), at);
      at += HASH_BYTES;
    }
  }
  new DataView(out.buffer).setUint32(at, slots.length, true);
  out.set(STACK_MAGIC, at + 4);
  return out;
}

/** A leaf page's full FANOUT entries and its patch stacks (empty for a plain page). */
export function decodeLeafPage(bytes: Uint8Array): { entries: Uint8Array; stacks: Map<number, Hash[]> } {
  const stacks = new Map<number, Hash[]>();
  if (bytes.byteLength <= PAGE_BYTES) return { entries: decodePage(bytes), stacks };
  const bad = (why: string) =>
    new RangeError(`Invalid block map leaf page of ${bytes.byteLength} bytes: ${why}`);
  const end = bytes.byteLength - 4 - STACK_MAGIC.byteLength;
  if (end < PAGE_BYTES) throw bad("too short for patch stacks");
  for (let i = 0; i < STACK_MAGIC.byteLength; i++)
    if (bytes[end + 4 + i] !== STACK_MAGIC[i]) throw bad("no BMP2 trailer");
  const count = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(end, true);
  let at = PAGE_BYTES;
  let last = -1;
  for (let k = 0; k < count; k++) {
    if (at + 2 > end) throw bad("stacks cut short");
    const slot = bytes[at]!;
    const n = bytes[at + 1]!;
    at += 2;
    if (slot <= last || n === 0 || at + n * HASH_BYTES > end) throw bad(`stack of slot ${slot}`);
    const stack: Hash[] = [];
    for (let j = 0; j < n; j++, at += HASH_BYTES) stack.push(toHex(bytes.subarray(at, at + HASH_BYTES)));
    stacks.set(slot, stack);
    last = slot;
  }
  if (at !== end || count === 0) throw bad("stack table does not match its length");
  return { entries: bytes.slice(0, PAGE_BYTES), stacks };
}

function isZeroEntry(page: Uint8Array, offset: number): boolean {
  for (let i = offset; i < offset + HASH_BYTES; i++) if (page[i] !== 0) return false;
  return true;
}

/** Raw 32 bytes of a hex hash. */
function rawHash(hash: Hash): Uint8Array {
  return hash === ZERO_HASH ? ZERO_ENTRY : fromHex(hash);
}

/** Reads a page chunk by hash (from the image's stores). */
export type PageLoader = (hash: Hash) => Promise<Uint8Array>;

/**
 * A page loaded in memory. `dirty` pages (and every page above one) are rewritten by the
 * next {@link BlockMap.commit} and are never evicted; clean pages below the top sit in
 * the map's LRU, and evicting one detaches it (and what was loaded below it) from its parent.
 */
interface Node {
  entries: Uint8Array;
  /** A leaf's patch stacks (null: none, and always for upper pages). */
  stacks: Map<number, Hash[]> | null;
  dirty: boolean;
  children: Map<number, Node>;
  /** The page above and this page's slot in it; null for the top page. */
  parent: Node | null;
  slot: number;
}

/** The pages a commit produced: the new root and the page chunks to store. */
export interface MapCommit {
  readonly root: Hash;
  readonly pages: { hash: Hash; bytes: Uint8Array }[];
}

/** A block's entry in the map: its chunk ({@link ZERO_HASH}: a hole) and the patch chunks over it, oldest first. */
export interface BlockEntry {
  readonly hash: Hash;
  readonly patches: readonly Hash[];
}

/** A run of blocks that are all holes or all data, as {@link BlockMap.runs} yields them. */
export interface BlockRun {
  readonly blocks: number;
  readonly hole: boolean;
}

/** Options of {@link BlockMap}. */
export interface BlockMapOptions {
  /** Clean pages kept loaded, in bytes (default {@link DEFAULT_LOADED_PAGE_BYTES}). */
  readonly loadedPageBytes?: number;
}

/**
 * A mutable view of one image version's block map. Pages load lazily; holes are never
 * loaded or allocated, and clean pages are bounded by an LRU (see the module doc).
 */
export class BlockMap {
  #root: Hash;
  #levels: number;
  #top: Promise<Node> | null = null;
  readonly #load: PageLoader;
  /** Clean pages below the top, least recently used first out. */
  readonly #clean: LRUCache<Node, Node>;
  /** Pages the last commit wrote, kept until {@link BlockMap.pagesStored}: their bytes may be nowhere else yet. */
  #unstored: Node[] = [];
  #topSettled: Node | null = null;

  readonly blocks: number;

  constructor(load: PageLoader, root: Hash, blocks: number, options: BlockMapOptions = {}) {
    this.#load = load;
    this.blocks = blocks;
    this.#root = root;
    this.#levels = levelsFor(blocks);
    const maxSize = options.loadedPageBytes ?? DEFAULT_LOADED_PAGE_BYTES;
    this.#clean = new LRUCache<Node, Node>({
      maxSize: Math.max(PAGE_BYTES, maxSize),
      sizeCalculation: () => PAGE_BYTES,
      // Called once the cache is consistent again, so the subtree can be dropped from it too.
      disposeAfter: (node, _key, reason) => {
        if (reason === "evict") this.#detach(node);
      },
    });
  }

  /** Hash of the last committed version. */
  get root(): Hash {
    return this.#root;
  }

  get levels(): number {
    return this.#levels;
  }

  /** Pages in memory now (the top one and every loaded or dirty one below it). */
  get loadedPages(): number {
    let n = 0;
    const count = (node: Node) => {
      n++;
      for (const c of node.children.values()) count(c);
    };
    // The top is settled once any lookup finished; before that nothing is loaded.
    if (this.#topSettled) count(this.#topSettled);
    return n;
  }

  async #node(hash: Hash, parent: Node | null, slot: number, leaf: boolean): Promise<Node> {
    // Only the top page of an empty map is made for a hole (lookups stop at zero entries).
    if (hash === ZERO_HASH) {
      return {
        entries: new Uint8Array(PAGE_BYTES),
        stacks: null,
        dirty: false,
        children: new Map(),
        parent,
        slot,
      };
    }
    const bytes = await this.#load(hash);
    if (!leaf)
      return { entries: decodePage(bytes), stacks: null, dirty: false, children: new Map(), parent, slot };
    const { entries, stacks } = decodeLeafPage(bytes);
    return { entries, stacks: stacks.size ? stacks : null, dirty: false, children: new Map(), parent, slot };
  }

  #topNode(): Promise<Node> {
    this.#top ??= this.#node(this.#root, null, 0, this.#levels === 1).then((n) => {
      this.#topSettled = n;
      return n;
    });
    return this.#top;
  }

  /** An evicted page leaves its parent, and every page loaded below it leaves the LRU. */
  #detach(node: Node): void {
    const parent = node.parent;
    if (parent && parent.children.get(node.slot) === node) parent.children.delete(node.slot);
    const drop = (n: Node) => {
      for (const c of n.children.values()) {
        this.#clean.delete(c);
        drop(c);
      }
      n.children.clear();
    };
    drop(node);
  }

  /** True if `node` is still reachable from the top (not evicted meanwhile). */
  #attached(node: Node): boolean {
    for (let n = node; n.parent; n = n.parent) if (n.parent.children.get(n.slot) !== n) return false;
    return true;
  }

  #checkBlock(block: number): void {
    if (!Number.isInteger(block) || block < 0 || block >= this.blocks) {
      throw new RangeError(`Block ${block} is outside the map (${this.blocks} blocks)`);
    }
  }

  /** The loaded child at `slot` of `node` (a leaf if `leaf`), loading it (a non-hole) if needed. */
  async #child(node: Node, slot: number, leaf: boolean): Promise<Node> {
    let child = node.children.get(slot);
    if (child) {
      if (!child.dirty) this.#clean.get(child); // recently used
      return child;
    }
    const hash = toHex(node.entries.subarray(slot * HASH_BYTES, (slot + 1) * HASH_BYTES));
    const loaded = await this.#node(hash, node, slot, leaf);
    // Another lookup may have loaded it meanwhile; keep the first so no update is lost.
    child = node.children.get(slot);
    if (child) return child;
    node.children.set(slot, loaded);
    if (!node.dirty && !this.#attached(node)) return loaded; // its parent was evicted meanwhile
    this.#clean.set(loaded, loaded);
    return loaded;
  }

  /**
   * Descends towards the leaf holding `block`, loading pages on the way. Stops at the
   * first zero entry: `leaf` is then null (the block is a hole; nothing was allocated).
   */
  async #find(block: number): Promise<{ leaf: Node | null; path: Node[] }> {
    let node = await this.#topNode();
    const path = [node];
    for (let level = this.#levels - 1; level > 0; level--) {
      const slot = Math.floor(block / FANOUT ** level) % FANOUT;
      if (!node.children.has(slot) && isZeroEntry(node.entries, slot * HASH_BYTES)) {
        return { leaf: null, path };
      }
      node = await this.#child(node, slot, level === 1);
      path.push(node);
    }
    return { leaf: node, path };
  }

  /** Hash of the chunk at `block`, or {@link ZERO_HASH} for a hole. */
  async get(block: number): Promise<Hash> {
    this.#checkBlock(block);
    const { leaf } = await this.#find(block);
    if (!leaf) return ZERO_HASH;
    const off = (block % FANOUT) * HASH_BYTES;
    return isZeroEntry(leaf.entries, off) ? ZERO_HASH : toHex(leaf.entries.subarray(off, off + HASH_BYTES));
  }

  /** The patch chunks laid over `block`'s chunk, oldest first (empty: none). */
  async patches(block: number): Promise<readonly Hash[]> {
    return (await this.entry(block)).patches;
  }

  /** `block`'s chunk ({@link ZERO_HASH}: a hole) and the patch chunks laid over it, oldest first. */
  async entry(block: number): Promise<BlockEntry> {
    this.#checkBlock(block);
    const { leaf } = await this.#find(block);
    if (!leaf) return { hash: ZERO_HASH, patches: [] };
    const slot = block % FANOUT;
    const off = slot * HASH_BYTES;
    const hash = isZeroEntry(leaf.entries, off)
      ? ZERO_HASH
      : toHex(leaf.entries.subarray(off, off + HASH_BYTES));
    return { hash, patches: leaf.stacks?.get(slot) ?? [] };
  }

  /** Points `block` at `hash` (ZERO_HASH makes it a hole) with no patches. Visible at once; durable after commit. */
  async set(block: number, hash: Hash): Promise<void> {
    await this.#update(block, hash === ZERO_HASH, (leaf, slot) => {
      leaf.entries.set(rawHash(hash), slot * HASH_BYTES);
      leaf.stacks?.delete(slot);
    });
  }

  /** Replaces the patch stack of `block` (its chunk stays). Visible at once; durable after commit. */
  async setPatches(block: number, patches: readonly Hash[]): Promise<void> {
    if (patches.length > 255)
      throw new RangeError(`A patch stack holds at most 255 chunks; got ${patches.length}`);
    await this.#update(block, patches.length === 0, (leaf, slot) => {
      if (patches.length === 0) leaf.stacks?.delete(slot);
      else {
        leaf.stacks ??= new Map();
        leaf.stacks.set(slot, [...patches]);
      }
    });
  }

  /** Lays `patch` on top of `block`'s patch stack; returns the stack it had before. */
  async appendPatch(block: number, patch: Hash): Promise<readonly Hash[]> {
    let before: readonly Hash[] = [];
    await this.#update(block, false, (leaf, slot) => {
      before = leaf.stacks?.get(slot) ?? [];
      if (before.length >= 255) throw new RangeError(`A patch stack holds at most 255 chunks`);
      leaf.stacks ??= new Map();
      leaf.stacks.set(slot, [...before, patch]);
    });
    return before;
  }

  /**
   * Changes `block`'s slot in its leaf with `change`, making the pages of a hole's levels
   * if needed and marking the path dirty. `clears`: the change leaves the slot empty, so on
   * a hole (no leaf yet) it is nothing to do.
   */
  async #update(block: number, clears: boolean, change: (leaf: Node, slot: number) => void): Promise<void> {
    this.#checkBlock(block);
    for (;;) {
      const { leaf, path } = await this.#find(block);
      // No await from here on: the path cannot be evicted while it is checked and marked.
      const last = path[path.length - 1]!;
      if (!this.#attached(last)) continue; // a page of the path was evicted during the descent
      if (!leaf && clears) return; // a hole made a hole: nothing changes
      let node = last;
      // Pages for the hole's levels below the last loaded page, made now that a block under them is written.
      while (path.length < this.#levels) {
        const slot = Math.floor(block / FANOUT ** (this.#levels - path.length)) % FANOUT;
        const made: Node = {
          entries: new Uint8Array(PAGE_BYTES),
          stacks: null,
          dirty: true,
          children: new Map(),
          parent: node,
          slot,
        };
        node.children.set(slot, made);
        path.push(made);
        node = made;
      }
      change(node, block % FANOUT);
      if (node.stacks?.size === 0) node.stacks = null;
      for (const n of path) {
        if (!n.dirty) this.#clean.delete(n);
        n.dirty = true;
      }
      return;
    }
  }

  /**
   * Runs of holes and data for `count` blocks from `first`, merged; whole hole subtrees
   * are skipped without loading anything (a map request over a sparse image is cheap).
   */
  async runs(first: number, count: number): Promise<BlockRun[]> {
    if (count === 0) return [];
    this.#checkBlock(first);
    this.#checkBlock(first + count - 1);
    const out: { blocks: number; hole: boolean }[] = [];
    const push = (blocks: number, hole: boolean) => {
      const last = out.at(-1);
      if (last && last.hole === hole) last.blocks += blocks;
      else out.push({ blocks, hole });
    };
    const end = first + count;
    const visit = async (node: Node, level: number, base: number): Promise<void> => {
      const span = FANOUT ** level;
      const from = Math.max(0, Math.floor((first - base) / span));
      const to = Math.min(FANOUT, Math.ceil((end - base) / span));
      for (let slot = from; slot < to; slot++) {
        const start = Math.max(first, base + slot * span);
        const stop = Math.min(end, base + (slot + 1) * span);
        const zero =
          !node.children.has(slot) &&
          isZeroEntry(node.entries, slot * HASH_BYTES) &&
          !(level === 0 && node.stacks?.has(slot)); // patches over a hole are data
        if (level === 0 || zero) push(stop - start, zero);
        else await visit(await this.#child(node, slot, level === 1), level - 1, base + slot * span);
      }
    };
    await visit(await this.#topNode(), this.#levels - 1, 0);
    return out;
  }

  /**
   * Blocks from `from` on that carry a patch stack, in order: at most `max` of them, from at
   * most `maxLeaves` leaf pages (loading those not in memory; hole subtrees load nothing).
   * `next` is the block to go on from, or null once the scan passed the map's last block.
   */
  async stackedBlocks(
    from: number,
    max: number,
    maxLeaves: number,
  ): Promise<{ blocks: number[]; next: number | null }> {
    this.#checkBlock(from);
    const blocks: number[] = [];
    let leaves = 0;
    let block = from;
    while (block < this.blocks) {
      if (blocks.length >= max || leaves >= maxLeaves) return { blocks, next: block };
      const leafStart = block - (block % FANOUT);
      const { leaf } = await this.#find(block);
      if (leaf) {
        leaves++;
        const slots = leaf.stacks ? [...leaf.stacks.keys()].sort((a, b) => a - b) : [];
        for (const slot of slots) {
          if (leafStart + slot < block) continue;
          if (blocks.length >= max) return { blocks, next: leafStart + slot };
          blocks.push(leafStart + slot);
        }
      }
      block = leafStart + FANOUT;
    }
    return { blocks, next: null };
  }

  /** Hashes every dirty page bottom-up and returns the new root and the pages to store. */
  async commit(): Promise<MapCommit> {
    const top = await this.#topNode();
    const pages: { hash: Hash; bytes: Uint8Array }[] = [];
    const walk = (node: Node): Hash | null => {
      if (!node.dirty) return null;
      for (const [slot, child] of node.children) {
        const h = walk(child);
        if (h !== null) node.entries.set(rawHash(h), slot * HASH_BYTES);
      }
      node.dirty = false;
      if (node !== top) this.#unstored.push(node);
      const bytes = encodeLeafPage(node.entries, node.stacks);
      if (bytes.byteLength === 0) return ZERO_HASH;
      const hash = toHex(hashBytes(bytes));
      pages.push({ hash, bytes });
      return hash;
    };
    const root = walk(top);
    if (root !== null) this.#root = root;
    return { root: this.#root, pages };
  }

  /**
   * The pages of the last {@link BlockMap.commit} are on the stores: they may now be
   * evicted (and loaded again by hash). Until then they stay in memory.
   */
  pagesStored(): void {
    for (const n of this.#unstored) if (!n.dirty && this.#attached(n)) this.#clean.set(n, n);
    this.#unstored = [];
  }
}

/**
 * The root of the same map with more levels (after an image grows): each added level is
 * a page whose first entry is the old root. Returns the new root and the pages to store.
 */
export function growRoot(root: Hash, fromLevels: number, toLevels: number): MapCommit {
  const pages: { hash: Hash; bytes: Uint8Array }[] = [];
  for (let l = fromLevels; l < toLevels && root !== ZERO_HASH; l++) {
    const bytes = rawHash(root).slice();
    root = toHex(hashBytes(bytes));
    pages.push({ hash: root, bytes });
  }
  return { root, pages };
}
