/**
 * Which chunks a newer version of an image references that an older one does not:
 * walks two block-map trees side by side and descends only into pages whose hashes
 * differ, so the work follows what changed, not the image size.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { HASH_BYTES, toHex } from "../../chunkstore/hash.ts";
import { decodeLeafPage, decodePage, FANOUT, PAGE_BYTES, type PatchStacks, ZERO_HASH } from "./block-map.ts";

/** Reads a page chunk. */
export type PageReader = (hash: Hash) => Promise<Uint8Array>;

/**
 * Yields every chunk hash (map pages, data chunks and the patch chunks of leaves' patch
 * stacks) reachable from `newRoot` but not at the same place under `oldRoot`, for trees
 * of `levels` levels. Holes are skipped.
 * `oldRoot` = ZERO_HASH walks the whole new tree (a store replaced by an empty one).
 * Pages in `skip` are neither yielded nor descended into (their subtrees were seen already).
 */
export async function* changedChunks(
  pages: PageReader,
  oldRoot: Hash,
  newRoot: Hash,
  levels: number,
  skip?: ReadonlySet<Hash>,
): AsyncGenerator<ChangedChunk> {
  yield* walk(pages, oldRoot, newRoot, levels, skip);
}

/** One chunk found by {@link changedChunks}: a map page or a data chunk (`patch`: a patch chunk of a stack). */
export interface ChangedChunk {
  readonly hash: Hash;
  readonly page: boolean;
  readonly patch?: boolean;
}

/**
 * The bytes a chunk the diff found is expected to hold, for progress, rates and ETAs (its
 * real size is known once it is read): a page's full size, a block's chunk size, and for a
 * patch chunk a sixteenth of the block (a 4 KiB write at 64 KiB; patches hold at most a quarter).
 */
export function expectedBytes(c: ChangedChunk, chunkSize: number): number {
  return c.page ? PAGE_BYTES : c.patch ? Math.max(512, chunkSize / 16) : chunkSize;
}

async function* walk(
  pages: PageReader,
  oldHash: Hash,
  newHash: Hash,
  level: number,
  skip: ReadonlySet<Hash> | undefined,
): AsyncGenerator<ChangedChunk> {
  if (newHash === oldHash || newHash === ZERO_HASH || skip?.has(newHash)) return;
  yield { hash: newHash, page: true };
  // Leaves may carry patch stacks (block-map.ts); upper pages never do (decodePage refuses them).
  const decode = (b: Uint8Array): { entries: Uint8Array; stacks: PatchStacks | null } =>
    level > 1 ? { entries: decodePage(b), stacks: null } : decodeLeafPage(b);
  const [oldPage, newPage] = await Promise.all([
    // An old page no replica has any more only costs work: walk that subtree in full.
    oldHash === ZERO_HASH ? null : pages(oldHash).then(decode, () => null),
    pages(newHash).then(decode),
  ]);
  for (let slot = 0; slot < FANOUT; slot++) {
    const off = slot * HASH_BYTES;
    const n = toHex(newPage.entries.subarray(off, off + HASH_BYTES));
    const o = oldPage ? toHex(oldPage.entries.subarray(off, off + HASH_BYTES)) : ZERO_HASH;
    if (n === o || n === ZERO_HASH) continue;
    if (level > 1) yield* walk(pages, o, n, level - 1, skip);
    else yield { hash: n, page: false };
  }
  // A patch chunk is data the version references, as its block's chunk is.
  for (const [slot, stack] of newPage.stacks ?? []) {
    const before = oldPage?.stacks?.get(slot);
    for (const h of stack) if (!before?.includes(h)) yield { hash: h, page: false, patch: true };
  }
}
