/**
 * `backup restore`: a backup into a new image of any cluster. Walks the backup's tree
 * (pages from the repository), asks the cluster's stores which chunks they lack (batched
 * `has`), downloads only those, coalesced into ranged GETs of their packs, verifies each,
 * puts them on their placement stores, and only then writes the image's head through the
 * head writer: the image appears complete or not at all.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { levelsFor } from "../image/block-map.ts";
import { blockCount } from "../image/head.ts";
import type { BackupCluster } from "./backup-cluster.ts";
import { BlobReader } from "./blob-reader.ts";
import type { JobProgress } from "./job-progress.ts";
import type { Repository } from "./repository.ts";
import { BlobCorruptError } from "./repository.ts";
import type { BlobLocation } from "./repository-index.ts";
import { walkTree } from "./tree-walk.ts";

/** One ranged GET covers blobs at most this far apart, and at most this much. */
const RANGE_GAP_BYTES = 256 * 1024;
const RANGE_MAX_BYTES = 16 * 1024 * 1024;
/** Ranged GETs in flight, and chunks per put. */
const DOWNLOADS_IN_FLIGHT = 4;
const PUT_BATCH = 64;

/** What a restore did. */
export interface RestoreResult {
  readonly id: string;
  readonly image: string;
  readonly size: number;
  /** Chunks (pages and data) the backup references, and how many were downloaded. */
  readonly chunks: number;
  readonly downloadedChunks: number;
  readonly downloadedBytes: number;
  /** Chunks the cluster had already (not downloaded). */
  readonly presentChunks: number;
  readonly seconds: number;
}

/** Restores backup `id` as the new image `image`. */
export async function restoreBackup(
  deps: { cluster: BackupCluster; repo: Repository; progress: JobProgress },
  params: { id: string; image: string },
): Promise<RestoreResult> {
  const started = Date.now();
  const { repo, progress } = deps;
  progress.phase("reading manifest");
  const manifest = await repo.readManifest(params.id);
  const session = await deps.cluster.beginRestore(params.image);
  const index = await repo.loadIndex({ existingPacks: true });
  const reader = new BlobReader(repo, index);

  progress.phase("walking");
  const all: Hash[] = [];
  const seen = new Set<Hash>();
  const note = (h: Hash) => {
    if (!seen.has(h)) {
      seen.add(h);
      all.push(h);
    }
  };
  const bad: { hash: Hash; error: unknown }[] = [];
  await walkTree((h) => reader.read(h), manifest.root, levelsFor(Math.max(1, blockCount(manifest))), {
    page: note,
    data: note,
    unreadable: (hash, error) => bad.push({ hash, error }),
  });
  const first = bad[0];
  if (first)
    throw new BlobCorruptError(
      first.hash,
      `a map page of backup ${params.id} cannot be read (${(first.error as Error).message})`,
    );

  progress.phase("asking the stores");
  const lacking = await session.lacking(all);
  const located: { hash: Hash; at: BlobLocation }[] = [];
  for (const hash of lacking) {
    const at = index.locate(hash);
    if (!at) throw new BlobCorruptError(hash, `backup ${params.id} references it but no pack holds it`);
    located.push({ hash, at });
  }
  progress.total(located.reduce((a, l) => a + l.at.length, 0));

  progress.phase("downloading");
  const ranges = coalesce(located);
  let downloadedBytes = 0;
  let next = 0;
  const lane = async () => {
    while (next < ranges.length) {
      const r = ranges[next++]!;
      const bytes = await repo.readPack(r.pack, r.start, r.end);
      if (bytes === null || bytes.byteLength !== r.end - r.start)
        throw new BlobCorruptError(r.blobs[0]!.hash, `pack ${r.pack} is missing or short`);
      const chunks: { hash: Hash; bytes: Uint8Array }[] = [];
      for (const b of r.blobs) {
        const off = b.at.offset - r.start;
        chunks.push({
          hash: b.hash,
          bytes: await repo.openBlob(b.hash, bytes.subarray(off, off + b.at.length)),
        });
      }
      for (let i = 0; i < chunks.length; i += PUT_BATCH) await session.put(chunks.slice(i, i + PUT_BATCH));
      downloadedBytes += bytes.byteLength;
      progress.advance(bytes.byteLength);
    }
  };
  await Promise.all(Array.from({ length: DOWNLOADS_IN_FLIGHT }, lane));

  progress.phase("committing");
  await session.commit({ root: manifest.root, size: manifest.size, chunkSize: manifest.chunkSize });
  return {
    id: params.id,
    image: params.image,
    size: manifest.size,
    chunks: all.length,
    downloadedChunks: located.length,
    downloadedBytes,
    presentChunks: all.length - located.length,
    seconds: (Date.now() - started) / 1000,
  };
}

interface Range {
  pack: string;
  start: number;
  end: number;
  blobs: { hash: Hash; at: BlobLocation }[];
}

/** Groups blobs by pack and merges neighbours into ranges (a gap costs less than a request). */
function coalesce(located: readonly { hash: Hash; at: BlobLocation }[]): Range[] {
  const byPack = new Map<string, { hash: Hash; at: BlobLocation }[]>();
  for (const l of located) {
    const list = byPack.get(l.at.pack.name) ?? [];
    byPack.set(l.at.pack.name, list);
    list.push(l);
  }
  const out: Range[] = [];
  for (const [pack, list] of byPack) {
    list.sort((a, b) => a.at.offset - b.at.offset);
    let cur: Range | null = null;
    for (const l of list) {
      const end = l.at.offset + l.at.length;
      if (cur && l.at.offset - cur.end <= RANGE_GAP_BYTES && end - cur.start <= RANGE_MAX_BYTES) {
        cur.end = Math.max(cur.end, end);
        cur.blobs.push(l);
      } else {
        cur = { pack, start: l.at.offset, end, blobs: [l] };
        out.push(cur);
      }
    }
  }
  return out;
}
