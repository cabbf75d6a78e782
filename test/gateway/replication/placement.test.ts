/**
 * Rendezvous placement (`Rendezvous.order`): a deterministic permutation of the store ids
 * per chunk hash, balanced over many hashes, and minimally disrupted when a store is
 * removed or added.
 */
import { expect, test } from "bun:test";
import { hashChunk } from "../../../chunkstore/hash.ts";
import { Rendezvous } from "../../../gateway/replication/placement.ts";

const encoder = new TextEncoder();

/** `n` distinct, deterministic chunk hashes (BLAKE3 of a counter, like real chunk addresses). */
function hashes(n: number, salt = "chunk"): string[] {
  return Array.from({ length: n }, (_, i) => hashChunk(encoder.encode(`${salt} ${i}`)));
}

/** How often each id comes first. */
function firstCounts(r: Rendezvous, ids: readonly string[], hs: readonly string[]): Map<string, number> {
  const counts = new Map(ids.map((id) => [id, 0]));
  for (const h of hs) {
    const first = r.order(h)[0]!;
    counts.set(first, (counts.get(first) ?? 0) + 1);
  }
  return counts;
}

const HASHES = hashes(30_000);

test("order() is a permutation of the store ids", () => {
  const ids = ["a", "b", "c", "d", "e"];
  const r = new Rendezvous(ids);
  for (const h of HASHES.slice(0, 500)) {
    const o = r.order(h);
    expect(o).toHaveLength(ids.length);
    expect([...o].sort()).toEqual([...ids].sort());
  }
});

test("order() is deterministic: the same hash gives the same order, across instances and id order", () => {
  const r1 = new Rendezvous(["a", "b", "c", "d"]);
  const r2 = new Rendezvous(["d", "c", "b", "a"]);
  for (const h of HASHES.slice(0, 500)) {
    const o = r1.order(h);
    expect(r1.order(h)).toEqual(o);
    // Scores depend on the id and the hash only, not on where the id sits in the list.
    expect(r2.order(h)).toEqual(o);
  }
});

test("different hashes get different orders (placement depends on the hash)", () => {
  const r = new Rendezvous(["a", "b", "c", "d"]);
  const distinct = new Set(HASHES.slice(0, 2000).map((h) => r.order(h).join(",")));
  // 4! = 24 possible orders; a fair hash reaches all of them within 2000 chunks.
  expect(distinct.size).toBe(24);
});

test("a single store is always first; no stores gives an empty order", () => {
  expect(new Rendezvous(["only"]).order(HASHES[0]!)).toEqual(["only"]);
  expect(new Rendezvous([]).order(HASHES[0]!)).toEqual([]);
});

test("3 stores, 30000 hashes: each store is first for 1/3 of them within 5 %", () => {
  const ids = ["a", "b", "c"];
  const counts = firstCounts(new Rendezvous(ids), ids, HASHES);
  const expected = HASHES.length / 3;
  for (const id of ids) {
    const n = counts.get(id)!;
    expect(Math.abs(n - expected) / expected).toBeLessThan(0.05);
  }
});

test("with 2 replicas of 3 stores every pair of stores holds about 1/3 of the chunks", () => {
  const ids = ["a", "b", "c"];
  const r = new Rendezvous(ids);
  const pairs = new Map<string, number>();
  for (const h of HASHES) {
    const key = r.order(h).slice(0, 2).sort().join("+");
    pairs.set(key, (pairs.get(key) ?? 0) + 1);
  }
  expect([...pairs.keys()].sort()).toEqual(["a+b", "a+c", "b+c"]);
  const expected = HASHES.length / 3;
  for (const n of pairs.values()) expect(Math.abs(n - expected) / expected).toBeLessThan(0.05);
});

test("balance holds for realistic store names and more stores too", () => {
  for (const ids of [
    ["store-1", "store-2", "store-3"],
    ["a", "b", "c", "d"],
    ["disk0", "disk1", "disk2", "disk3", "disk4"],
  ]) {
    const counts = firstCounts(new Rendezvous(ids), ids, HASHES);
    const expected = HASHES.length / ids.length;
    for (const id of ids) expect(Math.abs(counts.get(id)! - expected) / expected).toBeLessThan(0.06);
  }
});

test("removing a store keeps the relative order of the remaining stores for every hash", () => {
  const ids = ["a", "b", "c", "d"];
  const all = new Rendezvous(ids);
  const withoutC = new Rendezvous(["a", "b", "d"]);
  let moved = 0;
  for (const h of HASHES) {
    const before = all.order(h);
    const after = withoutC.order(h);
    expect(after).toEqual(before.filter((id) => id !== "c"));
    // With 2 replicas only chunks that had c in their placement change placement.
    const placedBefore = before.slice(0, 2);
    const placedAfter = after.slice(0, 2);
    if (placedBefore.join() !== placedAfter.join()) {
      moved++;
      expect(placedBefore).toContain("c");
    }
  }
  // c held about 2/4 of the chunks (2 replicas of 4 stores): all of those moved, and only those.
  expect(Math.abs(moved / HASHES.length - 0.5)).toBeLessThan(0.025);
});

test("adding a store moves about 1/n of first choices, all of them to the new store", () => {
  const before = new Rendezvous(["a", "b", "c"]);
  const after = new Rendezvous(["a", "b", "c", "d"]);
  let moved = 0;
  for (const h of HASHES) {
    const o1 = before.order(h);
    const o2 = after.order(h);
    // The old stores keep their relative order; d is only inserted somewhere.
    expect(o2.filter((id) => id !== "d")).toEqual(o1);
    if (o2[0] !== o1[0]) {
      moved++;
      expect(o2[0]).toBe("d");
    }
  }
  const share = moved / HASHES.length;
  expect(Math.abs(share - 1 / 4) / (1 / 4)).toBeLessThan(0.05);
});
