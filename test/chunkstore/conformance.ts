/**
 * The one conformance suite every ChunkStore backend passes. A backend's test file
 * calls {@link describeConformance} with a target that opens fresh stores; extras
 * specific to one backend live in that backend's own test file.
 */
import { afterAll, describe, expect, test } from "bun:test";
import type { ChunkStore } from "../../chunkstore/chunk-store.ts";
import {
  ChunkCorruptError,
  ChunkNotFoundError,
  HashMismatchError,
  StoreIdentityError,
  UnsupportedOperationError,
} from "../../chunkstore/errors.ts";
import { hashChunk } from "../../chunkstore/hash.ts";
import { isIdentity, newIdentity } from "../../chunkstore/identity.ts";
import { MAX_CHUNK_BYTES, MAX_REF_BYTES } from "../../chunkstore/limits.ts";

/** How the suite reaches one backend. */
export interface ConformanceTarget {
  /** Opens a fresh, empty store. */
  open(): Promise<ChunkStore>;
  /** Closes `store` and opens the same location again (persistent backends). */
  reopen?(store: ChunkStore): Promise<ChunkStore>;
  /** Damages the stored copy of `hash` underneath the store (to prove reads verify). */
  corrupt?(store: ChunkStore, hash: string): Promise<void>;
  /** Runs once after the suite. */
  cleanup?(): Promise<void>;
}

/** A random chunk of `size` bytes and its address. */
export function randomChunk(size = 4096): { hash: string; bytes: Uint8Array<ArrayBuffer> } {
  const bytes = new Uint8Array(size);
  for (let off = 0; off < size; off += 65536)
    crypto.getRandomValues(bytes.subarray(off, Math.min(size, off + 65536)));
  return { hash: hashChunk(bytes), bytes };
}

