/**
 * The commit side of garbage collection's barrier (the collector is gateway/gc/). A chunk
 * put that found the chunk already stored revives it if a collector had condemned it; but
 * a put that came BEFORE the condemn does not. So every content change reads the cluster's
 * gcEpoch before its first put, and the head writer refuses it (GcBarrierError) when the
 * head was stamped with a later barrier: the change puts its chunks again and retries.
 *
 * A head created with content (a clone, an import into a new name) may have been created
 * after a collector listed the heads, and so never stamped: it starts unconfirmed, and its
 * creator confirms it here by reading the barrier again once the head exists.
 */
import { levelsFor, ZERO_HASH } from "./block-map.ts";
import { blockCount } from "./head.ts";
import { confirmHead, GcBarrierError, revivedHead } from "./head-writer.ts";
import type { ImageContext } from "./image-context.ts";
import { changedChunks } from "./tree-diff.ts";

/** Times content is put again because collections keep passing the barrier. */
export const MAX_REVIVALS = 3;

/**
 * Confirms the unconfirmed head of `name` (a no-op for a confirmed one). If a barrier passed
 * since its content was put, `reput` puts it all again and the confirmation is retried;
 * without `reput`, the GcBarrierError is thrown.
 */
export async function confirmContent(
  ctx: Pick<ImageContext, "cluster" | "heads">,
  name: string,
  incarnation: string,
  reput?: () => Promise<void>,
): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const { gcEpoch } = await ctx.cluster.freshState();
    try {
      await ctx.heads.change(name, confirmHead(name, incarnation, gcEpoch));
      return;
    } catch (err) {
      if (!(err instanceof GcBarrierError) || !reput || attempt >= MAX_REVIVALS) throw err;
      await reput();
      // The barrier read before the re-put started is what the content now counts from.
      await ctx.heads.change(name, revivedHead(name, incarnation, gcEpoch));
    }
  }
}

/** Chunks read and put again per batch by {@link reviveTree}. */
const REVIVE_BATCH = 64;

/**
 * Puts every chunk of a version (map pages and data) again, reading each from the stores:
 * what a clone whose creation raced a collection does to keep its source's content. Throws
 * if a chunk is gone already (the clone then fails; it never claims content it lacks).
 */
export async function reviveTree(
  ctx: Pick<ImageContext, "stores" | "cluster">,
  version: { root: string; size: number; chunkSize: number },
): Promise<void> {
  const levels = levelsFor(Math.max(1, blockCount(version)));
  let batch: string[] = [];
  const flush = async () => {
    const chunks = await Promise.all(
      batch.map(async (hash) => ({ hash, bytes: await ctx.stores.getChunk(hash) })),
    );
    batch = [];
    await ctx.stores.putChunks(chunks, ctx.cluster.leaving());
  };
  for await (const c of changedChunks((h) => ctx.stores.getChunk(h), ZERO_HASH, version.root, levels)) {
    batch.push(c.hash);
    if (batch.length >= REVIVE_BATCH) await flush();
  }
  if (batch.length) await flush();
}
