/** `StoreSet.placedCopies`: the one "which chunks do the stores lack" of imports and restores. */
import { expect, test } from "bun:test";
import type { ChunkStore } from "../../../chunkstore/chunk-store.ts";
import { ChunkCorruptError, StoreFullError } from "../../../chunkstore/errors.ts";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { NotEnoughReplicasError } from "../../../gateway/errors.ts";
import { PutOutcome, StoreSet } from "../../../gateway/replication/store-set.ts";
import { randomChunk } from "../../chunkstore/conformance.ts";

function storeSet(
  stores: Record<string, ChunkStore>,
  health: Record<string, unknown> = {},
  options = { replicas: 2, minReplicas: 1 },
): StoreSet {
  const members = Object.entries(stores).map(([id, store]) => ({
    id,
    url: `memory:${id}`,
    store,
    chunks: true,
    refs: false,
  }));
  const view = { isDown: () => false, isFull: () => false, reportFailure: () => {}, ...health };
  return new StoreSet(members, options, view as never, () => "identity");
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

test("a full store gets no new chunks: they go to the next store, the full one is not complete, reads still use it", async () => {
  const stores = { a: new MemoryStore(), b: new MemoryStore(), c: new MemoryStore() };
  const failures: string[] = [];
  const set = storeSet(stores, {
    isFull: (id: string) => id === "c",
    reportFailure: (id: string) => failures.push(id),
  });
  const old = randomChunk(700);
  for (const id of ["a", "b", "c"]) await stores[id as "a"].put(old.hash, old.bytes);
  const chunks = Array.from({ length: 40 }, () => randomChunk(512));
  const outcome = await set.putChunks(chunks);
  await outcome.settled;
  expect(await stores.c.has(chunks.map((c) => c.hash))).toEqual(chunks.map(() => false));
  for (const c of chunks) {
    // Placement unchanged (c may be in it); every chunk has 2 copies on a and b.
    const [inA, inB] = [(await stores.a.has([c.hash]))[0], (await stores.b.has([c.hash]))[0]];
    expect(inA && inB).toBe(true);
  }
  expect(chunks.some((c) => set.placement(c.hash).includes("c"))).toBe(true);
  expect(outcome.complete.has("c")).toBe(false); // it lacks what was placed on it: behind
  expect(outcome.complete.has("a") && outcome.complete.has("b")).toBe(true);
  expect(failures).toEqual([]); // full is not a failure
  expect(outcome.enoughCopies(new Set(), 2)).toBe(true);
  // Reads of what the full store holds go on.
  stores.a.get = () => Promise.reject(new Error("unreachable"));
  stores.b.get = () => Promise.reject(new Error("unreachable"));
  expect((await set.getChunk(old.hash)).byteLength).toBe(700);
});

test("too few stores with room: the put fails as full (ENOSPC, 507), naming the full stores", async () => {
  const stores = { a: new MemoryStore(), b: new MemoryStore(), c: new MemoryStore() };
  const set = storeSet(stores, { isFull: (id: string) => id !== "a" }, { replicas: 2, minReplicas: 2 });
  const err = await set.putChunks([randomChunk(100)]).catch((e) => e);
  expect(err).toBeInstanceOf(StoreFullError);
  expect(err.message).toContain("b, c");
  expect(err.message).toContain("only 1 data store(s) have room");
  // With one store down instead, it is not a space problem.
  const down = storeSet(stores, { isDown: (id: string) => id !== "a" }, { replicas: 2, minReplicas: 2 });
  expect(await down.putChunks([randomChunk(100)]).catch((e) => e)).toBeInstanceOf(NotEnoughReplicasError);
});

test("a store refusing a put for space mid-commit is reported (the tracker marks it full) and the chunk spills over", async () => {
  const stores = { a: new MemoryStore(), b: new MemoryStore(), c: new MemoryStore() };
  const refusing = stores.c;
  refusing.putMany = () => Promise.reject(new StoreFullError("memory:c", "no space left (ENOSPC)"));
  const reported: unknown[] = [];
  const set = storeSet(stores, { reportFailure: (_id: string, err: unknown) => reported.push(err) });
  const chunks = Array.from({ length: 30 }, () => randomChunk(256)).filter((c) =>
    set.placement(c.hash).includes("c"),
  );
  const outcome = await set.putChunks(chunks, new Set());
  expect(outcome.enoughCopies(new Set(), 1)).toBe(true);
  expect(reported.length).toBeGreaterThan(0);
  expect(reported.every((e) => e instanceof StoreFullError)).toBe(true);
  expect(outcome.complete.has("c")).toBe(false);
});

test("a put uses one placement and names its epoch; a new placement moves only the new store's share to it", async () => {
  const stores = { a: new MemoryStore(), b: new MemoryStore(), c: new MemoryStore(), d: new MemoryStore() };
  const set = new StoreSet(
    Object.entries(stores).map(([id, store]) => ({
      id,
      url: `memory:${id}`,
      store,
      chunks: true,
      refs: false,
    })),
    { replicas: 2, minReplicas: 1 },
    { isDown: () => false, isFull: () => false, reportFailure: () => {} },
    () => "identity",
    { epoch: 3, stores: ["a", "b", "c"] },
  );
  const chunks = Array.from({ length: 200 }, () => randomChunk(64));
  const before = await set.putChunks(chunks);
  expect(before.placementEpoch).toBe(3);
  expect(await stores.d.has(chunks.map((c) => c.hash))).toEqual(chunks.map(() => false)); // d is in no placement
  const old = new Map(chunks.map((c) => [c.hash, set.placement(c.hash)]));
  set.setPlacement(4, ["a", "b", "c", "d"]);
  expect(set.view.epoch).toBe(4);
  let moved = 0;
  for (const c of chunks) {
    const now = set.placement(c.hash);
    const was = old.get(c.hash)!;
    // Rendezvous: a chunk's placement changes only by taking d in.
    if (now.join() !== was.join()) {
      moved++;
      expect(now).toContain("d");
    }
  }
  expect(moved).toBeGreaterThan(60); // about half the chunks get d as one of their 2 stores
  expect(moved).toBeLessThan(140);
  // Two puts under different placements: no store is complete for both.
  const after = await set.putChunks([randomChunk(64)]);
  expect(after.placementEpoch).toBe(4);
  const both = PutOutcome.merge(before, after);
  expect(both.complete.size).toBe(0);
  expect(both.placementEpoch).toBe(4);
  // A placement needs `replicas` data stores of this gateway.
  expect(() => set.setPlacement(5, ["a"])).toThrow(RangeError);
  expect(() => set.setPlacement(5, ["a", "zz"])).toThrow(RangeError);
  expect(() => set.removeMember("a")).toThrow(RangeError); // still placed on
});

test("reads ask stores that are behind after the others, and stores that are down last", async () => {
  const stores = { a: new MemoryStore(), b: new MemoryStore(), c: new MemoryStore() };
  const behind = new Set<string>();
  const down = new Set<string>();
  const set = storeSet(stores, {
    isDown: (id: string) => down.has(id),
    isBehind: (id: string) => behind.has(id),
  });
  const chunks = Array.from({ length: 40 }, () => randomChunk(512));
  for (const c of chunks)
    expect(set.readOrder(c.hash)).toEqual(
      set.placement(c.hash).concat(["a", "b", "c"].filter((id) => !set.placement(c.hash).includes(id))),
    );
  behind.add("b");
  down.add("c");
  for (const c of chunks) {
    const order = set.readOrder(c.hash);
    expect(order).toEqual(["a", "b", "c"]);
    expect(set.readOrder(c.hash, "a")).toEqual(["b", "c"]);
  }
  // A read of a chunk placed on the store behind is served by the other copy, with no miss
  // reported there (which would queue a repair competing with the heal).
  const missed: string[] = [];
  set.badCopy.add((id) => missed.push(id));
  for (const c of chunks)
    for (const id of set.placement(c.hash)) if (id !== "b") await stores[id as "a"].put(c.hash, c.bytes);
  down.clear();
  for (const c of chunks.filter((c) => set.placement(c.hash).includes("b")))
    expect(await set.getChunk(c.hash)).toEqual(c.bytes);
  expect(missed).toEqual([]);
});

/** A memory store that counts reads, can hold a batch back, and can have rotten copies. */
class ReadProbe extends MemoryStore {
  gets = 0;
  batches = 0;
  largestBatch = 0;
  delayMs = 0;
  /** Fails every batch (after its delay) with this error. */
  failBatches: Error | null = null;
  readonly rotten = new Set<string>();
  override async get(h: string) {
    this.gets++;
    if (this.rotten.has(h)) throw new ChunkCorruptError(this.name, h, "rotten in the test");
    return super.get(h);
  }
  override async getMany(h: readonly string[]) {
    this.batches++;
    this.largestBatch = Math.max(this.largestBatch, h.length);
    if (this.delayMs) await Bun.sleep(this.delayMs);
    if (this.failBatches) throw this.failBatches;
    for (const x of h)
      if (this.rotten.has(x)) throw new ChunkCorruptError(this.name, x, "rotten in the test");
    return Promise.all(h.map((x) => super.get(x).catch(() => undefined)));
  }
}

async function placed(set: StoreSet, stores: Record<string, ReadProbe>, n: number) {
  const chunks = Array.from({ length: n }, () => randomChunk(512));
  for (const c of chunks) for (const id of set.placement(c.hash)) await stores[id]!.put(c.hash, c.bytes);
  return chunks;
}

test("getChunks reads with one batch per store, each hash from the store getChunk would ask first", async () => {
  const stores = { a: new ReadProbe("a"), b: new ReadProbe("b"), c: new ReadProbe("c") };
  const set = storeSet(stores);
  const chunks = await placed(set, stores, 60);
  const got = await set.getChunks(chunks.map((c) => c.hash));
  expect(got).toEqual(chunks.map((c) => c.bytes));
  for (const s of Object.values(stores)) {
    expect(s.batches).toBeLessThanOrEqual(1);
    expect(s.gets).toBe(0);
  }
  expect(Object.values(stores).reduce((n, s) => n + s.batches, 0)).toBeGreaterThan(1);
  // A large read goes in batches of at most 64, each answered well within the hedge delay.
  const many = await placed(set, stores, 400);
  expect(await set.getChunks(many.map((c) => c.hash))).toEqual(many.map((c) => c.bytes));
  for (const s of Object.values(stores)) expect(s.largestBatch).toBeLessThanOrEqual(64);
  expect(Object.values(stores).reduce((n, s) => n + s.gets, 0)).toBe(0);
});

test("getChunks: a missing copy is reported and read past; a rotten one fails its batch, which is read again chunk by chunk and the rot reported", async () => {
  const stores = { a: new ReadProbe("a"), b: new ReadProbe("b"), c: new ReadProbe("c") };
  const set = storeSet(stores);
  const chunks = await placed(set, stores, 30);
  const bad: string[] = [];
  set.badCopy.add((id, hash, reason) => bad.push(`${id} ${hash} ${reason}`));
  const [lost, rot] = chunks;
  const lostOn = set.readOrder(lost!.hash)[0]!;
  await stores[lostOn as "a"].delete(lost!.hash);
  const rotOn = set.readOrder(rot!.hash)[0]!;
  stores[rotOn as "a"].rotten.add(rot!.hash);
  expect(await set.getChunks(chunks.map((c) => c.hash))).toEqual(chunks.map((c) => c.bytes));
  expect(bad.sort()).toEqual([`${lostOn} ${lost!.hash} missing`, `${rotOn} ${rot!.hash} corrupt`].sort());
});

test("getChunks: a batch slower than the hedge is read past; a store that is down gets no batch", async () => {
  const stores = { a: new ReadProbe("a"), b: new ReadProbe("b"), c: new ReadProbe("c") };
  const down = new Set<string>(["c"]);
  const set = storeSet(stores, { isDown: (id: string) => down.has(id) });
  const chunks = await placed(set, stores, 30);
  stores.a.delayMs = 2000;
  const started = performance.now();
  expect(await set.getChunks(chunks.map((c) => c.hash))).toEqual(chunks.map((c) => c.bytes));
  expect(performance.now() - started).toBeLessThan(1500);
  expect(stores.c.batches).toBe(0); // down: its chunks are read one by one, asking it last
  expect(stores.b.gets).toBeGreaterThan(0); // the hedge asked b for what a held back
});

test("getChunks: what a slow batch finally answers is reported as getChunk reports it (a failure to health, rot and misses as bad copies)", async () => {
  const stores = { a: new ReadProbe("a"), b: new ReadProbe("b"), c: new ReadProbe("c") };
  const failures: string[] = [];
  const set = storeSet(stores, {
    reportFailure: (id: string, err: Error) => failures.push(`${id} ${err.message}`),
  });
  const bad: string[] = [];
  set.badCopy.add((id, hash, reason) => bad.push(`${id} ${hash} ${reason}`));
  const chunks = await placed(set, stores, 30);
  const hashes = chunks.map((c) => c.hash);
  const onA = chunks.filter((c) => set.readOrder(c.hash)[0] === "a");
  expect(onA.length).toBeGreaterThan(1);
  stores.a.delayMs = 400; // past the 150 ms hedge

  // A batch that fails late: the read is served past a, and a's failure reaches health.
  stores.a.failBatches = new Error("disk on fire");
  expect(await set.getChunks(hashes)).toEqual(chunks.map((c) => c.bytes));
  await Bun.sleep(500);
  expect(failures).toEqual(["a disk on fire"]);
  expect(bad).toEqual([]);

  // A late batch with a rotten copy, then one with a missing copy: each reported as a bad copy.
  stores.a.failBatches = null;
  stores.a.rotten.add(onA[0]!.hash);
  expect(await set.getChunks(hashes)).toEqual(chunks.map((c) => c.bytes));
  await Bun.sleep(500);
  expect(bad).toEqual([`a ${onA[0]!.hash} corrupt`]);
  stores.a.rotten.clear();
  await stores.a.delete(onA[1]!.hash);
  expect(await set.getChunks(hashes)).toEqual(chunks.map((c) => c.bytes));
  await Bun.sleep(500);
  expect(bad).toEqual([`a ${onA[0]!.hash} corrupt`, `a ${onA[1]!.hash} missing`]);
  expect(failures).toHaveLength(1);
});