/** Registers the conformance tests for one backend. */
export function describeConformance(backend: string, target: ConformanceTarget): void {
  describe(`ChunkStore conformance: ${backend}`, () => {
    const opened: ChunkStore[] = [];
    const open = async () => {
      const s = await target.open();
      opened.push(s);
      return s;
    };
    afterAll(async () => {
      for (const s of opened) await s.close().catch(() => {});
      await target.cleanup?.();
    });

    test("put then get returns the same bytes, and a second put reports it existed", async () => {
      const s = await open();
      const c = randomChunk(10_000);
      expect(await s.put(c.hash, c.bytes)).toEqual({ existed: false });
      expect(await s.put(c.hash, c.bytes)).toEqual({ existed: true });
      expect(Buffer.from(await s.get(c.hash)).equals(Buffer.from(c.bytes))).toBe(true);
    });

    test("a put whose bytes do not match the hash is refused and stores nothing", async () => {
      const s = await open();
      const c = randomChunk();
      const other = randomChunk();
      await expect(s.put(c.hash, other.bytes)).rejects.toBeInstanceOf(HashMismatchError);
      expect(await s.has([c.hash, other.hash])).toEqual([false, false]);
      expect((await s.stats()).chunks).toBe(0);
    });

    test("malformed hashes are rejected with a TypeError", async () => {
      const s = await open();
      const c = randomChunk();
      for (const bad of ["", "xyz", c.hash.toUpperCase(), `${c.hash}00`, "../etc/passwd"]) {
        await expect(s.put(bad, c.bytes)).rejects.toBeInstanceOf(TypeError);
        await expect(s.get(bad)).rejects.toBeInstanceOf(TypeError);
        await expect(s.has([bad])).rejects.toBeInstanceOf(TypeError);
      }
    });

    test("get of an absent chunk throws ChunkNotFoundError naming the hash", async () => {
      const s = await open();
      const c = randomChunk();
      const err = await s.get(c.hash).catch((e) => e);
      expect(err).toBeInstanceOf(ChunkNotFoundError);
      expect(String(err.message)).toContain(c.hash);
    });

    test("has answers a batch in order", async () => {
      const s = await open();
      const chunks = Array.from({ length: 6 }, (_, i) => randomChunk(100 + i));
      for (const c of chunks.filter((_, i) => i % 2 === 0)) await s.put(c.hash, c.bytes);
      expect(await s.has(chunks.map((c) => c.hash))).toEqual([true, false, true, false, true, false]);
      expect(await s.has([])).toEqual([]);
    });

    test("putMany stores a batch and reports existence per chunk", async () => {
      const s = await open();
      const chunks = Array.from({ length: 20 }, (_, i) => randomChunk(1000 + i));
      await s.put(chunks[3]!.hash, chunks[3]!.bytes);
      const results = await s.putMany(chunks);
      expect(results.map((r) => r.existed)).toEqual(chunks.map((_, i) => i === 3));
      const back = await s.getMany(chunks.map((c) => c.hash));
      back.forEach((b, i) => {
        expect(Buffer.from(b!).equals(Buffer.from(chunks[i]!.bytes))).toBe(true);
      });
    });

    test("a putMany with one bad chunk stores none of the batch", async () => {
      const s = await open();
      const chunks = Array.from({ length: 5 }, () => randomChunk());
      const bad = [...chunks, { hash: chunks[0]!.hash, bytes: randomChunk().bytes }];
      await expect(s.putMany(bad)).rejects.toBeInstanceOf(HashMismatchError);
      expect(await s.has(chunks.map((c) => c.hash))).toEqual([false, false, false, false, false]);
    });

    test("getMany returns undefined for absent chunks", async () => {
      const s = await open();
      const a = randomChunk();
      const b = randomChunk();
      await s.put(a.hash, a.bytes);
      const [ga, gb] = await s.getMany([a.hash, b.hash]);
      expect(Buffer.from(ga!).equals(Buffer.from(a.bytes))).toBe(true);
      expect(gb).toBeUndefined();
    });

    test("an empty chunk and a maximum-size chunk round-trip; a larger one is refused", async () => {
      const s = await open();
      const empty = randomChunk(0);
      const big = randomChunk(MAX_CHUNK_BYTES);
      await s.put(empty.hash, empty.bytes);
      await s.put(big.hash, big.bytes);
      expect((await s.get(empty.hash)).byteLength).toBe(0);
      expect(Buffer.from(await s.get(big.hash)).equals(Buffer.from(big.bytes))).toBe(true);
      const tooBig = randomChunk(MAX_CHUNK_BYTES + 1);
      await expect(s.put(tooBig.hash, tooBig.bytes)).rejects.toBeInstanceOf(RangeError);
      expect(await s.has([tooBig.hash])).toEqual([false]);
    });

    test("list yields every hash once, in ascending order, and resumes after a hash", async () => {
      const s = await open();
      const hashes = [];
      for (let i = 0; i < 30; i++) {
        const c = randomChunk(64 + i);
        await s.put(c.hash, c.bytes);
        hashes.push(c.hash);
      }
      hashes.sort();
      const listed = [];
      for await (const h of s.list()) listed.push(h);
      expect(listed).toEqual(hashes);
      const after = [];
      for await (const h of s.list({ after: hashes[9]! })) after.push(h);
      expect(after).toEqual(hashes.slice(10));
    });

    test("delete removes a chunk and stats follow puts and deletes", async () => {
      const s = await open();
      const a = randomChunk(1000);
      const b = randomChunk(3000);
      await s.putMany([a, b]);
      let st = await s.stats();
      expect(st.chunks).toBe(2);
      expect(st.bytes).toBe(4000);
      expect(await s.delete(a.hash)).toBe(true);
      expect(await s.delete(a.hash)).toBe(false);
      await expect(s.get(a.hash)).rejects.toBeInstanceOf(ChunkNotFoundError);
      st = await s.stats();
      expect(st.chunks).toBe(1);
      expect(st.bytes).toBe(3000);
      expect(await s.has([a.hash, b.hash])).toEqual([false, true]);
    });

    test("concurrent puts of one chunk store it once", async () => {
      const s = await open();
      const c = randomChunk(5000);
      const results = await Promise.all(Array.from({ length: 8 }, () => s.put(c.hash, c.bytes)));
      expect(results.filter((r) => !r.existed).length).toBeLessThanOrEqual(1);
      expect((await s.stats()).chunks).toBe(1);
    });

    if (target.corrupt) {
      const corrupt = target.corrupt;
      test("a corrupt stored copy is never served: get throws ChunkCorruptError", async () => {
        const s = await open();
        const c = randomChunk(8192);
        await s.put(c.hash, c.bytes);
        await corrupt(s, c.hash);
        await expect(s.get(c.hash)).rejects.toBeInstanceOf(ChunkCorruptError);
        await expect(s.getMany([c.hash])).rejects.toBeInstanceOf(ChunkCorruptError);
      });
    }

    test("refs: create, compare-and-set, conflict, delete, list", async () => {
      const s = await open();
      if (!s.capabilities.refs) {
        await expect(s.getRef("head.a")).rejects.toBeInstanceOf(UnsupportedOperationError);
        await expect(s.casRef("head.a", null, "x")).rejects.toBeInstanceOf(UnsupportedOperationError);
        return;
      }
      expect(await s.getRef("head.a")).toBeNull();
      const created = await s.casRef("head.a", null, '{"gen":1}');
      expect(created.ok).toBe(true);
      if (!created.ok) return;
      expect(await s.getRef("head.a")).toEqual({ value: '{"gen":1}', version: created.version });
      const again = await s.casRef("head.a", null, '{"gen":9}');
      expect(again).toEqual({ ok: false, current: { value: '{"gen":1}', version: created.version } });
      const updated = await s.casRef("head.a", created.version, '{"gen":2}');
      expect(updated.ok).toBe(true);
      if (!updated.ok) return;
      expect(updated.version).not.toBe(created.version);
      const stale = await s.casRef("head.a", created.version, '{"gen":3}');
      expect(stale.ok).toBe(false);
      expect((await s.getRef("head.a"))?.value).toBe('{"gen":2}');
      await s.casRef("head.b", null, "b");
      await s.casRef("other", null, "o");
      expect(await s.listRefs("head.")).toEqual(["head.a", "head.b"]);
      expect((await s.deleteRef("head.a", created.version)).ok).toBe(false);
      expect((await s.deleteRef("head.a", updated.version)).ok).toBe(true);
      expect(await s.getRef("head.a")).toBeNull();
      expect(await s.listRefs("head.")).toEqual(["head.b"]);
    });

    test("refs: a guarded compare-and-set writes only while its guard ref is at the given version", async () => {
      const s = await open();
      if (!s.capabilities.refs) return;
      // The register collects deleted keys only over stores that say they honour guards.
      expect((await s.probe()).capabilities.refGuards).toBe(true);
      const first = await s.casRef("head.g", null, "1", { name: "floor", version: null });
      expect(first.ok).toBe(true);
      if (!first.ok) return;
      const floor = await s.casRef("floor", null, "f1");
      if (!floor.ok) throw new Error("floor not written");
      // The guard ref exists now: a write guarded on its absence is a conflict and writes nothing.
      expect(await s.casRef("head.h", null, "1", { name: "floor", version: null })).toEqual({
        ok: false,
        current: null,
      });
      expect(await s.getRef("head.h")).toBeNull();
      const stale = await s.casRef("head.g", first.version, "2", {
        name: "floor",
        version: `${floor.version}0`,
      });
      expect(stale.ok).toBe(false);
      expect((await s.getRef("head.g"))?.value).toBe("1");
      const guarded = await s.casRef("head.g", first.version, "2", { name: "floor", version: floor.version });
      expect(guarded.ok).toBe(true);
      expect((await s.getRef("head.g"))?.value).toBe("2");
      await expect(s.casRef("head.g", null, "3", { name: "head.g", version: null })).rejects.toBeInstanceOf(
        TypeError,
      );
      await expect(s.casRef("head.x", null, "3", { name: "../bad", version: null })).rejects.toBeInstanceOf(
        TypeError,
      );
    });

    test("refs: bad names and oversized values are refused", async () => {
      const s = await open();
      if (!s.capabilities.refs) return;
      for (const bad of ["", "../x", "a/b", ".hidden", "x".repeat(300), "sp ace"]) {
        await expect(s.casRef(bad, null, "v")).rejects.toBeInstanceOf(TypeError);
        await expect(s.getRef(bad)).rejects.toBeInstanceOf(TypeError);
      }
      await expect(s.casRef("big", null, "x".repeat(MAX_REF_BYTES + 1))).rejects.toBeInstanceOf(RangeError);
      expect(await s.getRef("big")).toBeNull();
    });

    test("refs: of many concurrent compare-and-sets from one version exactly one wins", async () => {
      const s = await open();
      if (!s.capabilities.refs) return;
      const base = await s.casRef("race", null, "0");
      if (!base.ok) throw new Error("setup failed");
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => s.casRef("race", base.version, String(i + 1))),
      );
      expect(results.filter((r) => r.ok).length).toBe(1);
      const winner = results.findIndex((r) => r.ok);
      expect((await s.getRef("race"))?.value).toBe(String(winner + 1));
    });

    test("refs: scanRefs pages through names with values and versions, in name order", async () => {
      const s = await open();
      if (!s.capabilities.refs) {
        // Capability `refs: false` (S3 buckets): heads live elsewhere; the call says so.
        await expect(s.scanRefs("head.")).rejects.toBeInstanceOf(UnsupportedOperationError);
        return;
      }
      const versions = new Map<string, string>();
      for (const n of ["head.c", "head.a", "head.b", "lease.x"]) {
        const r = await s.casRef(n, null, `v-${n}`);
        if (!r.ok) throw new Error("setup failed");
        versions.set(n, r.version);
      }
      const first = await s.scanRefs("head.", { limit: 2 });
      expect(first.refs).toEqual([
        { name: "head.a", value: "v-head.a", version: versions.get("head.a")! },
        { name: "head.b", value: "v-head.b", version: versions.get("head.b")! },
      ]);
      expect(first.next).toBe("head.b");
      const second = await s.scanRefs("head.", { after: first.next!, limit: 2 });
      expect(second.refs.map((r) => r.name)).toEqual(["head.c"]);
      expect(second.next).toBeNull();
      expect((await s.scanRefs("nothing.")).refs).toEqual([]);
      await expect(s.scanRefs("head.", { limit: 0 })).rejects.toBeInstanceOf(RangeError);
    });

    test("garbage collection: condemned chunks are swept unless a put revived them; others never are", async () => {
      const s = await open();
      if (!s.capabilities.sweep) {
        // Capability `sweep: false` (S3 buckets, witnesses): never swept; the calls say so.
        await expect(s.condemn([randomChunk().hash], "pass-1")).rejects.toBeInstanceOf(
          UnsupportedOperationError,
        );
        await expect(s.sweep([randomChunk().hash], "pass-1")).rejects.toBeInstanceOf(
          UnsupportedOperationError,
        );
        return;
      }
      const [dead, revived, live, absent] = [
        randomChunk(3000),
        randomChunk(3001),
        randomChunk(3002),
        randomChunk(3003),
      ];
      await s.putMany([dead, revived, live]);
      expect(await s.condemn([dead.hash, revived.hash, absent.hash], "pass-1")).toBe(2);
      await s.put(revived.hash, revived.bytes); // a commit deduplicating against it
      const r = await s.sweep([dead.hash, revived.hash, live.hash, absent.hash], "pass-1");
      expect(r).toEqual({ deleted: 1, bytes: 3000 });
      expect(await s.has([dead.hash, revived.hash, live.hash])).toEqual([false, true, true]);
      // A sweep without a condemn first deletes nothing.
      expect((await s.sweep([revived.hash, live.hash], "pass-1")).deleted).toBe(0);
      // Condemned, then put by putMany: revived too.
      await s.condemn([live.hash], "pass-2");
      await s.putMany([live]);
      expect((await s.sweep([live.hash], "pass-2")).deleted).toBe(0);
      expect(await s.has([live.hash])).toEqual([true]);
    });

    test("garbage collection: a sweep deletes only what its own pass condemned last", async () => {
      const s = await open();
      if (!s.capabilities.sweep) return; // checked by the test above
      const c = randomChunk(3100);
      await s.put(c.hash, c.bytes);
      await s.condemn([c.hash], "pass-a");
      await s.put(c.hash, c.bytes); // revived
      await s.condemn([c.hash], "pass-b"); // a later pass condemns it again on its own evidence
      // The first pass resumes (it was stopped): the mark is not its own, nothing goes.
      expect((await s.sweep([c.hash], "pass-a")).deleted).toBe(0);
      expect(await s.has([c.hash])).toEqual([true]);
      expect((await s.sweep([c.hash], "pass-b")).deleted).toBe(1);
      await expect(s.condemn([c.hash], "bad token!")).rejects.toBeInstanceOf(TypeError);
    });

    test("identity: a probe names a stable identity; another expected identity is refused", async () => {
      const s = await open();
      const { identity } = await s.probe();
      expect(isIdentity(identity)).toBe(true);
      expect((await s.probe()).identity).toBe(identity);
      const c = randomChunk();
      s.expectIdentity(identity);
      await s.put(c.hash, c.bytes);
      expect(await s.has([c.hash])).toEqual([true]);
      s.expectIdentity(newIdentity());
      // Refused: what a replaced disk behind the same address must answer.
      const other = randomChunk();
      await expect(s.putMany([other])).rejects.toBeInstanceOf(StoreIdentityError);
      await expect(s.has([c.hash])).rejects.toBeInstanceOf(StoreIdentityError);
      if (s.capabilities.refs)
        await expect(s.casRef("x", null, "1")).rejects.toBeInstanceOf(StoreIdentityError);
      // A probe still answers, so a caller can learn the identity it now has.
      expect((await s.probe()).identity).toBe(identity);
      s.expectIdentity(null);
      if (s.capabilities.refs) expect(await s.getRef("x")).toBeNull();
    });

    if (target.reopen) {
      const reopen = target.reopen;
      test("the identity survives a close and reopen", async () => {
        const s = await open();
        const { identity } = await s.probe();
        const s2 = await reopen(s);
        opened.push(s2);
        expect((await s2.probe()).identity).toBe(identity);
      });

      test("chunks, deletes and refs survive a close and reopen", async () => {
        const s = await open();
        const chunks = Array.from({ length: 10 }, (_, i) => randomChunk(2000 + i));
        await s.putMany(chunks);
        await s.delete(chunks[0]!.hash);
        const ref = s.capabilities.refs ? await s.casRef("head.p", null, "persist") : null;
        const s2 = await reopen(s);
        opened.push(s2);
        expect(await s2.has(chunks.map((c) => c.hash))).toEqual(chunks.map((_, i) => i !== 0));
        for (const c of chunks.slice(1))
          expect(Buffer.from(await s2.get(c.hash)).equals(Buffer.from(c.bytes))).toBe(true);
        if (ref?.ok) expect(await s2.getRef("head.p")).toEqual({ value: "persist", version: ref.version });
        expect((await s2.stats()).chunks).toBe(9);
      });
    }
  });
}
