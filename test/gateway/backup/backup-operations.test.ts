/**
 * Backups in this process (memory stores, a memory repository): create, incremental
 * create, restore into another cluster, verify, prune, encryption. The same operations
 * against a real S3 server and real processes: backup-radosgw.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Manifest } from "../../../gateway/backup/backup-manifest.ts";
import { backupsToKeep, pruneRepository } from "../../../gateway/backup/backup-prune.ts";
import { restoreBackup } from "../../../gateway/backup/backup-restore.ts";
import { verifyBackup } from "../../../gateway/backup/backup-verify.ts";
import { BlobReader } from "../../../gateway/backup/blob-reader.ts";
import { NO_PROGRESS } from "../../../gateway/backup/job-progress.ts";
import { MemoryObjectStore } from "../../../gateway/backup/memory-object-store.ts";
import { Repository } from "../../../gateway/backup/repository.ts";
import { generateKeyFile, parseKeyFile } from "../../../gateway/backup/repository-crypto.ts";
import { walkTree } from "../../../gateway/backup/tree-walk.ts";
import { levelsFor } from "../../../gateway/image/block-map.ts";
import { pattern } from "../image/_image-fixture.ts";
import { backup, backupCluster, readAll, write } from "./_backup-fixture.ts";

const MiB = 1024 * 1024;

let src: Awaited<ReturnType<typeof backupCluster>>;
let dst: Awaited<ReturnType<typeof backupCluster>>;

beforeAll(async () => {
  src = await backupCluster();
  dst = await backupCluster();
  await src.service.create("vm", 64 * MiB);
  await write(src.service, "vm", 0, pattern(40 * MiB, 1));
});

afterAll(async () => {
  await src.close();
  await dst.close();
});

async function restoreInto(store: MemoryObjectStore, id: string, image: string, key?: Uint8Array) {
  const repo = await Repository.open(store, { key });
  return restoreBackup({ cluster: dst.cluster, repo, progress: NO_PROGRESS }, { id, image });
}

/** Every chunk hash the repository's remaining manifests reference. */
async function referenced(store: MemoryObjectStore): Promise<Set<string>> {
  const repo = await Repository.open(store);
  const reader = new BlobReader(repo, await repo.loadIndex());
  const out = new Set<string>();
  for (const m of await repo.listManifests())
    await walkTree((h) => reader.read(h), m.root, levelsFor(Math.ceil(m.size / m.chunkSize)), {
      page: (h) => out.add(h),
      data: (h) => out.add(h),
    });
  return out;
}

