/**
 * `backup prune`: forgets backups by a keep policy and deletes what no remaining backup
 * references, under the exclusive lock (it waits for running backups, and they for it).
 * The order makes every crash point safe:
 *
 * 1. delete the manifests not kept;
 * 2. the live set: every chunk the remaining backups reference (a page that cannot be
 *    read stops the prune: nothing is deleted on a guess);
 * 3. repack: the live chunks of packs below `repackBelow` live bytes go into new packs
 *    (verified on the way), indexed as they land;
 * 4. one new index object of every surviving pack (live blobs only), then the old index
 *    objects are deleted: a crash before leaves duplicates, which are harmless;
 * 5. the dead, repacked and orphaned packs (from killed backups) are deleted, and expired
 *    shared locks with them.
 * The lock is checked before each of these steps.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { levelsFor } from "../image/block-map.ts";
import { blockCount } from "../image/head.ts";
import type { Manifest } from "./backup-manifest.ts";
import { BlobReader } from "./blob-reader.ts";
import type { JobProgress } from "./job-progress.ts";
import { PackWriter } from "./pack-writer.ts";
import { BlobCorruptError, type Repository } from "./repository.ts";
import { KEYS } from "./repository-format.ts";
import { type PackRecord, RepositoryIndex } from "./repository-index.ts";
import { CLOCK_SKEW_MS, type LockOptions, RepositoryLock } from "./repository-lock.ts";
import { walkTree } from "./tree-walk.ts";

/** Default: packs with less than half their bytes live are repacked. */
export const DEFAULT_REPACK_BELOW = 0.5;

/** The keep policy (per image). */
export interface PruneParams {
  /** Keep the last N backups of each image. */
  readonly keepLast?: number;
  /** Keep the last backup of each of the last N days (UTC) with backups, per image. */
  readonly keepDaily?: number;
  /** Repack packs whose live fraction is below this (0..1). */
  readonly repackBelow?: number;
}

/** What a prune did. */
export interface PruneResult {
  readonly kept: readonly string[];
  readonly removed: readonly string[];
  readonly liveChunks: number;
  readonly deletedPacks: number;
  readonly repackedPacks: number;
  readonly newPacks: number;
  readonly remainingPacks: number;
  readonly freedBytes: number;
  readonly seconds: number;
}

/** Which backups a policy keeps: per image, the union of keep-last and keep-daily. */
export function backupsToKeep(manifests: readonly Manifest[], p: PruneParams): Set<string> {
  const keep = new Set<string>();
  const byImage = new Map<string, Manifest[]>();
  for (const m of manifests) {
    const list = byImage.get(m.image) ?? [];
    byImage.set(m.image, list);
    list.push(m);
  }
  for (const list of byImage.values()) {
    const newest = [...list].sort(
      (a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id),
    );
    for (const m of newest.slice(0, p.keepLast ?? 0)) keep.add(m.id);
    const days = new Set<string>();
    for (const m of newest) {
      const day = m.createdAt.slice(0, 10);
      if (days.has(day)) continue;
      if (days.size >= (p.keepDaily ?? 0)) break;
      days.add(day);
      keep.add(m.id);
    }
  }
  return keep;
}

