/**
 * `safeToRemove` (heal/safe-to-remove.ts), the pure decision behind
 * `GET /v1/stores/{id}/safe-to-remove`: from a cluster record, heads and what this gateway
 * sees of each store, a store is safe to take down only if every image keeps a current
 * copy (and minReplicas of them), no heal reads from it, new writes still find enough
 * stores, maintenance is stamped in every head, and a majority of head holders remains.
 */
import { expect, test } from "bun:test";
import { hashChunk } from "../../../chunkstore/hash.ts";
import { newIdentity } from "../../../chunkstore/identity.ts";
import { type SafetyInputs, safeToRemove } from "../../../gateway/heal/safe-to-remove.ts";
import type { Head } from "../../../gateway/image/head.ts";
import type { InflightCommit } from "../../../gateway/image/image-context.ts";
import {
  addDamage,
  type ClusterRecord,
  newClusterRecord,
  withStore,
} from "../../../gateway/replication/cluster-record.ts";

const MiB = 1024 * 1024;

/** A record of data stores (chunks and refs) and witnesses (refs only). */
function record(data: string[], witnesses: string[] = []): ClusterRecord {
  return newClusterRecord([
    ...data.map((id) => ({ id, identity: newIdentity(), chunks: true, refs: true })),
    ...witnesses.map((id) => ({ id, identity: newIdentity(), chunks: false, refs: true })),
  ]);
}

/**
 * A head at `generation` whose replica state records `current` at that generation (for
 * the identities of `rec`) and `behind` at an older one, as head-writer.ts writes it.
 */
function head(
  rec: ClusterRecord,
  name: string,
  current: string[],
  options: { behind?: string[]; generation?: number; leaving?: string[]; placement?: number } = {},
): Head {
  const generation = options.generation ?? 5;
  const root = hashChunk(new TextEncoder().encode(`root of ${name} at ${generation}`));
  const synced: Record<string, Head["synced"][string]> = {};
  for (const id of current)
    synced[id] = {
      generation,
      root,
      size: 64 * MiB,
      identity: rec.stores[id]!.identity,
      placement: options.placement ?? rec.placementEpoch ?? 0,
    };
  for (const id of options.behind ?? [])
    synced[id] = { generation: generation - 1, root, size: 64 * MiB, identity: rec.stores[id]!.identity };
  const now = new Date().toISOString();
  return {
    format: 2,
    name,
    incarnation: crypto.randomUUID(),
    size: 64 * MiB,
    chunkSize: 64 * 1024,
    root,
    generation,
    epoch: 1,
    owner: null,
    synced,
    tails: {},
    snapshots: {},
    leaving: options.leaving ?? [],
    commitId: crypto.randomUUID(),
    recentCommits: [],
    createdAt: now,
    updatedAt: now,
  };
}

/** Inputs as ClusterStatus builds them; every store up with its recorded identity unless told. */
function inputs(
  rec: ClusterRecord,
  heads: Head[],
  options: {
    replicas?: number;
    minReplicas?: number;
    down?: string[];
    observed?: Record<string, string>;
    full?: string[];
    inflight?: InflightCommit[];
    healing?: Record<string, string[]>;
    excluded?: string[];
  } = {},
): SafetyInputs {
  const down = new Set(options.down ?? []);
  return {
    record: rec,
    heads,
    up: (id) => !down.has(id),
    observed: (id) => options.observed?.[id] ?? rec.stores[id]?.identity ?? null,
    full: (id) => options.full?.includes(id) ?? false,
    inflight: options.inflight ?? [],
    replicas: options.replicas ?? 2,
    minReplicas: options.minReplicas ?? 1,
    healing: new Map(Object.entries(options.healing ?? {})),
    registerExcluded: (id) => options.excluded?.includes(id) ?? false,
  };
}

/** The record with `store` in maintenance. */
function inMaintenance(rec: ClusterRecord, store: string): ClusterRecord {
  return withStore(rec, store, (s) => ({
    ...s,
    maintenance: { since: new Date().toISOString(), by: "gw-test" },
  }));
}

