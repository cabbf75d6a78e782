import { describe, expect, test } from "bun:test";
import { StoreIdentityError } from "../../../chunkstore/errors.ts";
import type { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { QuorumRegister } from "../../../gateway/register/quorum-register.ts";
import { keep, RegisterUnavailableError, write } from "../../../gateway/register/register.ts";
import { seededRandom } from "../../support/faulty-store.ts";
import { cluster } from "./_register-fixture.ts";

type Log = { ops: string[] };
const append = (op: string) => (cur: unknown) => {
  const log = (cur as Log | null) ?? { ops: [] };
  return write({ ops: [...log.ops, op] }, log.ops.length + 1);
};

describe("QuorumRegister", () => {
  test("a key never written reads as null; an update is seen by another proposer's read", async () => {
    const { register } = cluster();
    const a = register("gw-a");
    const b = register("gw-b");
    expect(await a.read("k")).toBeNull();
    expect(await a.update("k", () => write({ n: 1 }, "ok"))).toBe("ok");
    expect(await b.read("k")).toEqual({ n: 1 });
    await b.update("k", (cur) => write({ n: (cur as { n: number }).n + 1 }, null));
    expect(await a.read("k")).toEqual({ n: 2 });
    expect(await a.update("k", (cur) => write({ n: (cur as { n: number }).n * 10 }, null))).toBeNull();
    expect(await b.read("k")).toEqual({ n: 20 });
  });

  test("keep leaves the value and returns the change's result", async () => {
    const { register } = cluster();
    const a = register("gw-a");
    await a.update("k", () => write("v1", null));
    expect(await a.update("k", (cur) => keep(`saw ${cur}`))).toBe("saw v1");
    expect(await register("gw-b").update("k", (cur) => keep(`saw ${cur}`))).toBe("saw v1");
    expect(await a.read("k")).toBe("v1");
  });

  test("a change that throws aborts the update and writes nothing", async () => {
    const { register } = cluster();
    const a = register("gw-a");
    await a.update("k", () => write(1, null));
    await expect(
      a.update("k", () => {
        throw new RangeError("no");
      }),
    ).rejects.toBeInstanceOf(RangeError);
    expect(await register("gw-b").read("k")).toBe(1);
  });

  test("an owner updating the same key again pays one compare-and-set per member (phase 1 skipped)", async () => {
    const { stores, register } = cluster();
    let cas = 0;
    for (const s of stores) {
      const inner = s.casRef.bind(s);
      s.casRef = (n, e, v) => {
        cas++;
        return inner(n, e, v);
      };
    }
    const a = register("gw-a");
    await a.update("k", () => write(0, null));
    cas = 0;
    for (let i = 1; i <= 5; i++) await a.update("k", () => write(i, null));
    await new Promise((r) => setTimeout(r, 20)); // stragglers past the first majority
    expect(cas).toBe(15);
    // Another proposer's update takes the key over (its higher promise fails our reservation) ...
    await register("gw-b").update("k", (cur) => write((cur as number) + 100, null));
    // ... and ours then runs both phases again, against the value it did not write.
    await a.update("k", (cur) => write((cur as number) + 1, null));
    expect(await a.read("k")).toBe(106);
  });

  test("a refusal is never decided from a stale value: after another proposer's write, the change sees it", async () => {
    // Found by the delete-and-re-create test: A deleted (and held the next ballot), B
    // re-created, and A's next change refused as "deleted" without asking anyone.
    const { register } = cluster();
    const a = register("gw-a");
    const b = register("gw-b");
    await a.update("k", () => write("deleted", null));
    await b.update("k", () => write("live", null));
    const seen = await a.update("k", (cur) => {
      if (cur === "deleted") throw new Error("refused on a stale value");
      return write(`${cur}+a`, cur);
    });
    expect(seen).toBe("live");
    expect(await b.read("k")).toBe("live+a");
  });

  test("concurrent read-modify-writes from four proposers lose none", async () => {
    const { register } = cluster();
    const proposers = ["a", "b", "c", "d"].map((p) => register(`gw-${p}`, 20_000));
    await Promise.all(
      proposers.map(async (r, i) => {
        for (let k = 0; k < 15; k++) await r.update("counter", append(`${i}.${k}`));
      }),
    );
    const log = (await proposers[0]!.read("counter")) as Log;
    expect(log.ops.length).toBe(60);
    expect(new Set(log.ops).size).toBe(60);
  });

  test("linearizable under lost replies, failures and delays: a seeded history check", async () => {
    // Every acknowledged update appears exactly once, in real-time order; no update (even one
    // reported failed) appears twice; every read returns a prefix of the final history that
    // contains every update acknowledged before the read began.
    for (const seed of [7, 99, 1234]) {
      const { stores, register } = cluster(3, seed);
      for (const s of stores) Object.assign(s.faults, { failBefore: 0.08, failAfter: 0.08, maxDelayMs: 3 });
      const random = seededRandom(seed);
      const acked: { op: string; start: number; end: number }[] = [];
      const reads: { start: number; ops: string[] }[] = [];
      const proposers = ["a", "b", "c"].map((p) => register(`gw-${p}`, 20_000));
      let clock = 0;
      const now = () => ++clock; // a logical clock: ordering is what matters
      await Promise.all(
        proposers.map(async (r, i) => {
          for (let k = 0; k < 25; k++) {
            const start = now();
            if (random() < 0.3) {
              const v = (await r.read("h").catch(() => null)) as Log | null;
              if (v) reads.push({ start, ops: v.ops });
              continue;
            }
            const op = `${i}.${k}`;
            try {
              await r.update("h", append(op));
              acked.push({ op, start, end: now() });
            } catch (e) {
              expect(e).toBeInstanceOf(RegisterUnavailableError);
            }
          }
        }),
      );
      for (const s of stores) Object.assign(s.faults, { failBefore: 0, failAfter: 0, maxDelayMs: 0 });
      const final = ((await proposers[0]!.read("h")) as Log).ops;
      expect(new Set(final).size).toBe(final.length);
      const at = new Map(final.map((op, i) => [op, i]));
      for (const a of acked) expect(at.has(a.op)).toBe(true);
      for (const a of acked)
        for (const b of acked) if (a.end < b.start) expect(at.get(a.op)!).toBeLessThan(at.get(b.op)!);
      for (const rd of reads) {
        expect(final.slice(0, rd.ops.length)).toEqual(rd.ops);
        for (const a of acked) if (a.end < rd.start) expect(rd.ops).toContain(a.op);
      }
      expect(acked.length).toBeGreaterThan(20);
      expect(stores.reduce((n, s) => n + s.lostReplies, 0)).toBeGreaterThan(0);
    }
  }, 60_000);

  test("with one member down updates go on; with two down they fail as unavailable, and nothing is lost", async () => {
    const { stores, register } = cluster();
    const a = register("gw-a", 1000);
    await a.update("k", () => write(1, null));
    stores[0]!.faults.down = true;
    await a.update("k", () => write(2, null));
    expect(await register("gw-b").read("k")).toBe(2);
    stores[1]!.faults.down = true;
    await expect(a.update("k", () => write(3, null))).rejects.toBeInstanceOf(RegisterUnavailableError);
    await expect(register("gw-c", 1000).read("k")).rejects.toBeInstanceOf(RegisterUnavailableError);
    stores[0]!.faults.down = false;
    stores[1]!.faults.down = false;
    // The failed write may or may not have landed on the one member that answered; either
    // answer is linearizable, and the register agrees with itself from then on.
    const v = await register("gw-d").read("k");
    expect([2, 3]).toContain(v as number);
    expect(await register("gw-e").read("k")).toBe(v);
  });

  test("a hung member does not hold up updates or reads", async () => {
    const { stores, register } = cluster();
    const a = register("gw-a");
    await a.update("k", () => write(1, null));
    stores[2]!.faults.hung = true;
    const t = performance.now();
    for (let i = 2; i < 6; i++) await a.update("k", () => write(i, null));
    expect(await register("gw-b").read("k")).toBe(5);
    expect(performance.now() - t).toBeLessThan(1000);
    stores[2]!.resume();
  });

  test("a member that lost its state (a new identity) never votes", async () => {
    // Acceptor amnesia breaks Paxos; the identity check keeps a wiped member out.
    const { stores, register } = cluster();
    for (const s of stores) s.expectIdentity((await s.probe()).identity);
    const a = register("gw-a", 1000);
    await a.update("k", () => write("chosen", null));
    (stores[0]!.inner as MemoryStore).wipe();
    await expect(stores[0]!.getRef("k")).rejects.toBeInstanceOf(StoreIdentityError);
    // Two members remain: still a majority of three, and they hold the chosen value.
    expect(await register("gw-b").read("k")).toBe("chosen");
    stores[1]!.faults.down = true;
    // The wiped member and one other would be a "majority" that forgot the value: refused.
    await expect(register("gw-c", 1000).read("k")).rejects.toBeInstanceOf(RegisterUnavailableError);
    await expect(register("gw-c", 1000).update("k", () => write("other", null))).rejects.toBeInstanceOf(
      RegisterUnavailableError,
    );
    stores[1]!.faults.down = false;
    expect(await register("gw-d").read("k")).toBe("chosen");
  });

  test("scan returns each key's chosen value, including keys written by another proposer", async () => {
    const { stores, register } = cluster();
    const a = register("gw-a");
    const b = register("gw-b");
    await a.update("head.x", () => write({ x: 1 }, null));
    await b.update("head.y", () => write({ y: 1 }, null));
    await a.update("lease.z", () => write({ z: 1 }, null));
    stores[1]!.faults.down = true;
    await b.update("head.x", () => write({ x: 2 }, null));
    stores[1]!.faults.down = false;
    const seen = await register("gw-c").scan("head.");
    expect([...seen]).toEqual([
      ["head.x", { x: 2 }],
      ["head.y", { y: 1 }],
    ]);
  });

  test("a wiped member rejoins: every key is rewritten on all members, then it votes again", async () => {
    const { stores, members, register } = cluster();
    for (const s of stores) s.expectIdentity((await s.probe()).identity);
    const a = register("gw-a", 1000);
    for (const k of ["head.x", "head.y", "cluster"]) await a.update(k, () => write(`${k}-v1`, null));
    await a.update("head.x", () => write("head.x-v2", null));
    (stores[0]!.inner as MemoryStore).wipe();
    const r = new QuorumRegister(members, { proposer: "gw-r", deadlineMs: 1000 });
    r.exclude("s0");
    stores[0]!.expectIdentity((await stores[0]!.probe()).identity);
    // With another member down, a rejoin cannot be safe: it must fail and change nothing.
    stores[2]!.faults.down = true;
    await expect(r.rejoin("s0")).rejects.toBeInstanceOf(RegisterUnavailableError);
    expect(r.excluded.has("s0")).toBe(true);
    stores[2]!.faults.down = false;
    expect(await r.rejoin("s0")).toBe(3);
    expect(r.excluded.size).toBe(0);
    // The rejoined member and one other now form a majority that remembers everything.
    stores[2]!.faults.down = true;
    expect(await r.read("head.x")).toBe("head.x-v2");
    expect(await r.read("head.y")).toBe("head.y-v1");
    await r.update("head.y", () => write("head.y-v2", null));
    stores[2]!.faults.down = false;
    stores[1]!.faults.down = true;
    expect(await register("gw-z", 1000).read("head.y")).toBe("head.y-v2");
  });
});
