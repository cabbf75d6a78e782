/** `StoreSet.placedCopies`: the one "which chunks do the stores lack" of imports and restores. */
import { expect, test } from "bun:test";
import type { ChunkStore } from "../../../chunkstore/chunk-store.ts";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { StoreSet } from "../../../gateway/replication/store-set.ts";
import { randomChunk } from "../../chunkstore/conformance.ts";

function storeSet(stores: Record<string, ChunkStore>): StoreSet {
  const members = Object.entries(stores).map(([id, store]) => ({
    id,
    url: `memory:${id}`,
    store,
    chunks: true,
    refs: false,
  }));
  const health = { isDown: () => false, reportFailure: () => {}, reportSuccess: () => {} };
  return new StoreSet(members, { replicas: 2, minReplicas: 1 }, health as never, () => null);
}

test("a chunk is present only when every placement store holds it and none is leaving", async () => {
  const stores = { a: new MemoryStore(), b: new MemoryStore(), c: new MemoryStore() };
  const set = storeSet(stores);
  const chunks = Array.from({ length: 40 }, () => randomChunk(512));
  const full = chunks.slice(0, 20);
  const half = chunks.slice(20, 30); // on its first placement store only
  for (const c of full) for (const id of set.placement(c.hash)) await stores[id as "a"].put(c.hash, c.bytes);
  for (const c of half) await stores[set.placement(c.hash)[0] as "a"].put(c.hash, c.bytes);
  const hashes = chunks.map((c) => c.hash);

  const r = await set.placedCopies(hashes, new Set());
  expect([...r.present.keys()].sort()).toEqual(full.map((c) => c.hash).sort());
  for (const c of full) expect([...r.present.get(c.hash)!].sort()).toEqual(set.placement(c.hash).sort());
  expect(r.lacking).toEqual(chunks.slice(20).map((c) => c.hash)); // in order
  expect(r.unchecked.size).toBe(0);

  // A copy on a leaving store does not count: those chunks must be put again.
  const leavingA = await set.placedCopies(hashes, new Set(["a"]));
  for (const c of full) expect(leavingA.present.has(c.hash)).toBe(!set.placement(c.hash).includes("a"));
});

test("a store whose check fails is named, and its chunks count as lacking", async () => {
  const broken = new MemoryStore();
  broken.has = () => Promise.reject(new Error("unreachable"));
  const stores = { a: new MemoryStore(), b: new MemoryStore(), c: broken };
  const set = storeSet(stores);
  const chunks = Array.from({ length: 30 }, () => randomChunk(512));
  for (const c of chunks)
    for (const id of set.placement(c.hash)) if (id !== "c") await stores[id as "a"].put(c.hash, c.bytes);
  const r = await set.placedCopies(
    chunks.map((c) => c.hash),
    new Set(),
  );
  expect([...r.unchecked]).toEqual(["c"]);
  for (const c of chunks) expect(r.lacking.includes(c.hash)).toBe(set.placement(c.hash).includes("c"));
  expect(r.present.size + r.lacking.length).toBe(chunks.length);
});