test("an unknown store is a RangeError", () => {
  const rec = record(["a", "b"], ["w"]);
  expect(() => safeToRemove("zz", inputs(rec, []))).toThrow(RangeError);
});

test("with every store up and every image in sync everywhere, each store is safe to remove", () => {
  const rec = record(["a", "b", "c"]);
  const heads = [head(rec, "vm1", ["a", "b", "c"]), head(rec, "vm2", ["a", "b", "c"])];
  for (const id of ["a", "b", "c"]) {
    const r = safeToRemove(id, inputs(rec, heads));
    expect(r).toEqual({
      store: id,
      safe: true,
      reasons: [],
      maintenance: false,
      wouldLoseLastCurrentCopy: [],
      wouldFallBelowMinReplicas: [],
      healSources: [],
      unstamped: [],
    });
  }
});

test("two data stores and a witness: either data store alone is safe while the other is current", () => {
  const rec = record(["a", "b"], ["w"]);
  const heads = [head(rec, "vm", ["a", "b"])];
  expect(safeToRemove("a", inputs(rec, heads)).safe).toBe(true);
  expect(safeToRemove("b", inputs(rec, heads)).safe).toBe(true);
  expect(safeToRemove("w", inputs(rec, heads)).safe).toBe(true);
});

test("not safe while the store is the only current holder of an image", () => {
  const rec = record(["a", "b"], ["w"]);
  const heads = [head(rec, "vm", ["a"], { behind: ["b"] }), head(rec, "other", ["a", "b"])];
  const a = safeToRemove("a", inputs(rec, heads));
  expect(a.safe).toBe(false);
  expect(a.wouldLoseLastCurrentCopy).toEqual(["vm"]);
  expect(a.wouldFallBelowMinReplicas).toEqual([]);
  expect(a.reasons).toEqual(["1 image(s) would lose their last current copy: vm"]);
  // b may go: a holds everything.
  expect(safeToRemove("b", inputs(rec, heads)).safe).toBe(true);
});

test("a store never recorded for an image (no synced entry) does not count as a copy", () => {
  const rec = record(["a", "b"], ["w"]);
  const heads = [head(rec, "vm", ["a"])];
  const a = safeToRemove("a", inputs(rec, heads));
  expect(a.safe).toBe(false);
  expect(a.wouldLoseLastCurrentCopy).toEqual(["vm"]);
});

test("not safe when another data store is down: chunks placed on both would have no copy left", () => {
  const rec = record(["a", "b", "c"]);
  const heads = [head(rec, "vm", ["a", "b", "c"])];
  const a = safeToRemove("a", inputs(rec, heads, { down: ["c"] }));
  expect(a.safe).toBe(false);
  // With 2 replicas over 3 stores, some chunk sits on a and c only.
  expect(a.wouldLoseLastCurrentCopy).toEqual(["vm"]);
  // Head holders: a and c gone leaves b alone, no majority of three.
  expect(a.reasons).toContain("without it 1 of 3 head holders answer: no majority (need 2)");
  // The down store itself may go: a and b still hold one copy of every chunk and a majority.
  expect(safeToRemove("c", inputs(rec, heads, { down: ["c"] })).safe).toBe(true);
});

test("the worst case counts every data store: 3 replicas over 4 stores with one behind", () => {
  const rec = record(["a", "b", "c", "d"]);
  const heads = [head(rec, "vm", ["a", "b", "c"], { behind: ["d"] })];
  // Without a: b and c current, d behind: a chunk on a, d and one other keeps 1 copy.
  const a = safeToRemove("a", inputs(rec, heads, { replicas: 3, minReplicas: 1 }));
  expect(a.safe).toBe(true);
  // minReplicas 2: that chunk would be below it.
  const strict = safeToRemove("a", inputs(rec, heads, { replicas: 3, minReplicas: 2 }));
  expect(strict.safe).toBe(false);
  expect(strict.wouldFallBelowMinReplicas).toEqual(["vm"]);
  expect(strict.wouldLoseLastCurrentCopy).toEqual([]);
  expect(strict.reasons).toEqual(["1 image(s) would fall below 2 current copies: vm"]);
});

