/**
 * One commit of an image's dirty blocks: hash them in the worker pool (small writes, kept
 * as patches, become patch chunks hashed here), put the chunks on their stores, update
 * the block map, put its changed pages, and advance the head (the
 * one head writer). The cluster record is read fresh while the blocks are hashed, before
 * the first put: a store that entered maintenance is not counted (the chunks are put again,
 * spilling past it, if the head says one did since), and a garbage collection barrier that
 * passed since makes the commit put its chunks again (gc-barrier.ts) before the head moves.
 */

import type { ChunkPut, Hash } from "../../chunkstore/chunk-store.ts";
import { hashChunk, toHex } from "../../chunkstore/hash.ts";
import { rememberHash } from "../../chunkstore/hashed-here.ts";
import { BufferPool } from "../../runtime/buffer-pool.ts";
import type { TaskPool } from "../../workers/task-pool.ts";
import { PutOutcome } from "../replication/store-set.ts";
import { type BlockMap, growRoot, levelsFor, ZERO_HASH } from "./block-map.ts";
import { BlockPatch } from "./block-patch.ts";
import { confirmContent } from "./gc-barrier.ts";
import { blockCount, type Head } from "./head.ts";
import { commitContent, GcBarrierError, NeedMoreCopiesError } from "./head-writer.ts";
import type { ImageContext } from "./image-context.ts";
import { encodePatchChunk } from "./patch-chunk.ts";
import type { Resolved } from "./write-cache.ts";

/** Blocks hashed per worker task: 16 x 64 KiB = 1 MiB, enough to amortize the hand-off. */
const HASH_TASK_BYTES = 1024 * 1024;

/** Times a commit re-puts its chunks because stores entered maintenance or a collection passed meanwhile. */
const MAX_REPUTS = 4;

/** What one commit needs from its image. */
export interface CommitInput {
  readonly head: Head;
  /** The committed version the batch applies to (the head's, unless an earlier attempt is in doubt). */
  readonly base: { readonly root: Hash; readonly size: number };
  readonly ownAttempts: ReadonlySet<string>;
  readonly commitId: string;
  readonly batch: ReadonlyMap<number, Resolved>;
  readonly map: BlockMap;
  readonly chunkSize: number;
  /** Live set of data stores that have not yet received everything (safe-to-remove reads it). */
  readonly pending: Set<string>;
}

/**
 * Commits `input.batch`; resolves with the new head and the data chunks it stored (whole
 * blocks and patch chunks, for the chunk cache). A block whose batch entry is a
 * {@link BlockPatch} gets the patch as a chunk on its patch stack; if the commit fails,
 * those stacks are put back as they were, so the map never names a patch chunk that no
 * head may reference (the patch goes back to the write cache and is committed again).
 */
export async function commitBatch(
  ctx: ImageContext,
  input: CommitInput,
): Promise<{ head: Head; stored: ChunkPut[] }> {
  const { head, batch, map } = input;
  // Read while hashing, awaited before the first put: the gc barrier must be read before it.
  const freshState = ctx.cluster.freshState();
  freshState.catch(() => {}); // awaited below; a failure there fails the commit
  const whole = new Map<number, Uint8Array | null>();
  for (const [index, content] of batch) if (!(content instanceof BlockPatch)) whole.set(index, content);
  const [hashes, patchChunks] = await Promise.all([
    hashBlocks(ctx.pool, whole, input.chunkSize),
    hashPatches(batch),
  ]);
  const chunks: ChunkPut[] = [...patchChunks.values()];
  for (const [index, content] of whole) {
    const hash = hashes.get(index)!;
    if (hash !== ZERO_HASH && content) chunks.push({ hash, bytes: content });
  }
  const state = await freshState;
  const leaving = ctx.cluster.leaving();
  const dataOutcome = await ctx.stores.putChunks(chunks, leaving, input.pending);
  const stacksBefore = new Map<number, readonly Hash[]>();
  try {
    for (const [index] of whole) await map.set(index, hashes.get(index)!);
    for (const [index, chunk] of patchChunks)
      stacksBefore.set(index, await map.appendPatch(index, chunk.hash));
    const { root, pages } = await map.commit();
    const pageOutcome = await ctx.stores.putChunks(pages, leaving, input.pending);
    map.pagesStored();
    const written = await advanceHead(ctx, {
      head,
      base: input.base,
      ownAttempts: input.ownAttempts,
      commitId: input.commitId,
      root,
      size: head.size,
      content: [...chunks, ...pages],
      put: PutOutcome.merge(dataOutcome, pageOutcome),
      state,
    });
    input.pending.clear();
    return { head: written, stored: chunks };
  } catch (err) {
    for (const [index, before] of stacksBefore) await map.setPatches(index, before);
    throw err;
  }
}

