/**
 * Every chunk a version references: walks a block-map tree from its root (pages, then the
 * data chunks and patch chunks their leaves name), reading each page once. Unlike `image/tree-diff.ts` it
 * goes on past a page it cannot read, reporting it, so verify can count damage and prune
 * can refuse to guess.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { HASH_BYTES, toHex } from "../../chunkstore/hash.ts";
import { decodeLeafPage, decodePage, FANOUT, ZERO_HASH } from "../image/block-map.ts";

/** What the walk meets. */
export interface TreeVisitor {
  /** A page was read (its bytes are the verified page). */
  page?(hash: Hash): void;
  /** A data chunk the version references (once per position; holes left out). */
  data(hash: Hash): void;
  /** A page could not be read: its subtree is unknown. */
  unreadable?(hash: Hash, error: unknown): void;
}

/** Walks the tree of `levels` levels under `root`; each distinct page is read once. */
export async function walkTree(
  readPage: (hash: Hash) => Promise<Uint8Array>,
  root: Hash,
  levels: number,
  visit: TreeVisitor,
): Promise<void> {
  const seen = new Set<Hash>();
  const walk = async (hash: Hash, level: number): Promise<void> => {
    if (hash === ZERO_HASH || seen.has(hash)) return;
    seen.add(hash);
    let page: Uint8Array;
    let stacks: ReadonlyMap<number, readonly Hash[]> = new Map();
    try {
      const bytes = await readPage(hash);
      // Leaves may carry patch stacks (block-map.ts); upper pages never do (decodePage refuses them).
      if (level > 1) page = decodePage(bytes);
      else ({ entries: page, stacks } = decodeLeafPage(bytes));
    } catch (err) {
      visit.unreadable?.(hash, err);
      return;
    }
    visit.page?.(hash);
    const children: Hash[] = [];
    for (let slot = 0; slot < FANOUT; slot++) {
      const h = toHex(page.subarray(slot * HASH_BYTES, (slot + 1) * HASH_BYTES));
      if (h === ZERO_HASH) continue;
      if (level > 1) children.push(h);
      else visit.data(h);
    }
    for (const stack of stacks.values()) for (const h of stack) visit.data(h);
    // A level's pages are read 8 at a time: a tree pack serves them from one GET.
    for (let i = 0; i < children.length; i += 8)
      await Promise.all(children.slice(i, i + 8).map((c) => walk(c, level - 1)));
  };
  await walk(root, levels);
}