test("minReplicas 2 with 2 replicas: no store can go without some chunk falling below it", () => {
  const rec = record(["a", "b", "c"]);
  const heads = [head(rec, "vm", ["a", "b", "c"])];
  const r = safeToRemove("b", inputs(rec, heads, { replicas: 2, minReplicas: 2 }));
  expect(r.safe).toBe(false);
  expect(r.wouldFallBelowMinReplicas).toEqual(["vm"]);
  // With 3 replicas over the same 3 stores it can.
  expect(safeToRemove("b", inputs(rec, heads, { replicas: 3, minReplicas: 2 })).safe).toBe(true);
});

test("not safe while a commit in flight has not reached the only other holder", () => {
  const rec = record(["a", "b"], ["w"]);
  const heads = [head(rec, "vm", ["a", "b"])];
  const pendingOnB = [{ image: "vm", pending: new Set(["b"]) }];
  const a = safeToRemove("a", inputs(rec, heads, { inflight: pendingOnB }));
  expect(a.safe).toBe(false);
  expect(a.wouldLoseLastCurrentCopy).toEqual(["vm"]);
  // A commit pending on another image, or on the store asked about, changes nothing for vm.
  const elsewhere = [{ image: "other", pending: new Set(["b"]) }];
  expect(safeToRemove("a", inputs(rec, heads, { inflight: elsewhere })).safe).toBe(true);
  const onA = [{ image: "vm", pending: new Set(["a"]) }];
  expect(safeToRemove("a", inputs(rec, heads, { inflight: onA })).safe).toBe(true);
});

test("not safe while a heal reads from it; a heal of the store itself or of another image does not count", () => {
  const rec = record(["a", "b", "c"]);
  const heads = [head(rec, "vm", ["a", "b"], { behind: ["c"] }), head(rec, "other", ["a", "b", "c"])];
  // 3 replicas: without a, b still holds every chunk of vm; only the heal stands in the way.
  const a = safeToRemove("a", inputs(rec, heads, { replicas: 3, healing: { c: ["vm"] } }));
  expect(a.safe).toBe(false);
  expect(a.healSources).toEqual([{ store: "c", images: ["vm"] }]);
  expect(a.reasons).toEqual(['store "c" is healing from it (vm)']);
  // A store is never its own heal source (c holds "other" in full and is listed healing it too).
  const self = safeToRemove("c", inputs(rec, heads, { replicas: 3, healing: { c: ["vm", "other"] } }));
  expect(self.healSources).toEqual([]);
  expect(self.safe).toBe(true);
  // A heal of an image the store does not hold in full does not read it as a source.
  const notSource = inputs(rec, [head(rec, "vm", ["b", "c"], { behind: ["a"] })], {
    replicas: 3,
    healing: { c: ["vm"] },
  });
  expect(safeToRemove("a", notSource).healSources).toEqual([]);
  expect(safeToRemove("a", notSource).safe).toBe(true);
});

test("a replaced disk (another identity than recorded) holds nothing: it is neither a copy nor a head holder", () => {
  const rec = record(["a", "b", "c"]);
  const heads = [head(rec, "vm", ["a", "b", "c"])];
  const wiped = { c: newIdentity() };
  const a = safeToRemove("a", inputs(rec, heads, { observed: wiped }));
  expect(a.safe).toBe(false);
  expect(a.wouldLoseLastCurrentCopy).toEqual(["vm"]);
  expect(a.reasons).toContain("without it 1 of 3 head holders answer: no majority (need 2)");
  // Without the replacement the same inputs are safe: the identity alone made the difference.
  expect(safeToRemove("a", inputs(rec, heads)).safe).toBe(true);
});

test("known damaged chunks on the other holder make it not current", () => {
  const base = record(["a", "b"], ["w"]);
  const damaged = withStore(base, "b", (s) => addDamage(s, [hashChunk(new Uint8Array([1]))]));
  const heads = [head(damaged, "vm", ["a", "b"])];
  const a = safeToRemove("a", inputs(damaged, heads));
  expect(a.safe).toBe(false);
  expect(a.wouldLoseLastCurrentCopy).toEqual(["vm"]);
});