describe("backups in process", () => {
  const store = new MemoryObjectStore();
  const ids: string[] = [];

  test("a first backup sends every chunk in packs; a restore elsewhere reads back the same bytes", async () => {
    const r = await backup(src.cluster, store, { image: "vm" });
    ids.push(r.id);
    expect(r.totalBytes).toBe(40 * MiB);
    expect(r.skippedBytes).toBe(0);
    expect(r.uploadedBytes).toBeGreaterThan(40 * MiB);
    expect(r.uploadedBytes).toBeLessThan(40.5 * MiB);
    expect(r.snapshotKept).toBe(false);
    expect(Object.keys((await src.service.info("vm")).snapshots)).toEqual([]);
    const packs = [...store.objects.keys()].filter((k) => k.startsWith("packs/"));
    expect(packs.length).toBeLessThanOrEqual(4); // 40 MiB of data in 16 MiB packs, plus one tree pack
    const restored = await restoreInto(store, r.id, "vm-r1");
    expect(restored.downloadedChunks).toBe(restored.chunks);
    expect(await readAll(dst.service, "vm-r1")).toEqual(await readAll(src.service, "vm"));
  });

  test("a second backup after changing 1 MiB sends that MiB and the changed map pages only", async () => {
    await write(src.service, "vm", 5 * MiB, pattern(MiB, 2));
    const r = await backup(src.cluster, store, { image: "vm", keepSnapshot: true });
    ids.push(r.id);
    expect(r.parent).toBe(ids[0]!);
    expect(r.uploadedChunks).toBe(16 + 2); // 16 data chunks, one leaf page and the root
    expect(r.uploadedBytes).toBeLessThan(1.1 * (MiB + 2 * 8192));
    expect(r.skippedBytes).toBe(39 * MiB);
    expect((await src.service.info("vm")).snapshots[r.snapshot]).toBeDefined();
    // Restoring into a cluster that has most chunks downloads only the rest.
    const again = await restoreInto(store, r.id, "vm-r2");
    expect(again.downloadedChunks).toBe(18);
    expect(await readAll(dst.service, "vm-r2")).toEqual(await readAll(src.service, `vm@${r.snapshot}`));
  });

  test("verify counts every chunk, and finds a deleted and a corrupted pack", async () => {
    const repo = await Repository.open(store);
    const ok = await verifyBackup({ repo, progress: NO_PROGRESS }, { id: ids[1]! });
    expect(ok.ok).toBe(true);
    expect(ok.verifiedChunks).toBe(ok.chunks);
    expect(ok.chunks).toBe(640 + 3 + 1); // 40 MiB of 64 KiB chunks, 3 leaf pages, the root
    const copy = new MemoryObjectStore();
    for (const [k, v] of store.objects) copy.objects.set(k, { ...v, bytes: v.bytes.slice() });
    const dataPacks = [...(await repo.loadIndex()).packs.values()].filter((p) => p.kind === "data");
    copy.objects.delete(repo.packKey(dataPacks[0]!.name));
    const damaged = copy.objects.get(repo.packKey(dataPacks[1]!.name))!;
    damaged.bytes[100] = (damaged.bytes[100] ?? 0) ^ 0xff;
    const bad = await verifyBackup(
      { repo: await Repository.open(copy), progress: NO_PROGRESS },
      { id: ids[1]! },
    );
    expect(bad.ok).toBe(false);
    expect(bad.missingPacks).toEqual([dataPacks[0]!.name]);
    const live = new Set<string>();
    const reader = new BlobReader(repo, await repo.loadIndex());
    const m = await repo.readManifest(ids[1]!);
    await walkTree((h) => reader.read(h), m.root, levelsFor(Math.ceil(m.size / m.chunkSize)), {
      data: (h) => live.add(h),
    });
    expect(bad.missingChunks).toBe(dataPacks[0]!.blobs.filter(([h]) => live.has(h)).length);
    expect(bad.damagedPacks).toEqual([dataPacks[1]!.name]);
    expect(bad.corruptChunks).toBe(1);
  });

  test("prune keeps exactly what the remaining backups reference, and they still restore", async () => {
    await write(src.service, "vm", 20 * MiB, pattern(8 * MiB, 3));
    const r3 = await backup(src.cluster, store, { image: "vm" });
    ids.push(r3.id);
    const repo = await Repository.open(store);
    const result = await pruneRepository(
      { repo, progress: NO_PROGRESS, gateway: "gw-test" },
      { keepLast: 1 },
    );
    expect(result.kept).toEqual([r3.id]);
    expect([...result.removed].sort()).toEqual([ids[0]!, ids[1]!].sort());
    const index = await (await Repository.open(store)).loadIndex();
    const indexed = new Set<string>();
    for (const p of index.packs.values()) for (const [h] of p.blobs) indexed.add(h);
    expect(indexed).toEqual(await referenced(store));
    expect([...store.objects.keys()].filter((k) => k.startsWith("index/")).length).toBe(1);
    expect(result.repackedPacks).toBeGreaterThan(0);
    const packObjects = [...store.objects.keys()].filter((k) => k.startsWith("packs/")).length;
    expect(packObjects).toBe(index.packs.size);
    const v = await verifyBackup(
      { repo: await Repository.open(store), progress: NO_PROGRESS },
      { id: r3.id },
    );
    expect(v.ok).toBe(true);
    await restoreInto(store, r3.id, "vm-r3");
    expect(await readAll(dst.service, "vm-r3")).toEqual(await readAll(src.service, "vm"));
  });

  test("keep-daily keeps the newest backup of each of the last N days per image", () => {
    const m = (id: string, image: string, createdAt: string) => ({ id, image, createdAt }) as Manifest;
    const all = [
      m("a1", "a", "2026-11-28T10:00:00Z"),
      m("a2", "a", "2026-11-29T09:00:00Z"),
      m("a3", "a", "2026-11-29T18:00:00Z"),
      m("a4", "a", "2026-11-30T08:00:00Z"),
      m("b1", "b", "2026-11-01T00:00:00Z"),
    ];
    expect([...backupsToKeep(all, { keepDaily: 2 })].sort()).toEqual(["a3", "a4", "b1"]);
    expect([...backupsToKeep(all, { keepLast: 1, keepDaily: 1 })].sort()).toEqual(["a4", "b1"]);
  });
});

