/**
 * The one head writer: each change of a head against the register, and the commit
 * protocol under injected faults (issue 8, failure 1): a head write that reached only a
 * minority, one that took effect but whose answer was lost, and another gateway's change
 * between two commits. After every acknowledged flush, a second gateway reads exactly it.
 */
import { describe, expect, test } from "bun:test";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { ImageDeletedError, ImageExistsError, StaleEpochError } from "../../../gateway/errors.ts";
import { ZERO_HASH } from "../../../gateway/image/block-map.ts";
import { type Head, isTombstone } from "../../../gateway/image/head.ts";
import {
  commitContent,
  confirmHead,
  createHead,
  deleteHead,
  GcBarrierError,
  HeadWriter,
  importContent,
  markSynced,
  revivedHead,
  stampGc,
  startTail,
  takeOver,
} from "../../../gateway/image/head-writer.ts";
import { QuorumRegister } from "../../../gateway/register/quorum-register.ts";
import { FaultyStore } from "../../support/faulty-store.ts";
import { imageService, pattern } from "./_image-fixture.ts";

const MiB = 1024 * 1024;

function writer(id = "gw-1") {
  const members = ["a", "b", "c"].map((n) => ({ id: n, store: new MemoryStore(n) }));
  return new HeadWriter(new QuorumRegister(members, { proposer: id }), id);
}

const emptyPut = { complete: new Map([["a", "id-a"]]), enoughCopies: () => true, placementEpoch: 0 };

