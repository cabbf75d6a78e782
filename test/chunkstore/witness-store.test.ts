/**
 * A witness keeps refs (heads) and no chunks: refs behave as on any store, chunk writes
 * are refused with UnsupportedOperationError, chunk reads answer as an empty store.
 */
import { describe, expect, test } from "bun:test";
import { ChunkNotFoundError, UnsupportedOperationError } from "../../chunkstore/errors.ts";
import { MemoryStore } from "../../chunkstore/memory-store.ts";
import { WitnessStore } from "../../chunkstore/witness-store.ts";
import { randomChunk } from "./conformance.ts";

function witness() {
  const inner = new MemoryStore();
  return { inner, store: new WitnessStore(inner) };
}

describe("WitnessStore", () => {
  test("declares chunks: false and keeps the inner store's refs, persistence and ref guards", () => {
    const { store } = witness();
    expect(store.capabilities).toEqual({
      chunks: false,
      refs: true,
      persistent: false,
      sweep: false,
      refGuards: true,
    });
    expect(store.name).toBe("witness:memory:");
  });

  test("refs: create, compare-and-set, conflict, delete and list go to the inner store", async () => {
    const { store, inner } = witness();
    const created = await store.casRef("head.a", null, "1");
    if (!created.ok) throw new Error("create failed");
    expect(await inner.getRef("head.a")).toEqual({ value: "1", version: created.version });
    expect(await store.casRef("head.a", null, "x")).toEqual({
      ok: false,
      current: { value: "1", version: created.version },
    });
    const updated = await store.casRef("head.a", created.version, "2");
    expect(updated.ok).toBe(true);
    expect((await store.casRef("head.a", created.version, "3")).ok).toBe(false);
    expect(await store.listRefs("head.")).toEqual(["head.a"]);
    if (!updated.ok) return;
    expect((await store.deleteRef("head.a", updated.version)).ok).toBe(true);
    expect(await store.getRef("head.a")).toBeNull();
    await expect(store.casRef("../bad", null, "v")).rejects.toBeInstanceOf(TypeError);
  });

  test("chunk writes and deletes throw UnsupportedOperationError and store nothing", async () => {
    const { store, inner } = witness();
    const c = randomChunk();
    await expect(store.put(c.hash, c.bytes)).rejects.toBeInstanceOf(UnsupportedOperationError);
    await expect(store.putMany([c])).rejects.toBeInstanceOf(UnsupportedOperationError);
    await expect(store.delete(c.hash)).rejects.toBeInstanceOf(UnsupportedOperationError);
    expect((await inner.stats()).chunks).toBe(0);
  });

  test("chunk reads answer as an empty store, even when the inner store holds chunks", async () => {
    const { store, inner } = witness();
    const c = randomChunk();
    await inner.put(c.hash, c.bytes);
    expect(await store.has([c.hash])).toEqual([false]);
    await expect(store.get(c.hash)).rejects.toBeInstanceOf(ChunkNotFoundError);
    expect(await store.getMany([c.hash])).toEqual([undefined]);
    const listed: string[] = [];
    for await (const h of store.list()) listed.push(h);
    expect(listed).toEqual([]);
    expect(await store.stats()).toEqual({ chunks: 0, bytes: 0, freeBytes: null });
  });

  test("malformed hashes are still TypeErrors", async () => {
    const { store } = witness();
    await expect(store.has(["xyz"])).rejects.toBeInstanceOf(TypeError);
    await expect(store.get("xyz")).rejects.toBeInstanceOf(TypeError);
    await expect(store.getMany(["xyz"])).rejects.toBeInstanceOf(TypeError);
  });
});