describe("small writes (patch chunks)", () => {
  test("an incremental backup sends the patch chunks; a restore elsewhere reads the same bytes; verify counts them", async () => {
    const here = await backupCluster();
    const there = await backupCluster();
    try {
      const store = new MemoryObjectStore();
      await here.service.create("pv", 4 * MiB);
      await write(here.service, "pv", 0, pattern(4 * MiB, 21));
      const first = await backup(here.cluster, store, { image: "pv" });
      for (let k = 0; k < 20; k++)
        await write(here.service, "pv", (k % 10) * 65536 * 3 + k * 700, pattern(1000, 30 + k));
      const second = await backup(here.cluster, store, { image: "pv" });
      expect(second.parent).toBe(first.id);
      // 20 patch chunks of about 1 KiB (no whole block) and the changed map pages.
      expect(second.uploadedBytes).toBeLessThan(20 * 1100 + 2 * 12 * 1024);
      const repo = await Repository.open(store);
      const v = await verifyBackup({ repo, progress: NO_PROGRESS }, { id: second.id });
      expect(v.ok).toBe(true);
      expect(v.chunks).toBe(64 + 20 + 1); // 64 blocks, 20 patch chunks, the one leaf page
      expect(v.verifiedChunks).toBe(v.chunks);
      await restoreBackup(
        { cluster: there.cluster, repo, progress: NO_PROGRESS },
        { id: second.id, image: "pv" },
      );
      expect(await readAll(there.service, "pv")).toEqual(await readAll(here.service, "pv"));
    } finally {
      await here.close();
      await there.close();
    }
  });
});

describe("encrypted repositories", () => {
  const store = new MemoryObjectStore();
  const key = parseKeyFile(generateKeyFile());

  test("round-trip, and the bucket sees neither names nor hashes nor plaintext", async () => {
    const r = await backup(src.cluster, store, { image: "vm", keepSnapshot: true }, key);
    await restoreInto(store, r.id, "vm-enc", key);
    expect(await readAll(dst.service, "vm-enc")).toEqual(await readAll(src.service, `vm@${r.snapshot}`));
    const repo = await Repository.open(store, { key });
    const index = await repo.loadIndex();
    const hashes = new Set<string>();
    for (const p of index.packs.values()) for (const [h] of p.blobs) hashes.add(h);
    const needles = ["vm", r.id, r.snapshot, ...[...hashes].slice(0, 50)];
    for (const [k, o] of store.objects) {
      if (k === "config") continue;
      const name = k.slice(k.lastIndexOf("/") + 1);
      expect(name).toMatch(/^[0-9a-f]{64}$/);
      for (const n of needles) expect(k.includes(n) && n !== "vm" ? n : null).toBeNull();
      if (!k.startsWith("locks/")) {
        const text = Buffer.from(o.bytes).toString("latin1");
        for (const n of [r.id, r.snapshot, `"image"`]) expect(text.includes(n)).toBe(false);
      }
    }
    // A pack holds no plaintext: the source's bytes are nowhere in it.
    const plain = (await readAll(src.service, "vm")).subarray(0, 4096);
    for (const [k, o] of store.objects)
      if (k.startsWith("packs/")) expect(Buffer.from(o.bytes).includes(Buffer.from(plain))).toBe(false);
  });

  test("a wrong key or no key is refused with a clear error", async () => {
    await expect(Repository.open(store, { key: parseKeyFile(generateKeyFile()) })).rejects.toThrow(
      /wrong key/,
    );
    await expect(Repository.open(store)).rejects.toThrow(/encrypted: give its key file/);
  });

  test("verify of an encrypted backup catches a flipped byte (GCM tag)", async () => {
    const repo = await Repository.open(store, { key });
    const [m] = await repo.listManifests();
    const pack = [...(await repo.loadIndex()).packs.values()].find((p) => p.kind === "data")!;
    store.objects.get(repo.packKey(pack.name))!.bytes[40]! ^= 1;
    const v = await verifyBackup({ repo, progress: NO_PROGRESS }, { id: m!.id });
    expect(v.corruptChunks).toBe(1);
    expect(v.ok).toBe(false);
  });
});

describe("a repository that lost the previous backup's map pages", () => {
  test("the next backup sends the pages again, reports no damage in the cluster, and restores", async () => {
    const store = new MemoryObjectStore();
    await backup(src.cluster, store, { image: "vm" });
    const repo = await Repository.open(store);
    for (const p of (await repo.loadIndex()).packs.values())
      if (p.kind === "tree") store.objects.delete(repo.packKey(p.name));
    await write(src.service, "vm", 33 * MiB, pattern(MiB, 9));
    const damage: string[] = [];
    const off = src.service.ctx.stores.badCopy.add((id, hash) => damage.push(`${id}:${hash}`));
    const r = await backup(src.cluster, store, { image: "vm", keepSnapshot: true });
    off?.();
    expect(damage).toEqual([]);
    expect(r.uploadedChunks).toBe(16 + 3 + 1); // the new data, and every page again (their pack is gone)
    expect(r.parent).toBeNull(); // the previous tree is unreadable: no diff against it
    await restoreInto(store, r.id, "vm-lost-pages");
    expect(await readAll(dst.service, "vm-lost-pages")).toEqual(
      await readAll(src.service, `vm@${r.snapshot}`),
    );
  });
});
