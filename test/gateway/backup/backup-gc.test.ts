/**
 * Backups and garbage collection: a restore that finds its chunks stored (an image with
 * the same content was deleted) and skips them, racing a pass that condemned exactly
 * those chunks, confirms its new head against the barrier and puts them again; a backup
 * pins the version it reads.
 */
import { expect, test } from "bun:test";
import type { BackupCluster, RestoreSession } from "../../../gateway/backup/backup-cluster.ts";
import { backupPins } from "../../../gateway/backup/backup-cluster.ts";
import { BackupClusterAdapter } from "../../../gateway/backup/backup-cluster-adapter.ts";
import { createBackup } from "../../../gateway/backup/backup-create.ts";
import { restoreBackup } from "../../../gateway/backup/backup-restore.ts";
import { NO_PROGRESS } from "../../../gateway/backup/job-progress.ts";
import { MemoryObjectStore } from "../../../gateway/backup/memory-object-store.ts";
import { Repository } from "../../../gateway/backup/repository.ts";
import { livePins } from "../../../gateway/gc/pins.ts";
import { testCollector } from "../gc/_gc-fixture.ts";
import { imageService, pattern } from "../image/_image-fixture.ts";
import { readAll, write } from "./_backup-fixture.ts";

const MiB = 1024 * 1024;

/** The adapter, with `beforeCommit` run inside a restore just before its head is written. */
function withHook(
  adapter: BackupClusterAdapter,
  beforeCommit: (commit: () => Promise<void>) => Promise<void>,
) {
  const cluster: BackupCluster = Object.create(adapter);
  cluster.beginRestore = async (image) => {
    const session: RestoreSession = await adapter.beginRestore(image);
    return {
      lacking: (h) => session.lacking(h),
      put: (c) => session.put(c),
      commit: (v) => beforeCommit(() => session.commit(v)),
    };
  };
  return cluster;
}

test("a restore that skipped stored chunks, committing after a pass condemned them, puts them again and reads back whole", async () => {
  const { service, core } = await imageService();
  const bytes = pattern(2 * MiB, 41);
  await service.create("vm", 2 * MiB);
  await write(service, "vm", 0, bytes);
  const repo = await Repository.open(new MemoryObjectStore(), { create: true });
  const cluster = new BackupClusterAdapter(service);
  const made = await createBackup(
    { cluster, repo, pins: backupPins(core.images.ctx), progress: NO_PROGRESS },
    {
      image: "vm",
    },
  );
  // vm's chunks stay stored but unreferenced: the restore finds them and skips them.
  await service.remove("vm");
  const racing = withHook(cluster, async (commit) => {
    const report = await testCollector(core, {
      beforeSweep: async () => {
        await commit(); // lands after the barrier and the second mark, before the sweep
      },
    }).run({ graceMs: 0 });
    expect(report.phase).toBe("done");
    expect(report.stores.reduce((n, s) => n + s.condemned, 0)).toBeGreaterThan(0);
  });
  const restored = await restoreBackup(
    { cluster: racing, repo, progress: NO_PROGRESS },
    { id: made.id, image: "back" },
  );
  expect(restored.presentChunks).toBeGreaterThan(0); // it did skip stored chunks
  expect(restored.downloadedChunks).toBe(0);
  // Another pass and a fresh gateway over the same stores: every byte is there.
  await testCollector(core).run({ graceMs: 0 });
  const fresh = await imageService(core.stores.dataMembers.map((m) => m.store));
  expect(await readAll(fresh.service, "back")).toEqual(bytes);
  await fresh.service.close();
  await service.close();
});

test("a backup pins the version it reads until it is done", async () => {
  const { service, core } = await imageService();
  await service.create("vm", MiB);
  await write(service, "vm", 0, pattern(MiB, 5));
  const repo = await Repository.open(new MemoryObjectStore(), { create: true });
  const seen: number[] = [];
  const pins = backupPins(core.images.ctx);
  const watching = {
    pin: async (v: Parameters<typeof pins.pin>[0]) => {
      const release = await pins.pin(v);
      seen.push((await livePins(core.register)).length);
      return async () => {
        await release();
        seen.push((await livePins(core.register)).length);
      };
    },
  };
  await createBackup(
    { cluster: new BackupClusterAdapter(service), repo, pins: watching, progress: NO_PROGRESS },
    {
      image: "vm",
    },
  );
  expect(seen).toEqual([1, 0]);
  await service.close();
});