describe("head changes", () => {
  test("create, delete and create again: a new incarnation, the generation goes on, the tombstone stays", async () => {
    const w = writer();
    const { head: h1 } = await w.change(
      "x",
      createHead({
        name: "x",
        size: MiB,
        chunkSize: 65536,
        synced: { a: { identity: "id-a", placement: 0 } },
        gcObserved: 0,
      }),
    );
    await expect(
      w.change("x", createHead({ name: "x", size: MiB, chunkSize: 65536, synced: {}, gcObserved: 0 })),
    ).rejects.toBeInstanceOf(ImageExistsError);
    const { head: tomb } = await w.change("x", deleteHead("x", "gw-1"));
    expect(isTombstone(tomb)).toBe(true);
    expect(tomb!.generation).toBe(h1!.generation + 1);
    const { head: h2 } = await w.change(
      "x",
      createHead({ name: "x", size: MiB, chunkSize: 65536, synced: {}, gcObserved: 0 }),
    );
    expect((h2 as Head).incarnation).not.toBe((h1 as Head).incarnation);
    expect(h2!.generation).toBe(tomb!.generation + 1);
    // Anything of the first incarnation is refused by name, clearly.
    await expect(w.change("x", takeOver("x", (h1 as Head).incarnation, "gw-1"))).rejects.toBeInstanceOf(
      ImageDeletedError,
    );
  });

  test("a content commit from an older owner epoch is refused with the new owner named", async () => {
    const w = writer();
    const { head } = await w.change(
      "x",
      createHead({ name: "x", size: MiB, chunkSize: 65536, synced: {}, gcObserved: 0 }),
    );
    const h = head as Head;
    await w.change("x", confirmHead("x", h.incarnation, 0));
    const { head: mine } = await w.change("x", takeOver("x", h.incarnation, "gw-1"));
    await w.change("x", takeOver("x", h.incarnation, "gw-2"));
    const stale = await w
      .change(
        "x",
        commitContent({
          name: "x",
          incarnation: h.incarnation,
          epoch: (mine as Head).epoch,
          owner: "gw-1",
          base: { root: ZERO_HASH, size: MiB },
          ownAttempts: new Set(),
          root: "1".repeat(64),
          size: MiB,
          put: emptyPut,
          leaving: new Set(),
          minReplicas: 1,
          gcEpoch: 0,
        }),
      )
      .catch((e) => e);
    expect(stale).toBeInstanceOf(StaleEpochError);
    expect((stale as StaleEpochError).owner).toBe("gw-2");
  });

  test("gc barrier: a commit whose puts came before a stamped barrier is refused until it puts again", async () => {
    const w = writer();
    const { head } = await w.change(
      "x",
      createHead({ name: "x", size: MiB, chunkSize: 65536, synced: {}, gcObserved: 3 }),
    );
    const h = head as Head;
    expect(h.gcPending).toBe(3);
    // Empty content confirms whatever barrier passed meanwhile.
    await w.change("x", confirmHead("x", h.incarnation, 4));
    const { head: owned } = await w.change("x", takeOver("x", h.incarnation, "gw-1"));
    expect((owned as Head).gcPending).toBeUndefined();
    await w.change("x", stampGc("x", 5));
    const commit = (gcEpoch: number, root: string) =>
      commitContent({
        name: "x",
        incarnation: h.incarnation,
        epoch: (owned as Head).epoch,
        owner: "gw-1",
        base: { root: ZERO_HASH, size: MiB },
        ownAttempts: new Set(),
        root,
        size: MiB,
        put: emptyPut,
        leaving: new Set(),
        minReplicas: 1,
        gcEpoch,
      });
    const refused = await w.change("x", commit(4, "1".repeat(64))).catch((e) => e);
    expect(refused).toBeInstanceOf(GcBarrierError);
    expect((refused as GcBarrierError).pending).toBe(false);
    // Put again after reading barrier 5: accepted.
    const { head: after } = await w.change("x", commit(5, "1".repeat(64)));
    expect((after as Head).root).toBe("1".repeat(64));
    // A stamp never lowers the barrier.
    expect((await w.change("x", stampGc("x", 2))).result).toBe(false);
  });

  test("gc barrier: content that came with a new head stays unconfirmed until checked, and is put again if a barrier passed", async () => {
    const w = writer();
    const put = { complete: new Map([["a", "id-a"]]), enoughCopies: () => true, placementEpoch: 0 };
    const { head } = await w.change(
      "y",
      importContent({
        name: "y",
        root: "2".repeat(64),
        size: MiB,
        chunkSize: 65536,
        owner: "gw-1",
        put,
        leaving: new Set(),
        minReplicas: 1,
        gcEpoch: 7,
      }),
    );
    const h = head as Head;
    expect(h.gcPending).toBe(7);
    // Nobody commits onto unconfirmed content: the committer is told to confirm.
    const onto = await w
      .change(
        "y",
        commitContent({
          name: "y",
          incarnation: h.incarnation,
          epoch: h.epoch,
          owner: "gw-1",
          base: { root: h.root, size: MiB },
          ownAttempts: new Set(),
          root: "3".repeat(64),
          size: MiB,
          put,
          leaving: new Set(),
          minReplicas: 1,
          gcEpoch: 9,
        }),
      )
      .catch((e) => e);
    expect(onto).toBeInstanceOf(GcBarrierError);
    expect((onto as GcBarrierError).pending).toBe(true);
    // Barrier 8 passed since the content was put: confirming fails until it is put again.
    await expect(w.change("y", confirmHead("y", h.incarnation, 8))).rejects.toBeInstanceOf(GcBarrierError);
    await w.change("y", revivedHead("y", h.incarnation, 8));
    const { head: confirmed } = await w.change("y", confirmHead("y", h.incarnation, 8));
    expect((confirmed as Head).gcPending).toBeUndefined();
    expect((confirmed as Head).gcEpoch).toBe(8);
    // Confirmed and stamped: an import whose puts came before barrier 8 is refused.
    await expect(
      w.change(
        "y",
        importContent({
          name: "y",
          root: "4".repeat(64),
          size: MiB,
          chunkSize: 65536,
          owner: "gw-1",
          put,
          leaving: new Set(),
          minReplicas: 1,
          gcEpoch: 7,
        }),
      ),
    ).rejects.toBeInstanceOf(GcBarrierError);
  });

  test("in sync is recorded only over an unbroken tail; a commit that missed the store breaks it", async () => {
    const w = writer();
    const { head } = await w.change(
      "x",
      createHead({
        name: "x",
        size: MiB,
        chunkSize: 65536,
        synced: { a: { identity: "id-a", placement: 0 } },
        gcObserved: 0,
      }),
    );
    const h = head as Head;
    await w.change("x", confirmHead("x", h.incarnation, 0));
    expect(
      (await w.change("x", startTail("x", h.incarnation, "a", { identity: "id-a", placement: 0 }))).result,
    ).toBeNull(); // holds it already
    const from = (await w.change("x", startTail("x", h.incarnation, "b", { identity: "id-b", placement: 0 })))
      .result!;
    const { head: owned } = await w.change("x", takeOver("x", h.incarnation, "gw-1"));
    // A commit that reached a only: b's tail breaks.
    await w.change(
      "x",
      commitContent({
        name: "x",
        incarnation: h.incarnation,
        epoch: (owned as Head).epoch,
        owner: "gw-1",
        base: { root: ZERO_HASH, size: MiB },
        ownAttempts: new Set(),
        root: "2".repeat(64),
        size: MiB,
        put: emptyPut,
        leaving: new Set(),
        minReplicas: 1,
        gcEpoch: 0,
      }),
    );
    expect(
      (await w.change("x", markSynced("x", h.incarnation, "b", { identity: "id-b", placement: 0 }, from)))
        .result,
    ).toBe(false);
    // Again, with the tail intact: recorded.
    const from2 = (
      await w.change("x", startTail("x", h.incarnation, "b", { identity: "id-b", placement: 0 }))
    ).result!;
    const { result, head: after } = await w.change(
      "x",
      markSynced("x", h.incarnation, "b", { identity: "id-b", placement: 0 }, from2),
    );
    expect(result).toBe(true);
    expect((after as Head).synced.b).toMatchObject({ generation: after!.generation, identity: "id-b" });
    expect((after as Head).synced.a!.generation).toBe(after!.generation);
  });
});