/** Each patch of the batch as a patch chunk, hashed here (they are small), the hash remembered. */
async function hashPatches(batch: ReadonlyMap<number, Resolved>): Promise<Map<number, ChunkPut>> {
  const out = new Map<number, ChunkPut>();
  let since = 0;
  for (const [index, content] of batch) {
    if (!(content instanceof BlockPatch)) continue;
    const bytes = encodePatchChunk(content);
    const hash = hashChunk(bytes);
    out.set(index, { hash, bytes: rememberHash(bytes, hash) });
    // About a millisecond of hashing at a time, then the event loop runs.
    since += bytes.byteLength;
    if (since >= HASH_TASK_BYTES) {
      since = 0;
      await yieldToEventLoop();
    }
  }
  return out;
}

/** What a resize needs from its image. */
export interface GrowthInput {
  readonly head: Head;
  readonly base: { readonly root: Hash; readonly size: number };
  readonly ownAttempts: ReadonlySet<string>;
  /** The new size in bytes (at least the base's). */
  readonly size: number;
  readonly chunkSize: number;
}

/**
 * Grows an image to `input.size`: the root moves down under new map levels (no data moves),
 * the new pages are put, and the head advances the way a commit's does.
 */
export async function commitGrowth(ctx: ImageContext, input: GrowthInput): Promise<Head> {
  const blocks = (bytes: number) => Math.max(1, blockCount({ size: bytes, chunkSize: input.chunkSize }));
  const grown = growRoot(input.base.root, levelsFor(blocks(input.base.size)), levelsFor(blocks(input.size)));
  // The gc barrier is read before the pages are put (gc-barrier.ts).
  const state = await ctx.cluster.freshState();
  const put = await ctx.stores.putChunks(grown.pages, ctx.cluster.leaving());
  return advanceHead(ctx, {
    head: input.head,
    base: input.base,
    ownAttempts: input.ownAttempts,
    commitId: crypto.randomUUID(),
    root: grown.root,
    size: input.size,
    content: grown.pages,
    put,
    state,
  });
}

/** A content change whose chunks are on the stores, ready to become the head. */
interface HeadAdvance {
  readonly head: Head;
  readonly base: { readonly root: Hash; readonly size: number };
  readonly ownAttempts: ReadonlySet<string>;
  readonly commitId: string;
  readonly root: Hash;
  readonly size: number;
  /** Every chunk the new version adds (put again when the head writer asks). */
  readonly content: readonly ChunkPut[];
  /** Where `content` was put. */
  readonly put: PutOutcome;
  /** The cluster state read before the first put (its gc barrier and stores leaving). */
  readonly state: { readonly gcEpoch: number; readonly leaving: ReadonlySet<string> };
}

/**
 * Writes the new head through the one head writer, putting the content again when it says
 * a garbage collection passed the barrier or a store entered maintenance meanwhile.
 */