test("new writes need minReplicas writable stores besides it: down, leaving and replaced ones do not count", () => {
  const rec = record(["a", "b", "c"]);
  const heads: Head[] = [];
  expect(safeToRemove("a", inputs(rec, heads, { minReplicas: 2 })).safe).toBe(true);
  const writesFail =
    "without it 1 data store(s) would take new writes (up, not leaving, not full), fewer than minReplicas 2: writes would fail";
  expect(safeToRemove("a", inputs(rec, heads, { minReplicas: 2, down: ["b"] })).reasons).toContain(
    writesFail,
  );
  const leavingB = inMaintenance(rec, "b");
  expect(safeToRemove("a", inputs(leavingB, heads, { minReplicas: 2 })).reasons).toEqual([writesFail]);
  const replacedB = { b: newIdentity() };
  expect(safeToRemove("a", inputs(rec, heads, { minReplicas: 2, observed: replacedB })).reasons).toContain(
    writesFail,
  );
  // A full store takes no new chunks either.
  expect(safeToRemove("a", inputs(rec, heads, { minReplicas: 2, full: ["c"] })).reasons).toEqual([
    writesFail,
  ]);
});

test("maintenance: not safe until every head carries the stamp, then safe and reported as in maintenance", () => {
  const rec = inMaintenance(record(["a", "b", "c"]), "a");
  const unstamped = [
    head(rec, "vm1", ["a", "b", "c"]),
    head(rec, "vm2", ["a", "b", "c"], { leaving: ["a"] }),
  ];
  const before = safeToRemove("a", inputs(rec, unstamped));
  expect(before.safe).toBe(false);
  expect(before.maintenance).toBe(true);
  expect(before.unstamped).toEqual(["vm1"]);
  expect(before.reasons).toEqual(["maintenance is still being recorded in 1 image head(s): vm1"]);
  const stamped = [
    head(rec, "vm1", ["a", "b", "c"], { leaving: ["a"] }),
    head(rec, "vm2", ["a", "b", "c"], { leaving: ["a"] }),
  ];
  const after = safeToRemove("a", inputs(rec, stamped));
  expect(after).toMatchObject({ safe: true, maintenance: true, unstamped: [], reasons: [] });
  // Another store's maintenance is not this store's stamp to wait for.
  expect(safeToRemove("b", inputs(rec, unstamped)).unstamped).toEqual([]);
});

test("a witness: only the head-holder majority matters", () => {
  const rec = record(["a", "b"], ["w"]);
  // Images behind everywhere would block any data store, but not the witness.
  const heads = [head(rec, "vm", ["a"], { behind: ["b"] })];
  const w = safeToRemove("w", inputs(rec, heads));
  expect(w.safe).toBe(true);
  expect(w.wouldLoseLastCurrentCopy).toEqual([]);
  const wDown = safeToRemove("w", inputs(rec, heads, { down: ["a"] }));
  expect(wDown.safe).toBe(false);
  expect(wDown.reasons).toEqual(["without it 1 of 3 head holders answer: no majority (need 2)"]);
});

test("a head holder this gateway's register still keeps out (not rejoined here) is no head holder, though the record names the identity it answers with", () => {
  // Soak seed 754: a was brought back by the other gateway, this one still excluded it, and
  // w was called safe here; wiped, it left this gateway's register without a majority.
  const rec = record(["a", "b"], ["w"]);
  const heads = [head(rec, "vm", ["a", "b"])];
  expect(safeToRemove("w", inputs(rec, heads)).safe).toBe(true);
  const w = safeToRemove("w", inputs(rec, heads, { excluded: ["a"] }));
  expect(w.safe).toBe(false);
  expect(w.reasons).toEqual([
    "without it 1 of 3 head holders answer: no majority (need 2); a not rejoined the register on this gateway yet",
  ]);
});