describe("commits under injected faults (issue 8, failure 1)", () => {
  async function pair() {
    const stores = ["a", "b", "c"].map((n, i) => new FaultyStore(new MemoryStore(n), 10 + i));
    const g1 = await imageService(stores, { cache: { flushIntervalMs: 60_000 } });
    const g2 = await imageService(stores, { cache: { flushIntervalMs: 60_000 } });
    await g1.service.create("vm", 4 * MiB);
    return { stores, g1, g2, img: await g1.service.open("vm") };
  }

  test("a head write that reached only a minority fails the flush; the retry lands and is what everyone reads", async () => {
    const { stores, g1, g2, img } = await pair();
    await img.write(0, pattern(65536, 1), { fua: true });
    for (const s of stores.slice(1)) s.faults.refWrites = { match: /^head\./, fail: "before" };
    await img.write(0, pattern(65536, 2), { fua: false });
    await expect(img.flush()).rejects.toThrow();
    for (const s of stores) s.faults.refWrites = null;
    await g1.core.health.probeAll();
    await img.flush(); // acknowledged now
    const reader = await g2.service.open("vm");
    expect(await reader.read(0, 65536)).toEqual(pattern(65536, 2));
    await img.write(0, pattern(65536, 3), { fua: true });
    expect(await reader.read(0, 65536)).toEqual(pattern(65536, 3));
    await g1.core.close();
    await g2.core.close();
  });

  test("a head write that took effect but whose answer was lost does not block the next commit", async () => {
    const { stores, g1, g2, img } = await pair();
    await img.write(0, pattern(65536, 4), { fua: true });
    for (const s of stores) s.faults.refWrites = { match: /^head\./, fail: "after" };
    await img.write(65536, pattern(65536, 5), { fua: false });
    await expect(img.flush()).rejects.toThrow();
    for (const s of stores) s.faults.refWrites = null;
    expect(stores.reduce((n, s) => n + s.lostReplies, 0)).toBeGreaterThan(0);
    await g1.core.health.probeAll(); // the stores that failed are back (the probe loop does this each second)
    await img.write(2 * 65536, pattern(65536, 6), { fua: true }); // recognises its own landed attempt
    const reader = await g2.service.open("vm");
    expect(await reader.read(65536, 2 * 65536)).toEqual(
      new Uint8Array([...pattern(65536, 5), ...pattern(65536, 6)]),
    );
    await g1.core.close();
    await g2.core.close();
  });

  test("another gateway's change between two commits (a snapshot, a heal's mark) does not block the owner", async () => {
    const { g1, g2, img } = await pair();
    await img.write(0, pattern(65536, 7), { fua: true });
    await g2.service.snapshot("vm", "from-g2");
    await img.write(0, pattern(65536, 8), { fua: true });
    const head = await g2.service.info("vm");
    expect(Object.keys(head.snapshots)).toEqual(["from-g2"]);
    expect(await (await g2.service.open("vm@from-g2")).read(0, 65536)).toEqual(pattern(65536, 7));
    expect(await (await g2.service.open("vm")).read(0, 65536)).toEqual(pattern(65536, 8));
    await g1.core.close();
    await g2.core.close();
  });
});