/** Prunes the repository; see the module comment. */
export async function pruneRepository(
  deps: { repo: Repository; progress: JobProgress; gateway: string; lock?: Partial<LockOptions> },
  params: PruneParams,
): Promise<PruneResult> {
  const started = Date.now();
  const { repo, progress } = deps;
  const repackBelow = params.repackBelow ?? DEFAULT_REPACK_BELOW;
  if (!(repackBelow >= 0 && repackBelow <= 1))
    throw new RangeError(`repackBelow ${repackBelow} is not between 0 and 1`);
  if ((params.keepLast ?? 0) < 1 && (params.keepDaily ?? 0) < 1)
    throw new RangeError(
      "A prune needs --keep-last N or --keep-daily N (at least 1): it never deletes every backup",
    );
  progress.phase("locking");
  const lock = await RepositoryLock.exclusive(repo.store, {
    operation: "backup prune",
    gateway: deps.gateway,
    waitMs: 10 * 60_000,
    onWait: (why) => progress.phase(`waiting: ${why}`),
    ...deps.lock,
  });
  try {
    const manifests = await repo.listManifests();
    const keep = backupsToKeep(manifests, params);
    const removed = manifests.filter((m) => !keep.has(m.id));
    const kept = manifests.filter((m) => keep.has(m.id));

    progress.phase("forgetting backups");
    for (const m of removed) {
      lock.assertValid();
      await repo.deleteManifest(m.id);
    }

    progress.phase("finding live chunks");
    // Packs gone from the bucket are dropped from the index (what only they held is lost;
    // verify reports it).
    const index = await repo.loadIndex({ existingPacks: true });
    const reader = new BlobReader(repo, index);
    const live = new Set<Hash>();
    for (const m of kept) {
      const bad: Hash[] = [];
      await walkTree((h) => reader.read(h), m.root, levelsFor(Math.max(1, blockCount(m))), {
        page: (h) => live.add(h),
        data: (h) => live.add(h),
        unreadable: (h) => bad.push(h),
      });
      if (bad[0])
        throw new BlobCorruptError(
          bad[0],
          `backup ${m.id} has a map page that cannot be read, so what it references is unknown: prune stopped before deleting any pack (run backup verify ${m.id})`,
        );
    }

    // Per pack: the live bytes of the blobs the index locates there (a duplicate elsewhere is dead here).
    const liveBlobs = new Map<string, PackRecord["blobs"][number][]>();
    for (const pack of index.packs.values()) {
      liveBlobs.set(
        pack.name,
        pack.blobs.filter(([h]) => live.has(h) && index.locate(h)?.pack === pack),
      );
    }
    const dead: PackRecord[] = [];
    const repack: PackRecord[] = [];
    const survivors: PackRecord[] = [];
    for (const pack of index.packs.values()) {
      const blobs = liveBlobs.get(pack.name)!;
      const liveBytes = blobs.reduce((a, [, , len]) => a + len, 0);
      if (blobs.length === 0) dead.push(pack);
      else if (liveBytes / pack.bytes < repackBelow) repack.push(pack);
      else survivors.push({ ...pack, blobs });
    }

    progress.phase("repacking");
    progress.total(repack.reduce((a, p) => a + p.bytes, 0));
    lock.assertValid();
    const fresh = new RepositoryIndex();
    const writer = new PackWriter(repo, fresh);
    try {
      for (const pack of repack) {
        const whole = await repo.readPack(pack.name);
        if (whole === null) throw new BlobCorruptError(pack.blobs[0]![0], `pack ${pack.name} is gone`);
        for (const [hash, offset, length] of liveBlobs.get(pack.name)!) {
          const bytes = await repo.openBlob(hash, whole.subarray(offset, offset + length));
          await writer.add(pack.kind, hash, bytes);
        }
        progress.advance(pack.bytes);
      }
      await writer.finish();
    } catch (err) {
      await writer.settle();
      throw err;
    }

    progress.phase("writing the index");
    lock.assertValid();
    const all = [...survivors, ...fresh.packs.values()];
    const { key: newIndex } = await repo.writeIndex(all);
    const keepIndex = new Set([newIndex]);
    for await (const o of repo.store.list(KEYS.index)) {
      if (keepIndex.has(o.key)) continue;
      lock.assertValid();
      await repo.store.delete(o.key);
    }

    progress.phase("deleting packs");
    const remaining = new Set(all.map((p) => p.name));
    let deleted = 0;
    let freed = 0;
    for await (const o of repo.store.list(KEYS.packs)) {
      const name = o.key.slice(o.key.lastIndexOf("/") + 1);
      if (remaining.has(name)) continue;
      lock.assertValid();
      await repo.store.delete(o.key);
      deleted++;
      freed += o.size;
    }
    // Expired shared locks of killed backups.
    for await (const o of repo.store.list(KEYS.sharedLockPrefix)) {
      const raw = await repo.store.get(o.key);
      const expiresAt = raw
        ? Date.parse((JSON.parse(new TextDecoder().decode(raw)) as { expiresAt: string }).expiresAt)
        : 0;
      if (!(Date.now() <= expiresAt + CLOCK_SKEW_MS)) await repo.store.delete(o.key);
    }
    return {
      kept: kept.map((m) => m.id),
      removed: removed.map((m) => m.id),
      liveChunks: live.size,
      deletedPacks: deleted,
      repackedPacks: repack.length,
      newPacks: fresh.packs.size,
      remainingPacks: all.length,
      freedBytes: freed,
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await lock.release();
  }
}
