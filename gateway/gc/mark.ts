/**
 * The mark of garbage collection: every chunk some version still needs. Versions are each
 * live image's current root, its snapshots and the versions stores are recorded in sync at
 * (`versionsOf`), and every gateway's pinned versions, read after the heads (a reader pins
 * before its version leaves its head). The heal asks it too, for a chunk recorded damaged
 * with no good copy anywhere: referenced by nothing, it is garbage, not a loss.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { levelsFor, ZERO_HASH } from "../image/block-map.ts";
import { blockCount, type Head, liveHead } from "../image/head.ts";
import type { HeadWriter } from "../image/head-writer.ts";
import { changedChunks } from "../image/tree-diff.ts";
import type { Register } from "../register/register.ts";
import type { StoreSet } from "../replication/store-set.ts";
import { livePins } from "./pins.ts";

/** The versions of an image garbage collection keeps. */
export function versionsOf(head: Head): { root: Hash; size: number }[] {
  const out = [{ root: head.root, size: head.size }];
  for (const s of Object.values(head.snapshots)) out.push({ root: s.root, size: s.size });
  for (const s of Object.values(head.synced)) out.push({ root: s.root, size: s.size });
  return out;
}

/** What {@link referencedChunks} reads. */
export interface MarkSources {
  readonly heads: Pick<HeadWriter, "scan">;
  readonly register: Register;
  readonly stores: Pick<StoreSet, "getChunk">;
}

/** Every chunk (map pages and data) a live version or a pin references. */
export async function referencedChunks(d: MarkSources): Promise<Set<Hash>> {
  return (await markChunks(d)).referenced;
}

/**
 * The mark, in two sets: `named`, the chunks of what the heads name (every live image's
 * current root and snapshots: what a heal walks, and so what "current" vouches for), and
 * `referenced`, those plus the versions stores are recorded in sync at and the pins.
 */
export async function markChunks(d: MarkSources): Promise<{ named: Set<Hash>; referenced: Set<Hash> }> {
  const named = new Set<Hash>();
  const heads = await d.heads.scan();
  const pins = await livePins(d.register);
  const live = [...heads.values()].map(liveHead).filter((h) => h !== null);
  for (const head of live) {
    await walk(d, { root: head.root, size: head.size }, head.chunkSize, named);
    for (const s of Object.values(head.snapshots)) await walk(d, s, head.chunkSize, named);
  }
  const referenced = new Set(named);
  for (const head of live)
    for (const s of Object.values(head.synced)) await walk(d, s, head.chunkSize, referenced);
  for (const p of pins) await walk(d, p, p.chunkSize, referenced);
  return { named, referenced };
}

async function walk(
  d: MarkSources,
  v: { root: Hash; size: number },
  chunkSize: number,
  out: Set<Hash>,
): Promise<void> {
  if (v.root === ZERO_HASH || out.has(v.root)) return;
  const levels = levelsFor(Math.max(1, blockCount({ size: v.size, chunkSize })));
  // Pages already marked are skipped with their subtrees: the walk of a version shares
  // the work of every version it has pages in common with.
  const pages = (h: Hash) => d.stores.getChunk(h);
  for await (const c of changedChunks(pages, ZERO_HASH, v.root, levels, out)) out.add(c.hash);
}
