/**
 * Collecting register keys (QuorumRegister.collect): a key whose value nothing can tell
 * from no value (an image's tombstone) is removed from every member, and no proposal made
 * before that (a stale promise, a stale floor) can ever bring an older value back.
 */
import { describe, expect, test } from "bun:test";
import type { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { FLOOR_REF } from "../../../gateway/register/acceptor-state.ts";
import { QuorumRegister } from "../../../gateway/register/quorum-register.ts";
import { keep, RegisterUnavailableError, write } from "../../../gateway/register/register.ts";
import { seededRandom } from "../../support/faulty-store.ts";
import { cluster } from "./_register-fixture.ts";

/** A live value (an incarnation and a counter) or its tombstone. */
type Value = { inc: string; n: number } | { dead: string };
const isDead = (v: unknown): boolean => v === null || (v as { dead?: string }).dead !== undefined;
/** The change a stale owner makes: bump a live value, refuse (keep) otherwise. */
const bump = (cur: unknown) => {
  const v = cur as Value | null;
  return v && !("dead" in v) ? write({ inc: v.inc, n: v.n + 1 }, v.inc) : keep(null);
};

/** The accepted value in a member's stored acceptor state, or null. */
function acceptedOn(entry: { value: string } | null): unknown {
  return entry ? (JSON.parse(entry.value) as { v: unknown }).v : null;
}

describe("QuorumRegister.collect", () => {
  test("a collected key is gone from every member, reads as null, and can be written again", async () => {
    const { stores, register } = cluster();
    const a = register("gw-a");
    await a.update("head.x", () => write({ inc: "one", n: 0 }, null));
    await a.update("head.x", () => write({ dead: "one" }, null));
    await a.update("head.y", () => write({ inc: "y", n: 0 }, null));
    // A live value is never collected.
    expect(await a.collect("head.y", isDead)).toBe(false);
    expect(await a.collect("head.x", isDead)).toBe(true);
    for (const s of stores) {
      expect(await s.getRef("head.x")).toBeNull();
      expect(await s.getRef(FLOOR_REF)).not.toBeNull();
    }
    const b = register("gw-b");
    expect(await b.read("head.x")).toBeNull();
    expect([...(await b.scan(""))].map(([k]) => k)).toEqual(["head.y"]);
    await b.update("head.x", (cur) => (cur === null ? write({ inc: "two", n: 0 }, null) : keep(null)));
    expect(await a.read("head.x")).toEqual({ inc: "two", n: 0 });
  });

  test("a stale owner's promise and floor cannot land on the collected key: its old value never comes back", async () => {
    const { stores, register } = cluster();
    const owner = register("gw-owner");
    // The owner created the key (it read every member's floor: none yet) and holds a promise
    // for its next ballot on every member (the one-round-trip path of its next commit).
    await owner.update("head.x", (cur) => (cur === null ? write({ inc: "one", n: 0 }, null) : keep(null)));
    expect(await owner.update("head.x", bump)).toBe("one");
    const other = register("gw-other");
    await other.update("head.x", () => write({ dead: "one" }, null));
    expect(await other.collect("head.x", isDead)).toBe(true);
    // The owner commits from what it last wrote: every member refuses, by its floor (the key
    // is gone) and by the floor's guard (the owner's cached floor is older), so the change
    // runs again on the current value (none) and refuses.
    expect(await owner.update("head.x", bump)).toBeNull();
    expect(await register("gw-reader").read("head.x")).toBeNull();
    // What is left is at most the promise of that last try, never an accepted value.
    for (const s of stores) expect(acceptedOn(await s.getRef("head.x"))).toBeNull();
  });

  test("a member down: nothing is collected; a collection stopped half way leaves the key deleted", async () => {
    const { stores, register } = cluster();
    const owner = register("gw-owner", 1000);
    await owner.update("head.x", () => write({ inc: "one", n: 0 }, null));
    expect(await owner.update("head.x", bump)).toBe("one");
    const gc = register("gw-gc", 1000);
    await gc.update("head.x", () => write({ dead: "one" }, null));
    stores[2]!.faults.down = true;
    await expect(gc.collect("head.x", isDead)).rejects.toBeInstanceOf(RegisterUnavailableError);
    for (const s of stores.slice(0, 2)) expect(await s.getRef("head.x")).not.toBeNull();
    stores[2]!.faults.down = false;
    // The last member fails to delete: two members have dropped the key, one holds the tombstone.
    const inner = stores[2]!.deleteRef.bind(stores[2]!);
    stores[2]!.deleteRef = async () => {
      throw new Error("injected: delete failed");
    };
    await expect(gc.collect("head.x", isDead)).rejects.toThrow("injected");
    expect(await stores[0]!.getRef("head.x")).toBeNull();
    expect(await stores[2]!.getRef("head.x")).not.toBeNull();
    // A read meeting the tombstone on s2 may write it back: either way the image stays deleted.
    expect(isDead(await register("gw-reader").read("head.x"))).toBe(true);
    expect(await owner.update("head.x", bump)).toBeNull();
    stores[2]!.deleteRef = inner;
    expect(await gc.collect("head.x", isDead)).toBe(true);
    for (const s of stores) expect(await s.getRef("head.x")).toBeNull();
  });

  test("a wiped member rejoins with the highest floor: a stale promise is refused there too", async () => {
    const { stores, members, register } = cluster();
    for (const s of stores) s.expectIdentity((await s.probe()).identity);
    const owner = register("gw-owner", 1000);
    await owner.update("head.x", () => write({ inc: "one", n: 0 }, null));
    expect(await owner.update("head.x", bump)).toBe("one");
    const gc = register("gw-gc", 1000);
    await gc.update("head.x", () => write({ dead: "one" }, null));
    expect(await gc.collect("head.x", isDead)).toBe(true);
    (stores[0]!.inner as MemoryStore).wipe();
    const r = new QuorumRegister(members, { proposer: "gw-r", deadlineMs: 1000 });
    r.exclude("s0");
    stores[0]!.expectIdentity((await stores[0]!.probe()).identity);
    await r.rejoin("s0");
    expect((await stores[0]!.getRef(FLOOR_REF))?.value).toBe((await stores[1]!.getRef(FLOOR_REF))?.value);
    // With s2 gone, s0 and s1 are the majority: neither takes the owner's stale commit.
    stores[2]!.faults.down = true;
    expect(await owner.update("head.x", bump)).toBeNull();
    expect(await r.read("head.x")).toBeNull();
  });

  test("no deleted incarnation comes back under lost replies, failures and collections: a seeded history", async () => {
    // Acknowledged deletes are facts: a value of an incarnation whose delete was acknowledged
    // must never be read, nor written by a bump, in an operation that began after.
    let collected = 0;
    for (const seed of [3, 41, 2026]) {
      const { stores, register } = cluster(3, seed);
      for (const s of stores) Object.assign(s.faults, { failBefore: 0.01, failAfter: 0.01, maxDelayMs: 2 });
      const random = seededRandom(seed);
      const deletedAt = new Map<string, number>();
      let clock = 0;
      const now = () => ++clock;
      const violations: string[] = [];
      const observe = (inc: string, start: number, how: string) => {
        const d = deletedAt.get(inc);
        if (d !== undefined && d < start)
          violations.push(`${how} saw ${inc}, deleted at ${d}, op began ${start}`);
      };
      const proposers = ["a", "b", "c"].map((p) => register(`gw-${p}`, 20_000));
      await Promise.all(
        proposers.map(async (r, i) => {
          // Roles make the dangerous pattern common: an owner bumping from its promise, a
          // deleter, a collector between the delete and the owner's next bump.
          const weights = [
            [0, 0.7, 0.7, 0.7], // owner: bump, else read
            [0.15, 0.15, 0.45, 0.45], // deleter: create, delete, else read
            [0.02, 0.02, 0.02, 0.85], // collector: create rarely, collect, else read
          ][i]!;
          for (let k = 0; k < 60; k++) {
            if (i === 0 && random() < 0.5) await new Promise((r) => setTimeout(r, random() * 30));
            const start = now();
            const roll = random();
            try {
              if (roll < weights[0]!) {
                const inc = `${i}.${k}`;
                await r.update("h", (cur) => (isDead(cur) ? write({ inc, n: 0 }, null) : keep(null)));
              } else if (roll < weights[1]!) {
                const inc = await r.update("h", bump);
                if (inc !== null) observe(inc, start, "a bump");
              } else if (roll < weights[2]!) {
                const inc = await r.update("h", (cur) => {
                  const v = cur as Value | null;
                  return v && !("dead" in v) ? write({ dead: v.inc }, v.inc) : keep(null);
                });
                if (inc !== null) deletedAt.set(inc, now());
              } else if (roll < weights[3]!) {
                if (await r.collect("h", isDead)) collected++;
              } else {
                const v = (await r.read("h")) as Value | null;
                if (v && !("dead" in v)) observe(v.inc, start, "a read");
              }
            } catch (e) {
              if (!(e instanceof RegisterUnavailableError) && !String(e).includes("injected")) throw e;
            }
          }
        }),
      );
      expect(violations).toEqual([]);
      for (const s of stores) Object.assign(s.faults, { failBefore: 0, failAfter: 0, maxDelayMs: 0 });
      // However the history went (its collections depend on timing): end with a delete and a
      // collection, then every proposer commits from whatever promise the history left it.
      const last = await proposers[1]!.update("h", (cur) => {
        const v = cur as Value | null;
        return v && !("dead" in v) ? write({ dead: v.inc }, v.inc) : keep(null);
      });
      if (last !== null) deletedAt.set(last, now());
      expect(await proposers[2]!.collect("h", isDead)).toBe(true);
      collected++;
      for (const r of proposers) expect(await r.update("h", bump)).toBeNull();
      expect(await register("gw-fresh").read("h")).toBeNull();
      expect(violations).toEqual([]);
      for (const s of stores) expect(await s.getRef("h").then(acceptedOn)).toBeNull();
    }
    // Every seed ended with a collection; most also collected during the history.
    expect(collected).toBeGreaterThanOrEqual(3);
  }, 60_000);
});
