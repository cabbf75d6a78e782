import { afterAll, describe, expect, test } from "bun:test";
import { Buffer } from "node:buffer";
import { appendFile, mkdtemp, open, readdir, readFile, rm, stat, statfs, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeHeader, RECORD } from "../../chunkstore/_segment-format.ts";
import type { ChunkStore } from "../../chunkstore/chunk-store.ts";
import { StoreFullError } from "../../chunkstore/errors.ts";
import { FileStore } from "../../chunkstore/file-store.ts";
import { describeConformance, randomChunk } from "./conformance.ts";

const dirs: string[] = [];
const dirOf = new WeakMap<ChunkStore, string>();

afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "blockmend-file-store-"));
  dirs.push(dir);
  return dir;
}

async function openAt(dir: string, options = {}): Promise<FileStore> {
  const store = await FileStore.open(dir, options);
  dirOf.set(store, dir);
  return store;
}

async function segmentPaths(dir: string): Promise<string[]> {
  return (await readdir(join(dir, "segments"))).sort().map((f) => join(dir, "segments", f));
}

async function segmentSizes(dir: string): Promise<number[]> {
  return Promise.all((await segmentPaths(dir)).map(async (p) => (await stat(p)).size));
}

/** File and offset of the record holding `hash`, found by its raw hash in the segment bytes. */
async function locate(dir: string, hash: string): Promise<{ path: string; offset: number }> {
  const raw = Buffer.from(hash, "hex");
  for (const path of await segmentPaths(dir)) {
    const at = (await readFile(path)).indexOf(raw);
    if (at >= 0) return { path, offset: at - RECORD.HASH_OFFSET };
  }
  throw new Error(`record of ${hash} not found`);
}

/** A record as the store writes it, built with the frozen format helpers. */
function record(hash: string, bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(RECORD.HEADER_BYTES + bytes.byteLength);
  encodeHeader(out, 0, Buffer.from(hash, "hex"), bytes.byteLength);
  out.set(bytes, RECORD.HEADER_BYTES);
  return out;
}

function same(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a !== undefined && Buffer.from(a).equals(Buffer.from(b));
}

describeConformance("file", {
  open: async () => openAt(await tempDir()),
  reopen: async (store) => {
    await store.close();
    return openAt(dirOf.get(store)!);
  },
  corrupt: async (store, hash) => {
    const { path, offset } = await locate(dirOf.get(store)!, hash);
    const file = await open(path, "r+");
    const at = offset + RECORD.HEADER_BYTES;
    const byte = Buffer.alloc(1);
    await file.read(byte, 0, 1, at);
    byte[0] = byte[0]! ^ 0xff;
    await file.write(byte, 0, 1, at);
    await file.close();
  },
});

