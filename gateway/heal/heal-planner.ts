/**
 * What a store lacks of an image: walk, side by side, the tree of the version it holds
 * for certain and each root the head names that it may not hold (the current root and
 * every snapshot taken since), descending only where pages differ; keep the chunks placed
 * on the store; ask it in batches which it lacks. A store that holds nothing for certain
 * (new, replaced, or with damage beyond the list) gets a full walk: the cost follows what
 * changed, never the image size, unless nothing is known.
 */
import { LRUCache } from "lru-cache";
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { growRoot, levelsFor, ZERO_HASH } from "../image/block-map.ts";
import { blockCount, type Head, type SyncedVersion, snapshotsNotHeld } from "../image/head.ts";
import { changedChunks, expectedBytes } from "../image/tree-diff.ts";
import type { PlacementView, StoreSet } from "../replication/store-set.ts";
import type { CopyItem } from "./copy-engine.ts";

/** Hashes per `has` request. */
const HAS_BATCH = 512;
/** Chunks remembered as checked within one plan (snapshots share most of their chunks): bounds memory. */
const SEEN_LIMIT = 1_000_000;

/** The chunks of `head` placed on `store` (under `view`) that it lacks, given the version it holds for certain. */
export async function missingChunks(
  stores: StoreSet,
  store: string,
  head: Head,
  held: SyncedVersion | null,
  view: PlacementView = stores.view,
): Promise<CopyItem[]> {
  const target = stores.member(store)?.store;
  if (!target) throw new RangeError(`No store "${store}"`);
  const levels = (bytes: number) =>
    levelsFor(Math.max(1, blockCount({ size: bytes, chunkSize: head.chunkSize })));
  const seen = new LRUCache<Hash, true>({ max: SEEN_LIMIT });
  const out: CopyItem[] = [];
  let batch: CopyItem[] = [];
  const check = async () => {
    const present = await target.has(batch.map((b) => b.hash));
    batch.forEach((b, i) => {
      if (!present[i]) out.push(b);
    });
    batch = [];
  };
  // Pages come from any replica, the store itself included (it holds the old version).
  const pages = (h: Hash) => stores.getChunk(h);
  const walks: { root: Hash; size: number }[] = [
    { root: head.root, size: head.size },
    ...snapshotsNotHeld(head, held).map(([, s]) => ({ root: s.root, size: s.size })),
  ];
  for (const walk of walks) {
    const to = levels(walk.size);
    // The held version as a base, grown to the walk's height; a taller base cannot be cut down: full walk.
    const from = held ? levels(held.size) : to;
    const base = held && from <= to ? growRoot(held.root, from, to).root : ZERO_HASH;
    for await (const c of changedChunks(pages, base, walk.root, to)) {
      if (seen.has(c.hash)) continue;
      seen.set(c.hash, true);
      if (!view.placement(c.hash).includes(store)) continue;
      batch.push({ hash: c.hash, estimate: expectedBytes(c, head.chunkSize) });
      if (batch.length >= HAS_BATCH) await check();
    }
  }
  if (batch.length > 0) await check();
  return out;
}
