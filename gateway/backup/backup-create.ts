/**
 * `backup create`: one version of an image into a repository, sending only what the
 * repository lacks. Under a shared lock (a prune waits for it):
 *
 * 1. the version: the snapshot named, or one taken now (`backup-ID`, removed at the end
 *    unless kept), pinned against garbage collection while it is read;
 * 2. the plan: the tree diff against the image's previous backup in this repository
 *    (`image/tree-diff.ts`: unchanged subtrees are never walked; the old tree's pages come
 *    from the repository), minus every chunk the repository index already has;
 * 3. the upload: chunks read from the stores in batches, packed (`pack-writer.ts`) with
 *    index objects written as packs land (a rerun after a kill skips those packs);
 * 4. the manifest, written once, only while the lock is certainly held.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { levelsFor, ZERO_HASH } from "../image/block-map.ts";
import { blockCount } from "../image/head.ts";
import { type ChangedChunk, changedChunks, expectedBytes } from "../image/tree-diff.ts";
import type { BackupCluster, BackupVersion, VersionPins } from "./backup-cluster.ts";
import { type Manifest, newBackupId } from "./backup-manifest.ts";
import { BlobReader } from "./blob-reader.ts";
import type { JobProgress } from "./job-progress.ts";
import { PackWriter } from "./pack-writer.ts";
import type { Repository } from "./repository.ts";
import { PACK_KIND } from "./repository-format.ts";
import { type LockOptions, RepositoryLock } from "./repository-lock.ts";

/** Chunks read from the stores per batch, and batches in flight. */
const READ_BATCH = 64;
const READ_LANES = 4;

/** What to back up. */
export interface CreateParams {
  readonly image: string;
  /** An existing snapshot to back up; without it one is taken. */
  readonly snapshot?: string;
  /** Keep the snapshot taken for the backup (default: remove it afterwards). */
  readonly keepSnapshot?: boolean;
  /** The backup id (default: a new one). */
  readonly id?: string;
}

/** What a backup did (`backup create --json`). */
export interface CreateResult {
  readonly id: string;
  readonly image: string;
  readonly snapshot: string;
  readonly snapshotKept: boolean;
  readonly parent: string | null;
  readonly totalBytes: number;
  readonly uploadedBytes: number;
  readonly skippedBytes: number;
  readonly uploadedChunks: number;
  readonly packs: number;
  readonly seconds: number;
}

/** What a backup uses. */
export interface CreateDeps {
  readonly cluster: BackupCluster;
  readonly repo: Repository;
  readonly pins: VersionPins;
  readonly progress: JobProgress;
  readonly lock?: Partial<LockOptions>;
}