async function advanceHead(ctx: ImageContext, change: HeadAdvance): Promise<Head> {
  const { head } = change;
  let { put, state } = change;
  let fresh: ReadonlySet<string> = state.leaving;
  for (let attempt = 0; ; attempt++) {
    try {
      const { head: written } = await ctx.heads.change(
        head.name,
        commitContent({
          name: head.name,
          incarnation: head.incarnation,
          epoch: head.epoch,
          owner: ctx.gatewayId,
          base: change.base,
          ownAttempts: change.ownAttempts,
          root: change.root,
          size: change.size,
          put,
          leaving: fresh,
          minReplicas: ctx.stores.options.minReplicas,
          gcEpoch: state.gcEpoch,
        }),
        change.commitId,
      );
      return written as Head;
    } catch (err) {
      if (attempt >= MAX_REPUTS) throw err;
      if (err instanceof GcBarrierError && err.pending) {
        // The head's own content is unconfirmed (its creator has not finished): confirm it
        // if no barrier passed since; this commit cannot put that content again itself.
        await confirmContent(ctx, head.name, head.incarnation);
      } else if (err instanceof GcBarrierError) {
        // A collection may have condemned chunks this commit found stored: put them again.
        state = await ctx.cluster.freshState();
        fresh = new Set([...fresh, ...state.leaving]);
        const again = await ctx.stores.putChunks(change.content, fresh);
        put = PutOutcome.merge(put, again);
      } else if (err instanceof NeedMoreCopiesError) {
        // A store entered maintenance while the chunks travelled: spill past it, then try again.
        fresh = err.leaving;
        const again = await ctx.stores.putChunks(change.content, err.leaving);
        put = PutOutcome.merge(put, again);
      } else throw err;
    }
  }
}

/** Hashes the batch's blocks in the worker pool; holes and all-zero blocks get ZERO_HASH. */
export async function hashBlocks(
  pool: TaskPool,
  batch: ReadonlyMap<number, Uint8Array | null>,
  chunkSize: number,
): Promise<Map<number, Hash>> {
  const out = new Map<number, Hash>();
  const perTask = Math.max(1, Math.floor(HASH_TASK_BYTES / chunkSize));
  const entries: [number, Uint8Array][] = [];
  for (const [i, c] of batch) {
    if (c) entries.push([i, c]);
    else out.set(i, ZERO_HASH);
  }
  const tasks: Promise<void>[] = [];
  for (let t = 0; t < entries.length; t += perTask) {
    // Let the event loop run between packs: packing a 32 MiB batch in one go held NBD
    // replies back for 50-150 ms (bench/at-rest.ts); one 1 MiB pack takes about a millisecond.
    if (t > 0) await yieldToEventLoop();
    const group = entries.slice(t, t + perTask);
    // Blocks are packed into one buffer (a copy: the originals stay readable) and moved to the worker.
    const packed = packBuffers.take(group.length * chunkSize);
    group.forEach(([, c], k) => {
      packed.set(c, k * chunkSize);
    });
    tasks.push(
      pool
        .run(
          "hashBlocks",
          { data: packed, blockSize: chunkSize, zeroIsHole: true },
          { transfer: [packed.buffer as ArrayBuffer] },
        )
        .then((r) => {
          group.forEach(([index, content], k) => {
            const hash = toHex(r.hashes.subarray(k * 32, k * 32 + 32));
            out.set(index, hash);
            // The packed copy is exactly this block (blocks are never modified in place), so
            // stores in this process need not hash it again (chunkstore/hashed-here.ts).
            if (content.byteLength === chunkSize) rememberHash(content, hash);
          });
          packBuffers.give(r.data);
        }),
    );
  }
  await Promise.all(tasks);
  return out;
}

/** Resolves after the I/O callbacks due now have run (a macrotask, not a microtask). */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Reused buffers for packing blocks to hash; they come back from the worker (moved both
 * ways). Enough for a whole commit at the default flush threshold (32 MiB) and a margin: a
 * fresh buffer costs a page fault per 4 KiB (runtime/buffer-pool.ts).
 */
const packBuffers = new BufferPool(48);