describe("replica state per placement epoch", () => {
  test("a commit placed under another epoch advances no store; a tail breaks on it; a heal marks under its own", async () => {
    const w = writer();
    const { head } = await w.change(
      "x",
      createHead({
        name: "x",
        size: MiB,
        chunkSize: 65536,
        synced: { a: { identity: "id-a", placement: 0 }, b: { identity: "id-b", placement: 0 } },
        gcObserved: 0,
      }),
    );
    const h = head as Head;
    await w.change("x", confirmHead("x", h.incarnation, 0));
    const { head: owned } = await w.change("x", takeOver("x", h.incarnation, "gw-1"));
    let base = ZERO_HASH as string;
    const commit = (root: string, epoch: number, placementEpoch: number) => {
      const from = base;
      base = root.repeat(64);
      return commitContent({
        name: "x",
        incarnation: h.incarnation,
        epoch,
        owner: "gw-1",
        base: { root: from, size: MiB },
        ownAttempts: new Set(),
        root: root.repeat(64),
        size: MiB,
        put: {
          complete: new Map([
            ["a", "id-a"],
            ["b", "id-b"],
          ]),
          enoughCopies: () => true,
          placementEpoch,
        },
        leaving: new Set(),
        minReplicas: 1,
        gcEpoch: 0,
      });
    };
    // Same epoch: both advance.
    const { head: c1 } = await w.change("x", commit("1", (owned as Head).epoch, 0));
    expect((c1 as Head).synced.a).toMatchObject({ generation: c1!.generation, placement: 0 });
    // b's heal under placement 1 starts a tail there; a commit still placed under 0 breaks it
    // and advances nobody (what is placed on a store changed with the epoch).
    const from = (await w.change("x", startTail("x", h.incarnation, "b", { identity: "id-b", placement: 1 })))
      .result!;
    expect(from).toBe(c1!.generation + 1);
    const { head: c2 } = await w.change("x", commit("2", (c1 as Head).epoch, 0));
    expect((c2 as Head).synced.a!.generation).toBe(c2!.generation); // a: placement 0, as the commit
    expect((c2 as Head).tails.b).toBeUndefined();
    expect(
      (
        await w.change(
          "x",
          markSynced("x", h.incarnation, "b", { identity: "id-b", placement: 1 }, c2!.generation),
        )
      ).result,
    ).toBe(false);
    // A commit under placement 1 advances no store recorded under 0.
    const { head: c3 } = await w.change("x", commit("3", (c2 as Head).epoch, 1));
    expect((c3 as Head).synced.a!.generation).toBe(c2!.generation); // not advanced to c3
    // A heal under placement 1 with its tail intact records the store under placement 1.
    const from2 = (
      await w.change("x", startTail("x", h.incarnation, "a", { identity: "id-a", placement: 1 }))
    ).result!;
    const { result, head: marked } = await w.change(
      "x",
      markSynced("x", h.incarnation, "a", { identity: "id-a", placement: 1 }, from2),
    );
    expect(result).toBe(true);
    expect((marked as Head).synced.a).toMatchObject({ generation: marked!.generation, placement: 1 });
    // From there, commits under placement 1 advance it.
    const { head: c4 } = await w.change("x", commit("4", (marked as Head).epoch, 1));
    expect((c4 as Head).synced.a).toMatchObject({ generation: c4!.generation, placement: 1 });
    expect((c4 as Head).synced.b!.generation).toBeLessThan(c4!.generation); // still under 0
  });
});