/** Backs up one version; see the module comment. */
export async function createBackup(deps: CreateDeps, params: CreateParams): Promise<CreateResult> {
  const started = Date.now();
  const { cluster, repo, progress } = deps;
  const id = params.id ?? newBackupId(new Date(started));
  progress.phase("locking");
  const lock = await RepositoryLock.shared(repo.store, {
    operation: "backup create",
    gateway: cluster.gatewayId,
    waitMs: 10 * 60_000,
    onWait: (why) => progress.phase(`waiting: ${why}`),
    ...deps.lock,
  });
  let taken: string | null = null;
  let unpin = async () => {};
  try {
    progress.phase("snapshot");
    let version: BackupVersion;
    if (params.snapshot !== undefined) {
      version = await cluster.snapshotVersion(params.image, params.snapshot);
    } else {
      taken = `backup-${id}`;
      version = await cluster.takeSnapshot(params.image, taken);
    }
    unpin = await deps.pins.pin(version);

    progress.phase("planning");
    const index = await repo.loadIndex({ existingPacks: true });
    const reader = new BlobReader(repo, index);
    const levels = levelsFor(Math.max(1, blockCount(version)));
    const parent = previousBackup(await repo.listManifests(), version, levels, reader);
    // Pages from the repository where it has them (the old version may be gone from the
    // cluster), else from the stores, asked first: a page the cluster never had (an old
    // one) must not be reported there as a missing copy.
    const pages = async (h: Hash): Promise<Uint8Array> => {
      if (reader.has(h)) {
        const bytes = await reader.read(h).catch(() => null);
        if (bytes) return bytes;
      }
      if (await cluster.holds(h)) return (await cluster.readChunks([h]))[0]!;
      throw new RangeError(`Map page ${h} is neither in the repository nor in the cluster`);
    };
    const toSend: ChangedChunk[] = [];
    const planned = new Set<Hash>();
    let added = 0;
    for await (const c of changedChunks(pages, parent?.root ?? ZERO_HASH, version.root, levels)) {
      if (!c.page && !c.patch) added++; // blocks with a chunk (a patch chunk is not a block)
      if (planned.has(c.hash) || index.has(c.hash)) continue;
      planned.add(c.hash);
      toSend.push(c);
    }
    let removed = 0;
    if (parent)
      for await (const c of changedChunks(pages, version.root, parent.root, levels))
        if (!c.page && !c.patch) removed++;
    const dataBlocks = (parent?.dataBlocks ?? 0) + added - removed;
    const totalBytes = Math.min(dataBlocks * version.chunkSize, version.size);
    progress.total(toSend.reduce((a, c) => a + expectedBytes(c, version.chunkSize), 0));

    progress.phase("uploading");
    let sentData = 0;
    const writer = new PackWriter(repo, index, { onPack: (p) => progress.advance(p.plainBytes) });
    let next = 0;
    try {
      const lane = async () => {
        while (next < toSend.length) {
          const batch = toSend.slice(next, next + READ_BATCH);
          next += batch.length;
          const bytes = await cluster.readChunks(batch.map((c) => c.hash));
          for (const [k, c] of batch.entries()) {
            const b = bytes[k]!;
            if (!c.page) sentData += b.byteLength;
            await writer.add(c.page ? PACK_KIND.tree : PACK_KIND.data, c.hash, b);
          }
        }
      };
      await Promise.all(Array.from({ length: READ_LANES }, lane));
      await writer.finish();
    } catch (err) {
      await writer.settle();
      throw err;
    }

    progress.phase("manifest");
    lock.assertValid();
    const skippedBytes = Math.max(0, totalBytes - sentData);
    const manifest: Manifest = {
      format: 1,
      id,
      image: version.image,
      snapshot: version.snapshot,
      snapshotTaken: taken !== null,
      startedAt: new Date(started).toISOString(),
      createdAt: new Date().toISOString(),
      size: version.size,
      chunkSize: version.chunkSize,
      root: version.root,
      parent: parent?.id ?? null,
      dataBlocks,
      totalBytes,
      uploadedBytes: writer.uploadedBytes,
      skippedBytes,
      gateway: cluster.gatewayId,
    };
    const manifestBytes = await repo.writeManifest(manifest);
    return {
      id,
      image: version.image,
      snapshot: version.snapshot,
      snapshotKept: taken === null || params.keepSnapshot === true,
      parent: parent?.id ?? null,
      totalBytes,
      uploadedBytes: writer.uploadedBytes + manifestBytes,
      skippedBytes,
      uploadedChunks: toSend.length,
      packs: writer.packs,
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await unpin().catch(() => {});
    if (taken !== null && params.keepSnapshot !== true)
      await cluster.removeSnapshot(params.image, taken).catch(() => {});
    await lock.release();
  }
}

/** The latest backup of the same image and geometry whose tree the repository holds. */
function previousBackup(
  manifests: readonly Manifest[],
  version: BackupVersion,
  levels: number,
  reader: BlobReader,
): Manifest | null {
  for (const m of [...manifests].reverse()) {
    if (m.image !== version.image || m.chunkSize !== version.chunkSize) continue;
    if (levelsFor(Math.max(1, blockCount(m))) !== levels) continue;
    if (m.root !== ZERO_HASH && !reader.has(m.root)) continue;
    return m;
  }
  return null;
}
