import { describe, expect, test } from "bun:test";
import type { ChunkStore } from "../../../chunkstore/chunk-store.ts";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import {
  ImageExistsError,
  ImageNotFoundError,
  ReadOnlyError,
  StaleEpochError,
} from "../../../gateway/errors.ts";
import { imageService, pattern, SwitchableStore } from "./_image-fixture.ts";

const MiB = 1024 * 1024;

/**
 * A 1 MiB image `name` on `stores` holding pattern `seed`, written and flushed by a gateway
 * that is then closed (so the next gateway starts with an empty chunk cache); returns its bytes.
 */
async function committedImage(stores: ChunkStore[], name: string, seed: number): Promise<Uint8Array> {
  const first = (await imageService(stores)).service;
  await first.create(name, MiB);
  const bytes = pattern(MiB, seed);
  await (await first.open(name)).write(0, bytes, { fua: true });
  await first.close();
  return bytes;
}

/** A memory store that counts chunk reads. */
class CountingStore extends MemoryStore {
  gets = 0;
  override async get(h: string) {
    this.gets++;
    return super.get(h);
  }
  override async getMany(h: readonly string[]) {
    this.gets += h.length;
    return super.getMany(h);
  }
}

describe("image layer", () => {
  test("unaligned writes read back, before and after a flush, and from a fresh gateway", async () => {
    const { service, stores } = await imageService();
    await service.create("web01", 8 * MiB);
    const img = await service.open("web01");
    const writes = [
      { off: 1, data: pattern(100, 1) },
      { off: 65536 - 10, data: pattern(70_000, 2) },
      { off: 3 * MiB + 12345, data: pattern(MiB + 3, 3) },
      { off: 8 * MiB - 7, data: pattern(7, 4) },
    ];
    for (const w of writes) await img.write(w.off, w.data, { fua: false });
    for (const w of writes) expect(await img.read(w.off, w.data.length)).toEqual(w.data);
    await img.flush();
    for (const w of writes) expect(await img.read(w.off, w.data.length)).toEqual(w.data);
    await service.close();

    const again = (await imageService(stores)).service;
    const img2 = await again.open("web01");
    for (const w of writes) expect(await img2.read(w.off, w.data.length)).toEqual(w.data);
    expect(await img2.read(200, 1000)).toEqual(new Uint8Array(1000));
    await again.close();
  });

  test("unflushed writes are gone after a gateway is dropped, flushed ones stay, the image stays readable", async () => {
    const { service, stores } = await imageService(undefined, { cache: { flushIntervalMs: 60_000 } });
    await service.create("vm", 4 * MiB);
    const img = await service.open("vm");
    await img.write(0, pattern(65536, 5), { fua: true });
    await img.write(MiB, pattern(65536, 6), { fua: false });
    const again = (await imageService(stores)).service; // the first gateway "crashed": its cache is gone
    const img2 = await again.open("vm");
    expect(await img2.read(0, 65536)).toEqual(pattern(65536, 5));
    expect(await img2.read(MiB, 65536)).toEqual(new Uint8Array(65536));
    await again.close();
  });

  test("trim and write-zeroes make holes; block status reports them", async () => {
    const { service } = await imageService();
    await service.create("z", 2 * MiB);
    const img = await service.open("z");
    await img.write(0, pattern(2 * MiB, 7), { fua: false });
    await img.trim(65536, 2 * 65536, { fua: false });
    await img.writeZeroes(MiB + 100, 200, { fua: false, noHole: false, fastZero: false });
    await img.flush();
    expect(await img.read(65536, 2 * 65536)).toEqual(new Uint8Array(2 * 65536));
    const around = await img.read(MiB, 400);
    expect(around.subarray(100, 300)).toEqual(new Uint8Array(200));
    expect(around.subarray(0, 100)).toEqual(pattern(2 * MiB, 7).subarray(MiB, MiB + 100));
    const status = await img.blockStatus(0, 2 * MiB);
    expect(status[0]).toEqual({ length: 65536, hole: false, zero: false });
    expect(status[1]).toEqual({ length: 2 * 65536, hole: true, zero: true });
    await service.close();
  });

  test("every chunk lands on `replicas` stores; identical blocks are stored once", async () => {
    const { service, stores } = await imageService(undefined, { replicas: 2 });
    await service.create("r", 4 * MiB);
    const img = await service.open("r");
    const block = pattern(65536, 8);
    for (let i = 0; i < 8; i++) await img.write(i * 65536, pattern(65536, 100 + i), { fua: false });
    for (let i = 8; i < 16; i++) await img.write(i * 65536, block, { fua: false });
    await img.flush();
    const counts = new Map<string, number>();
    for (const s of stores) for await (const h of s.list()) counts.set(h, (counts.get(h) ?? 0) + 1);
    const dataHashes = [...counts.keys()];
    // 8 distinct + 1 deduplicated block, plus the map page(s); every chunk twice.
    expect(dataHashes.length).toBeGreaterThanOrEqual(9);
    for (const c of counts.values()) expect(c).toBe(2);
    await service.close();
  });

  test("with one store down, reads and writes go on (minReplicas 1) and its synced generation stays behind", async () => {
    const stores = [new SwitchableStore("a"), new SwitchableStore("b"), new SwitchableStore("c")];
    const { service, core } = await imageService(stores, { replicas: 2, minReplicas: 1 });
    await service.create("d", 4 * MiB);
    const img = await service.open("d");
    await img.write(0, pattern(4 * MiB, 9), { fua: true });
    stores[1]!.down = true;
    await core.health.probeAll();
    expect(await img.read(0, 4 * MiB)).toEqual(pattern(4 * MiB, 9));
    await img.write(0, pattern(MiB, 10), { fua: true });
    const head = await service.info("d");
    expect(head.synced.b!.generation).toBeLessThan(head.generation);
    expect(
      head.synced.a!.generation === head.generation || head.synced.c!.generation === head.generation,
    ).toBe(true);
    const fresh = (await imageService(stores, { replicas: 2, minReplicas: 1 })).service;
    const img2 = await fresh.open("d@nosuch").catch((e: unknown) => e);
    expect(img2).toBeInstanceOf(ImageNotFoundError);
    await fresh.close();
    await service.close();
  });

  test("snapshots are frozen and read-only; clones start from them and diverge", async () => {
    const { service } = await imageService();
    await service.create("base", 2 * MiB);
    const img = await service.open("base");
    await img.write(0, pattern(MiB, 11), { fua: false });
    await img.snapshot("s1");
    await img.write(0, pattern(MiB, 12), { fua: true });
    const snap = await service.open("base@s1");
    expect(snap.readOnly).toBe(true);
    expect(await snap.read(0, MiB)).toEqual(pattern(MiB, 11));
    await expect(snap.write(0, new Uint8Array(1), { fua: false })).rejects.toBeInstanceOf(ReadOnlyError);
    await service.create("clone", undefined, { from: "base@s1" });
    const clone = await service.open("clone");
    expect(await clone.read(0, MiB)).toEqual(pattern(MiB, 11));
    await clone.write(0, pattern(100, 13), { fua: true });
    expect(await snap.read(0, 100)).toEqual(pattern(MiB, 11).subarray(0, 100));
    expect(await img.read(0, MiB)).toEqual(pattern(MiB, 12));
    await service.close();
  });

  test("a small write to a block not in memory reads nothing; the commit lays it over the committed block", async () => {
    const counted = ["a", "b", "c"].map((n) => new CountingStore(n));
    const before = await committedImage(counted, "p", 51);

    // A gateway with an empty chunk cache takes the image over and writes small pieces.
    const g = (await imageService(counted)).service;
    const img = await g.open("p");
    const expected = before.slice();
    const writes = [
      { off: 65536 + 100, data: pattern(4096, 52) },
      { off: 65536 + 3000, data: pattern(512, 53) }, // overlaps the first, in the same block
      { off: 5 * 65536 + 65000, data: pattern(1000, 54) }, // spans blocks 5 and 6
      { off: 9 * 65536, data: pattern(4096, 55) },
    ];
    for (const c of counted) c.gets = 0;
    for (const w of writes) {
      await img.write(w.off, w.data, { fua: false });
      expected.set(w.data, w.off);
    }
    await img.writeZeroes(12 * 65536 + 7, 300, { fua: false, noHole: false, fastZero: false });
    expected.fill(0, 12 * 65536 + 7, 12 * 65536 + 307);
    expect(counted.reduce((n, c) => n + c.gets, 0)).toBe(0);
    // Read before the commit: each patch over its committed block.
    expect(Buffer.from(await img.read(0, MiB)).equals(Buffer.from(expected))).toBe(true);
    await img.flush();
    expect(Buffer.from(await img.read(0, MiB)).equals(Buffer.from(expected))).toBe(true);
    await g.close();
    const fresh = (await imageService(counted)).service;
    const view = await fresh.open("p");
    expect(Buffer.from(await view.read(0, MiB)).equals(Buffer.from(expected))).toBe(true);
    await fresh.close();
  });

  test("a partial write racing its block's commit, and a failed commit, lose nothing", async () => {
    const stores = ["a", "b", "c"].map((n) => new SwitchableStore(n));
    const expected = await committedImage(stores, "q", 61);
    const { service: g, core } = await imageService(stores);
    const img = await g.open("q");
    // Writes to the same blocks while commits of earlier patches of them run, some failing.
    for (let round = 0; round < 6; round++) {
      const writes: Promise<void>[] = [];
      for (let k = 0; k < 8; k++) {
        const off = ((round * 7 + k * 3) % 16) * 65536 + ((round * 131 + k * 977) % 60000);
        const data = pattern(1 + ((round + k) % 5) * 700, 100 + round * 10 + k);
        expected.set(data, off);
        writes.push(img.write(off, data, { fua: false }));
        if (k === 3) {
          for (const s of stores) s.down = round % 2 === 1; // every other round's commit fails
          writes.push(img.flush().catch(() => {}));
        }
      }
      await Promise.all(writes);
      for (const s of stores) s.down = false;
      await core.health.probeAll(); // the failed commit marked them down
      expect(Buffer.from(await img.read(0, MiB)).equals(Buffer.from(expected))).toBe(true);
    }
    await img.flush();
    await g.close();
    const fresh = (await imageService(stores)).service;
    const view = await fresh.open("q");
    expect(Buffer.from(await view.read(0, MiB)).equals(Buffer.from(expected))).toBe(true);
    await fresh.close();
  });

  test("create refuses a duplicate name, bad names and bad chunk sizes; an image can grow", async () => {
    const { service } = await imageService();
    await service.create("g", MiB, { chunkSize: 4096 });
    await expect(service.create("g", MiB)).rejects.toBeInstanceOf(ImageExistsError);
    await expect(service.create("bad/name", MiB)).rejects.toBeInstanceOf(TypeError);
    await expect(service.create("h", MiB, { chunkSize: 3000 })).rejects.toBeInstanceOf(RangeError);
    const img = await service.open("g");
    await img.write(MiB - 4096, pattern(4096, 14), { fua: true });
    await img.resize(64 * MiB);
    expect(img.size).toBe(64 * MiB);
    await img.write(64 * MiB - 10, pattern(10, 15), { fua: true });
    expect(await img.read(MiB - 4096, 4096)).toEqual(pattern(4096, 14));
    expect(await img.read(64 * MiB - 10, 10)).toEqual(pattern(10, 15));
    await expect(img.resize(MiB)).rejects.toBeInstanceOf(RangeError);
    await service.close();
  });

  test("looking is free: a second gateway opening and reading an image does not fence the writer", async () => {
    const stores: ChunkStore[] = [new MemoryStore("a"), new MemoryStore("b"), new MemoryStore("c")];
    const a = (await imageService(stores)).service;
    const b = (await imageService(stores)).service;
    await a.create("f", MiB);
    const imgA = await a.open("f");
    await imgA.write(0, pattern(100, 16), { fua: true });
    const imgB = await b.open("f");
    expect(await imgB.read(0, 100)).toEqual(pattern(100, 16));
    await b.info("f");
    await b.snapshot("f", "seen-from-b");
    // The owner goes on committing; the reader sees each flush at once.
    await imgA.write(0, pattern(100, 17), { fua: true });
    expect(await imgB.read(0, 100)).toEqual(pattern(100, 17));
    expect((await a.info("f")).owner).toBe(imgA.head.owner);
    await a.close();
    await b.close();
  });

  test("a snapshot taken through a follower leaves it reading the latest version (found by the fault run)", async () => {
    const stores: ChunkStore[] = [new MemoryStore("a"), new MemoryStore("b"), new MemoryStore("c")];
    const a = (await imageService(stores)).service;
    const b = (await imageService(stores)).service;
    await a.create("f", MiB);
    const writer = await a.open("f");
    const reader = await b.open("f");
    await writer.write(0, pattern(100, 31), { fua: true });
    expect(await reader.read(0, 100)).toEqual(pattern(100, 31));
    await writer.write(0, pattern(100, 32), { fua: true });
    await b.snapshot("f", "via-follower"); // the follower's head moves; its map must too
    expect(await reader.read(0, 100)).toEqual(pattern(100, 32));
    await writer.write(0, pattern(100, 33), { fua: true });
    expect(await reader.read(0, 100)).toEqual(pattern(100, 33));
    await a.close();
    await b.close();
  });

  test("ownership moves on a write: the first write through a second gateway fences the first one's flushes", async () => {
    const stores: ChunkStore[] = [new MemoryStore("a"), new MemoryStore("b"), new MemoryStore("c")];
    const lines: string[] = [];
    const a = (await imageService(stores, { log: (l) => lines.push(l) })).service;
    const b = (await imageService(stores)).service;
    await a.create("f", MiB);
    const imgA = await a.open("f");
    await imgA.write(0, pattern(100, 16), { fua: true });
    const imgB = await b.open("f");
    await imgA.write(0, pattern(100, 17), { fua: false });
    await imgB.write(4096, pattern(100, 18), { fua: true }); // takes the image over
    const fenced = await imgA.flush().catch((e) => e);
    expect(fenced).toBeInstanceOf(StaleEpochError);
    expect((fenced as StaleEpochError).owner).toBe((await b.info("f")).owner);
    expect(lines.some((l) => l.includes("now owned by gateway"))).toBe(true);
    // A's unflushed write never lands; B's does; A's later writes fail too.
    expect(await imgB.read(0, 100)).toEqual(pattern(100, 16));
    expect(await imgB.read(4096, 100)).toEqual(pattern(100, 18));
    await expect(imgA.write(0, pattern(100, 19), { fua: true })).rejects.toBeInstanceOf(StaleEpochError);
    await b.close();
    await a.close();
  });

  test("a writer waits when dirty memory is full instead of growing without bound", async () => {
    const { service } = await imageService(undefined, {
      dirtyBudgetBytes: 4 * 65536,
      cache: { flushThresholdBytes: 1 << 30 },
    });
    await service.create("w", 8 * MiB);
    const img = await service.open("w");
    let maxDirty = 0;
    for (let i = 0; i < 64; i++) {
      await img.write(i * 65536, pattern(65536, i), { fua: false });
      maxDirty = Math.max(maxDirty, img.dirtyBytes);
    }
    expect(maxDirty).toBeLessThanOrEqual(5 * 65536);
    await img.flush();
    for (let i = 0; i < 64; i += 9) expect(await img.read(i * 65536, 65536)).toEqual(pattern(65536, i));
    await service.close();
  });
});

test("a clone larger than its snapshot reads the snapshot's data (the block map grows a level)", async () => {
  const { service } = await imageService();
  await service.create("small", 1024 * 1024, { chunkSize: 4096 });
  const img = await service.open("small");
  await img.write(4096 * 3, pattern(5000, 21), { fua: true });
  await img.snapshot("s");
  await service.create("big", 2 * 1024 * 1024, { from: "small@s" });
  const big = await service.open("big");
  expect(big.size).toBe(2 * 1024 * 1024);
  expect(await big.read(4096 * 3, 5000)).toEqual(pattern(5000, 21));
  expect(await big.read(1024 * 1024, 4096)).toEqual(new Uint8Array(4096));
  await service.close();
});
