/** In-process backups: a gateway over memory stores (image layer fixture) and a memory repository. */

import { NO_PINS } from "../../../gateway/backup/backup-cluster.ts";
import { BackupClusterAdapter } from "../../../gateway/backup/backup-cluster-adapter.ts";
import { type CreateParams, createBackup } from "../../../gateway/backup/backup-create.ts";
import { NO_PROGRESS } from "../../../gateway/backup/job-progress.ts";
import type { ObjectStore } from "../../../gateway/backup/object-store.ts";
import { Repository } from "../../../gateway/backup/repository.ts";
import type { ImageService } from "../../../gateway/image/image-service.ts";
import { imageService } from "../image/_image-fixture.ts";

/** A gateway for backups: its image service and the backup port over it. */
export async function backupCluster(): Promise<{
  service: ImageService;
  cluster: BackupClusterAdapter;
  close(): Promise<void>;
}> {
  const { service } = await imageService();
  return { service, cluster: new BackupClusterAdapter(service), close: () => service.close() };
}

/** Backs up with no progress reporting, opening (creating) the repository. */
export async function backup(
  cluster: BackupClusterAdapter,
  store: ObjectStore,
  params: CreateParams,
  key?: Uint8Array,
) {
  const repo = await Repository.open(store, { create: true, key });
  return createBackup({ cluster, repo, pins: NO_PINS, progress: NO_PROGRESS }, params);
}

/** Writes `bytes` at `offset` of image `name` and flushes. */
export async function write(
  service: ImageService,
  name: string,
  offset: number,
  bytes: Uint8Array,
): Promise<void> {
  await service.withImage(name, async (image) => {
    await image.write(offset, bytes, { fua: true });
  });
}

/** Reads the whole of `name` (or `name@snap`). */
export async function readAll(service: ImageService, name: string): Promise<Uint8Array> {
  const image = await service.open(name);
  try {
    return await image.read(0, image.size);
  } finally {
    await service.release(image);
  }
}
