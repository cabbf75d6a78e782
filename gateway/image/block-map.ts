/**
 * An image's block map as a Merkle tree of pages. Leaf pages hold the 32-byte hashes of
 * data chunks (all zeros = a hole); upper pages hold the hashes of the pages below. Pages
 * are chunks too, so one root hash names a whole image version, and two versions share
 * every page they have in common (snapshots, clones, heal diffs).
 *
 * Page format (frozen): the concatenation of up to FANOUT raw hashes with trailing
 * zero entries trimmed. A page whose entries are all zero is never stored: its hash is
 * the zero hash, like a hole.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { HASH_BYTES, hashBytes, toHex } from "../../chunkstore/hash.ts";

/** Entries per page: 256 x 32 bytes = 8 KiB pages; a leaf covers 16 MiB of 64 KiB chunks. */
export const FANOUT = 256;

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
  if (bytes.byteLength % HASH_BYTES !== 0 || bytes.byteLength > FANOUT * HASH_BYTES) {
    throw new RangeError(`Invalid block map page of ${bytes.byteLength} bytes`);
  }
  const page = new Uint8Array(FANOUT * HASH_BYTES);
  page.set(bytes);
  return page;
}

function isZeroEntry(page: Uint8Array, offset: number): boolean {
  for (let i = offset; i < offset + HASH_BYTES; i++) if (page[i] !== 0) return false;
  return true;
}

/** Raw 32 bytes of a hex hash. */
function rawHash(hash: Hash): Uint8Array {
  if (hash === ZERO_HASH) return ZERO_ENTRY;
  const out = new Uint8Array(HASH_BYTES);
  for (let i = 0; i < HASH_BYTES; i++) out[i] = Number.parseInt(hash.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Reads a page chunk by hash (from the image's stores). */
export type PageLoader = (hash: Hash) => Promise<Uint8Array>;

/** A page loaded in memory; `dirty` pages are rewritten by the next {@link BlockMap.commit}. */
interface Node {
  entries: Uint8Array;
  dirty: boolean;
  children: Map<number, Node>;
}

/** The pages a commit produced: the new root and the page chunks to store. */
export interface MapCommit {
  readonly root: Hash;
  readonly pages: { hash: Hash; bytes: Uint8Array }[];
}

/**
 * A mutable view of one image version's block map. Pages load lazily and stay in
 * memory while the map is open (8 KiB per 16 MiB of image at 64 KiB chunks).
 */
export class BlockMap {
  #root: Hash;
  #levels: number;
  #top: Promise<Node> | null = null;

  private readonly load: PageLoader;

  readonly blocks: number;

  constructor(load: PageLoader, root: Hash, blocks: number) {
    this.load = load;

    this.blocks = blocks;
    this.#root = root;
    this.#levels = levelsFor(blocks);
  }

  /** Hash of the last committed version. */
  get root(): Hash {
    return this.#root;
  }

  get levels(): number {
    return this.#levels;
  }

  async #node(hash: Hash): Promise<Node> {
    const entries =
      hash === ZERO_HASH ? new Uint8Array(FANOUT * HASH_BYTES) : decodePage(await this.load(hash));
    return { entries, dirty: false, children: new Map() };
  }

  #topNode(): Promise<Node> {
    this.#top ??= this.#node(this.#root);
    return this.#top;
  }

  /** Descends to the leaf holding `block`, loading pages on the way. */
  async #leaf(block: number): Promise<{ leaf: Node; slot: number; path: Node[] }> {
    if (!Number.isInteger(block) || block < 0 || block >= this.blocks) {
      throw new RangeError(`Block ${block} is outside the map (${this.blocks} blocks)`);
    }
    let node = await this.#topNode();
    const path = [node];
    for (let level = this.#levels - 1; level > 0; level--) {
      const slot = Math.floor(block / FANOUT ** level) % FANOUT;
      let child = node.children.get(slot);
      if (!child) {
        const hash = toHex(node.entries.subarray(slot * HASH_BYTES, (slot + 1) * HASH_BYTES));
        const loaded = node.children.get(slot) ?? (await this.#node(hash));
        // Another lookup may have loaded it meanwhile; keep the first so no update is lost.
        child = node.children.get(slot) ?? loaded;
        node.children.set(slot, child);
      }
      node = child;
      path.push(node);
    }
    return { leaf: node, slot: block % FANOUT, path };
  }

  /** Hash of the chunk at `block`, or {@link ZERO_HASH} for a hole. */
  async get(block: number): Promise<Hash> {
    const { leaf, slot } = await this.#leaf(block);
    const off = slot * HASH_BYTES;
    return isZeroEntry(leaf.entries, off) ? ZERO_HASH : toHex(leaf.entries.subarray(off, off + HASH_BYTES));
  }

  /** Points `block` at `hash` (ZERO_HASH makes it a hole). Visible at once; durable after commit. */
  async set(block: number, hash: Hash): Promise<void> {
    const { leaf, slot, path } = await this.#leaf(block);
    leaf.entries.set(rawHash(hash), slot * HASH_BYTES);
    for (const n of path) n.dirty = true;
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
      const bytes = encodePage(node.entries);
      if (bytes.byteLength === 0) return ZERO_HASH;
      const hash = toHex(hashBytes(bytes));
      pages.push({ hash, bytes });
      return hash;
    };
    const root = walk(top);
    if (root !== null) this.#root = root;
    return { root: this.#root, pages };
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