test("every reason is listed when several apply, and each image once per list", () => {
  const rec = record(["a", "b", "c"]);
  const heads = [
    head(rec, "lost", ["a"], { behind: ["b", "c"] }),
    head(rec, "thin", ["a", "b"], { behind: ["c"] }),
    head(rec, "fine", ["a", "b", "c"]),
  ];
  const r = safeToRemove("a", inputs(rec, heads, { replicas: 3, minReplicas: 2, healing: { c: ["thin"] } }));
  expect(r.safe).toBe(false);
  expect(r.wouldLoseLastCurrentCopy).toEqual(["lost"]);
  // thin: b current, c behind, a gone: 3 replicas minus 2 not current = 1 copy, below 2.
  expect(r.wouldFallBelowMinReplicas).toEqual(["thin"]);
  expect(r.healSources).toEqual([{ store: "c", images: ["thin"] }]);
  expect(r.reasons).toEqual([
    "1 image(s) would lose their last current copy: lost",
    "1 image(s) would fall below 2 current copies: thin",
    'store "c" is healing from it (thin)',
  ]);
});

/** `rec` after `store drain id`: out of placement, leaving, epoch + 1. */
function draining(rec: ClusterRecord, id: string): ClusterRecord {
  const r = withStore(rec, id, (s) => ({
    ...s,
    draining: { since: new Date().toISOString(), by: "gw-test" },
  }));
  return { ...r, placementEpoch: (rec.placementEpoch ?? 0) + 1 };
}

test("after the store set changed, replica state recorded under the old placement counts as nothing", () => {
  const before = record(["a", "b", "c"]);
  const after = { ...before, placementEpoch: 1 };
  const heads = [head(before, "vm", ["a", "b", "c"])]; // recorded under placement 0
  expect(safeToRemove("a", inputs(before, heads)).safe).toBe(true);
  const r = safeToRemove("a", inputs(after, heads));
  expect(r.safe).toBe(false);
  expect(r.wouldLoseLastCurrentCopy).toEqual(["vm"]);
  // Once the walks recorded it under placement 1, it is safe again.
  expect(safeToRemove("a", inputs(after, [head(after, "vm", ["a", "b", "c"])])).safe).toBe(true);
});

test("a draining store: never counted as a copy; safe once every placement store is current and the drain is stamped", () => {
  const rec = draining(record(["a", "b", "c"]), "c");
  // No walk under placement 1 is done: not safe (copies may be only on c).
  const before = [head(rec, "vm", [], { placement: 1, leaving: ["c"] })];
  expect(safeToRemove("c", inputs(rec, before)).wouldLoseLastCurrentCopy).toEqual(["vm"]);
  // a's walk is done: one current copy of everything, enough for minReplicas 1, not for 2.
  const walking = [head(rec, "vm", ["a"], { placement: 1, leaving: ["c"] })];
  expect(safeToRemove("c", inputs(rec, walking)).safe).toBe(true);
  expect(safeToRemove("c", inputs(rec, walking, { minReplicas: 2 })).wouldFallBelowMinReplicas).toEqual([
    "vm",
  ]);
  // c recorded current under the new placement changes nothing: it is not in it.
  const cOnly = [head(rec, "vm", ["c"], { placement: 1, leaving: ["c"] })];
  expect(safeToRemove("c", inputs(rec, cOnly)).wouldLoseLastCurrentCopy).toEqual(["vm"]);
  // a and b current under placement 1 but the head not stamped yet: not safe.
  const unstamped = [head(rec, "vm", ["a", "b"], { placement: 1 })];
  expect(safeToRemove("c", inputs(rec, unstamped)).unstamped).toEqual(["vm"]);
  const done = [head(rec, "vm", ["a", "b"], { placement: 1, leaving: ["c"] })];
  expect(safeToRemove("c", inputs(rec, done))).toMatchObject({ safe: true, maintenance: true });
  // With c draining, only a and b take new writes: without a, minReplicas 2 cannot be met.
  expect(safeToRemove("a", inputs(rec, done, { minReplicas: 2 })).reasons.join()).toContain(
    "without it 1 data store(s) would take new writes",
  );
});
