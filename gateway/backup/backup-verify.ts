/**
 * `backup verify`: every chunk a backup references is in the repository and hashes right.
 * Walks the backup's tree (each page checked as it is read), then reads each pack that
 * holds any of its chunks once, whole, and opens and hashes every blob it needs.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { levelsFor } from "../image/block-map.ts";
import { blockCount } from "../image/head.ts";
import { BlobReader } from "./blob-reader.ts";
import type { JobProgress } from "./job-progress.ts";
import type { Repository } from "./repository.ts";
import type { BlobLocation } from "./repository-index.ts";
import { walkTree } from "./tree-walk.ts";

/** Packs read at once. */
const PACKS_IN_FLIGHT = 3;

/** What verify found. `ok` only if every chunk is there and right. */
export interface VerifyResult {
  readonly id: string;
  readonly ok: boolean;
  /** Distinct chunks (map pages and data) the backup references that could be reached. */
  readonly chunks: number;
  readonly verifiedChunks: number;
  readonly missingChunks: number;
  readonly corruptChunks: number;
  /** Map pages that could not be read (their subtrees are unchecked and count as missing). */
  readonly unreadablePages: number;
  readonly missingPacks: readonly string[];
  readonly damagedPacks: readonly string[];
  readonly bytes: number;
  readonly seconds: number;
}

/** Verifies backup `id`. */
export async function verifyBackup(
  deps: { repo: Repository; progress: JobProgress },
  params: { id: string },
): Promise<VerifyResult> {
  const started = Date.now();
  const { repo, progress } = deps;
  progress.phase("reading manifest");
  const manifest = await repo.readManifest(params.id);
  const index = await repo.loadIndex();
  const reader = new BlobReader(repo, index);

  progress.phase("walking");
  const data = new Set<Hash>();
  const pages = new Set<Hash>();
  const unreadable = new Set<Hash>();
  await walkTree((h) => reader.read(h), manifest.root, levelsFor(Math.max(1, blockCount(manifest))), {
    page: (h) => pages.add(h),
    data: (h) => data.add(h),
    unreadable: (h) => unreadable.add(h),
  });
  let missing = unreadable.size;
  const byPack = new Map<string, { hash: Hash; at: BlobLocation }[]>();
  for (const hash of data) {
    const at = index.locate(hash);
    if (!at) {
      missing++;
      continue;
    }
    const list = byPack.get(at.pack.name) ?? [];
    byPack.set(at.pack.name, list);
    list.push({ hash, at });
  }
  progress.total([...byPack.keys()].reduce((a, p) => a + index.packs.get(p)!.bytes, 0));

  progress.phase("checking packs");
  let verified = pages.size;
  let corrupt = 0;
  let bytes = 0;
  const missingPacks: string[] = [];
  const damagedPacks = new Set<string>();
  const queue = [...byPack];
  const lane = async () => {
    for (let item = queue.shift(); item; item = queue.shift()) {
      const [name, blobs] = item;
      const whole = await repo.readPack(name);
      if (whole === null) {
        missingPacks.push(name);
        // A copy in another pack (two backups raced to send it) still counts.
        for (const b of blobs) {
          const other =
            index.locations(b.hash).length > 1 &&
            (await reader.read(b.hash).then(
              () => true,
              () => false,
            ));
          if (other) verified++;
          else missing++;
        }
        continue;
      }
      bytes += whole.byteLength;
      for (const b of blobs) {
        const stored = whole.subarray(b.at.offset, b.at.offset + b.at.length);
        const ok =
          stored.byteLength === b.at.length &&
          (await repo.openBlob(b.hash, stored).then(
            () => true,
            () => false,
          ));
        if (ok) verified++;
        else {
          corrupt++;
          damagedPacks.add(name);
        }
      }
      progress.advance(index.packs.get(name)!.bytes);
    }
  };
  await Promise.all(Array.from({ length: PACKS_IN_FLIGHT }, lane));
  return {
    id: params.id,
    ok: missing === 0 && corrupt === 0,
    chunks: pages.size + data.size + unreadable.size,
    verifiedChunks: verified,
    missingChunks: missing,
    corruptChunks: corrupt,
    unreadablePages: unreadable.size,
    missingPacks: missingPacks.sort(),
    damagedPacks: [...damagedPacks].sort(),
    bytes,
    seconds: (Date.now() - started) / 1000,
  };
}