describe("FileStore", () => {
  test("a torn or invalid tail is cut on open; earlier chunks read back and new puts work", async () => {
    const dir = await tempDir();
    const chunks = Array.from({ length: 5 }, (_, i) => randomChunk(3000 + i));
    let store = await openAt(dir);
    await store.putMany(chunks);
    await store.close();
    const [segment] = await segmentPaths(dir);
    const size = (await stat(segment!)).size;

    const claimsMore = record(randomChunk(1000).hash, new Uint8Array(1000)).subarray(
      0,
      RECORD.HEADER_BYTES + 10,
    );
    const other = randomChunk(500);
    const wrongData = record(other.hash, randomChunk(500).bytes);
    const badMagic = Buffer.from("not a record at all, just junk bytes past the end of the last record");
    for (const junk of [claimsMore, wrongData, badMagic, Buffer.from([0x42, 0x4d])]) {
      await appendFile(segment!, junk);
      store = await openAt(dir);
      expect((await stat(segment!)).size).toBe(size);
      for (const c of chunks) expect(same(await store.get(c.hash), c.bytes)).toBe(true);
      expect(await store.has([other.hash])).toEqual([false]);
      await store.close();
    }

    store = await openAt(dir);
    const fresh = randomChunk(777);
    await store.put(fresh.hash, fresh.bytes);
    expect(same(await store.get(fresh.hash), fresh.bytes)).toBe(true);
    expect((await store.stats()).chunks).toBe(6);
    await store.close();
  });

  test("whole records appended past the checkpoint but never indexed are indexed on open", async () => {
    const dir = await tempDir();
    const indexed = randomChunk(2000);
    let store = await openAt(dir);
    await store.put(indexed.hash, indexed.bytes);
    await store.close();
    const unindexed = [randomChunk(1234), randomChunk(0)];
    const [segment] = await segmentPaths(dir);
    for (const c of unindexed) await appendFile(segment!, record(c.hash, c.bytes));

    store = await openAt(dir);
    expect(await store.has(unindexed.map((c) => c.hash))).toEqual([true, true]);
    for (const c of [indexed, ...unindexed]) expect(same(await store.get(c.hash), c.bytes)).toBe(true);
    expect(await store.stats()).toMatchObject({ chunks: 3, bytes: 2000 + 1234 });
    await store.close();
  });

  test("200 concurrent puts are group-committed with far fewer fsyncs than puts", async () => {
    const store = await openAt(await tempDir());
    const chunks = Array.from({ length: 200 }, () => randomChunk(4096));
    const before = store.fsyncCount;
    const results = await Promise.all(chunks.map((c) => store.put(c.hash, c.bytes)));
    expect(results.every((r) => !r.existed)).toBe(true);
    expect(store.fsyncCount - before).toBeGreaterThan(0);
    expect(store.fsyncCount - before).toBeLessThanOrEqual(10);
    const back = await store.getMany(chunks.map((c) => c.hash));
    for (const [i, b] of back.entries()) expect(same(b, chunks[i]!.bytes)).toBe(true);
    await store.close();
  });

  test("a put that would go below the free-space reserve is refused and writes nothing", async () => {
    const dir = await tempDir();
    const kept = randomChunk(5000);
    let store = await openAt(dir);
    await store.put(kept.hash, kept.bytes);
    await store.close();
    const sizes = await segmentSizes(dir);

    const st = await statfs(dir);
    const reserveBytes = st.bavail * st.bsize + 1024 ** 3;
    store = await openAt(dir, { reserveBytes });
    const refused = randomChunk(5000);
    const err = await store.put(refused.hash, refused.bytes).catch((e) => e);
    expect(err).toBeInstanceOf(StoreFullError);
    expect(err.message).toContain(store.name);
    expect(err.message).toContain(String(reserveBytes));
    await expect(store.putMany([randomChunk(10), randomChunk(20)])).rejects.toBeInstanceOf(StoreFullError);
    expect(await segmentSizes(dir)).toEqual(sizes);
    expect(same(await store.get(kept.hash), kept.bytes)).toBe(true);
    expect(await store.has([refused.hash])).toEqual([false]);
    await store.close();

    store = await openAt(dir);
    expect(await store.put(refused.hash, refused.bytes)).toEqual({ existed: false });
    expect(same(await store.get(refused.hash), refused.bytes)).toBe(true);
    await store.close();
  });

  test("a failed append is cut back, fails its puts with StoreFullError on ENOSPC, and the store stays usable", async () => {
    const dir = await tempDir();
    const store = await openAt(dir);
    const kept = randomChunk(3000);
    await store.put(kept.hash, kept.bytes);
    const sizes = await segmentSizes(dir);

    // The disk fills up partway through the batch's write (one writev of headers and data).
    const probe = await open(join(dir, "probe"), "w");
    const proto = Object.getPrototypeOf(probe) as {
      writev: (parts: Uint8Array[], p: number) => Promise<unknown>;
      write: (b: Uint8Array, o: number, n: number, p: number) => Promise<unknown>;
    };
    await probe.close();
    const realWritev = proto.writev;
    proto.writev = async function (this: unknown, parts, p) {
      proto.writev = realWritev;
      await proto.write.call(this, parts[0]!, 0, parts[0]!.byteLength, p); // a header made it to disk
      throw Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
    };
    const failed = [randomChunk(3000), randomChunk(3000)];
    try {
      await expect(store.putMany(failed)).rejects.toBeInstanceOf(StoreFullError);
    } finally {
      proto.writev = realWritev;
    }
    expect(await segmentSizes(dir)).toEqual(sizes);
    expect(await store.has(failed.map((c) => c.hash))).toEqual([false, false]);
    expect(await store.putMany(failed)).toEqual([{ existed: false }, { existed: false }]);
    for (const c of [kept, ...failed]) expect(same(await store.get(c.hash), c.bytes)).toBe(true);
    await store.close();
  });

  test("a sweep compacts by itself, the active segment too, while puts and reads go on", async () => {
    const dir = await tempDir();
    const store = await openAt(dir, { segmentBytes: 64 * 1024 * 1024 }); // everything lands in the active segment
    const chunks = Array.from({ length: 160 }, () => randomChunk(64 * 1024));
    await store.putMany(chunks);
    const dead = chunks.filter((_, i) => i % 8 !== 0);
    const kept = chunks.filter((_, i) => i % 8 === 0);
    await store.condemn(
      dead.map((c) => c.hash),
      "pass-1",
    );
    const before = (await segmentSizes(dir)).reduce((a, b) => a + b, 0);
    expect(
      (
        await store.sweep(
          dead.map((c) => c.hash),
          "pass-1",
        )
      ).deleted,
    ).toBe(dead.length);
    // Puts and reads while the compaction (about a second after the sweep) runs.
    const late = Array.from({ length: 20 }, () => randomChunk(64 * 1024));
    const deadline = Date.now() + 10_000;
    let after = before;
    for (let i = 0; Date.now() < deadline; i++) {
      if (i < late.length) await store.put(late[i]!.hash, late[i]!.bytes);
      for (const b of await store.getMany(kept.map((c) => c.hash))) expect(b).toBeDefined();
      after = (await segmentSizes(dir)).reduce((a, b) => a + b, 0);
      if (i >= late.length && after < before / 2) break;
      await Bun.sleep(50);
    }
    const live = (kept.length + late.length) * (64 * 1024);
    expect(after).toBeLessThan(live * 1.2);
    for (const c of [...kept, ...late]) expect(same(await store.get(c.hash), c.bytes)).toBe(true);
    expect(await store.has(dead.slice(0, 5).map((c) => c.hash))).toEqual([false, false, false, false, false]);
    await store.close();
    const reopened = await openAt(dir, {});
    for (const c of [...kept, ...late]) expect(same(await reopened.get(c.hash), c.bytes)).toBe(true);
    expect((await reopened.stats()).chunks).toBe(kept.length + late.length);
    await reopened.close();
  });

  test("compaction rewrites mostly-dead segments, shrinks the files, and keeps live chunks", async () => {
    const dir = await tempDir();
    const options = { segmentBytes: 1024 * 1024 };
    let store = await openAt(dir, options);
    const chunks = Array.from({ length: 100 }, () => randomChunk(64 * 1024));
    await store.putMany(chunks);
    expect((await segmentPaths(dir)).length).toBeGreaterThanOrEqual(6);
    const kept = chunks.filter((_, i) => i % 5 === 0);
    for (const [i, c] of chunks.entries()) if (i % 5 !== 0) await store.delete(c.hash);
    const before = (await segmentSizes(dir)).reduce((a, b) => a + b, 0);

    // A store at its free-space reserve refuses puts but can still compact: that frees space.
    await store.close();
    const st = await statfs(dir);
    store = await openAt(dir, { ...options, reserveBytes: st.bavail * st.bsize + 1024 ** 3 });
    const refused = randomChunk(100);
    await expect(store.put(refused.hash, refused.bytes)).rejects.toBeInstanceOf(StoreFullError);

    // Reads running during compaction keep working.
    const reads = Promise.all(Array.from({ length: 5 }, () => store.getMany(kept.map((c) => c.hash))));
    const result = await store.compact();
    for (const batch of await reads)
      for (const [i, b] of batch.entries()) expect(same(b, kept[i]!.bytes)).toBe(true);

    const after = (await segmentSizes(dir)).reduce((a, b) => a + b, 0);
    expect(result.segmentsRewritten).toBeGreaterThanOrEqual(5);
    expect(result.bytesReclaimed).toBeGreaterThan(0);
    expect(before - after).toBe(result.bytesReclaimed);
    expect(after).toBeLessThan(before / 2);
    for (const c of kept) expect(same(await store.get(c.hash), c.bytes)).toBe(true);
    expect(await store.stats()).toMatchObject({ chunks: kept.length, bytes: kept.length * 64 * 1024 });

    await store.close();
    store = await openAt(dir, options);
    const listed: string[] = [];
    for await (const h of store.list()) listed.push(h);
    expect(listed).toEqual(kept.map((c) => c.hash).sort());
    for (const c of kept) expect(same(await store.get(c.hash), c.bytes)).toBe(true);
    expect((await store.stats()).chunks).toBe(kept.length);
    await store.close();
  });

  test("compaction keeps to its pace, and puts and reads go on while it moves", async () => {
    const dir = await tempDir();
    const store = await openAt(dir, { segmentBytes: 1024 * 1024, compactBytesPerSecond: 8 * 1024 * 1024 });
    const chunks = Array.from({ length: 320 }, () => randomChunk(64 * 1024)); // 20 MiB
    await store.putMany(chunks);
    const kept = chunks.filter((_, i) => i % 5 !== 0); // 16 MiB stay live
    for (const [i, c] of chunks.entries()) if (i % 5 === 0) await store.delete(c.hash);
    // 80 % live is under the 85 % line: every sealed segment is rewritten, ~16 MiB moved.
    const started = performance.now();
    const compacting = store.compact();
    const put = randomChunk(64 * 1024);
    const putStarted = performance.now();
    await store.put(put.hash, put.bytes);
    const putMs = performance.now() - putStarted;
    const result = await compacting;
    const seconds = (performance.now() - started) / 1000;
    expect(result.segmentsRewritten).toBeGreaterThanOrEqual(15);
    // 16 MiB at 8 MiB/s: at least about 1.5 s (the first step goes at once).
    expect(seconds).toBeGreaterThan(1.4);
    // A put during compaction waits behind one step of moves at most, not the compaction.
    expect(putMs).toBeLessThan(seconds * 1000 * 0.5);
    for (const c of [...kept, put]) expect(same(await store.get(c.hash), c.bytes)).toBe(true);
    await store.close();
  });

  test("list pages through more hashes than one read transaction holds", async () => {
    const store = await openAt(await tempDir());
    const chunks = Array.from({ length: 2500 }, () => randomChunk(16));
    await store.putMany(chunks);
    const sorted = chunks.map((c) => c.hash).sort();
    const listed: string[] = [];
    for await (const h of store.list()) listed.push(h);
    expect(listed).toEqual(sorted);
    const after: string[] = [];
    for await (const h of store.list({ after: sorted[999]! })) after.push(h);
    expect(after).toEqual(sorted.slice(1000));
    await store.close();
  });

  test("an index left unsynced by a crashed process in this boot is trusted, not rebuilt", async () => {
    const dir = await tempDir();
    let store = await openAt(dir);
    const chunks = [randomChunk(100), randomChunk(200)];
    await store.putMany(chunks);
    await store.delete(chunks[0]!.hash);
    await store.close();
    expect(await readdir(dir)).not.toContain("index-dirty");
    // What a process killed in this boot leaves behind (Linux: /proc has the boot id).
    const boot = await readFile("/proc/sys/kernel/random/boot_id", "utf8");
    await writeFile(join(dir, "index-dirty"), boot.trim());
    store = await openAt(dir);
    expect(await store.has(chunks.map((c) => c.hash))).toEqual([false, true]);
    await store.close();
  });

  for (const damage of [
    "removed",
    "overwritten with junk",
    "left unsynced by a system that rebooted",
  ] as const) {
    test(`an index that was ${damage} is rebuilt from the segments`, async () => {
      const dir = await tempDir();
      let store = await openAt(dir, { segmentBytes: 64 * 1024 });
      const chunks = Array.from({ length: 30 }, (_, i) => randomChunk(10_000 + i));
      await store.putMany(chunks);
      await store.delete(chunks[0]!.hash);
      const ref = await store.casRef("head.x", null, "v");
      await store.close();

      const indexDir = join(dir, "index");
      if (damage === "removed") await rm(indexDir, { recursive: true });
      else if (damage === "overwritten with junk") {
        for (const f of await readdir(indexDir)) await writeFile(join(indexDir, f), randomChunk(8192).bytes);
      } else await writeFile(join(dir, "index-dirty"), "a-boot-before-a-power-loss");

      store = await openAt(dir, { segmentBytes: 64 * 1024 });
      // A rebuild indexes every record, so the deleted (not yet compacted) chunk comes back; no live one is lost.
      for (const c of chunks) expect(same(await store.get(c.hash), c.bytes)).toBe(true);
      expect((await store.stats()).chunks).toBe(30);
      expect(await store.getRef("head.x")).toEqual(ref.ok ? { value: "v", version: ref.version } : null);
      const extra = randomChunk(100);
      await store.put(extra.hash, extra.bytes);
      await store.close();
      store = await openAt(dir, { segmentBytes: 64 * 1024 });
      expect(same(await store.get(extra.hash), extra.bytes)).toBe(true);
      await store.close();
    });
  }
});
