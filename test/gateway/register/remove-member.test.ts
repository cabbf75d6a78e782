/**
 * Removing a register member for good (QuorumRegister.removeMember): the removed member is
 * fenced so that no proposer, however stale, counts its vote again, and every key is
 * rewritten on all the others so that a later removal is safe too. Each proposer here
 * reaches the members through its own fault injectors, so a test can cut one proposer off
 * from some members (a partition) while the other reaches them.
 */
import { describe, expect, test } from "bun:test";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { isFencedText } from "../../../gateway/register/acceptor-state.ts";
import { QuorumRegister } from "../../../gateway/register/quorum-register.ts";
import { RegisterUnavailableError, write } from "../../../gateway/register/register.ts";
import { FaultyStore, seededRandom } from "../../support/faulty-store.ts";

/** `n` shared in-memory members; each proposer gets its own fault injectors in front of them. */
function shared(n: number, seed = 1) {
  const memories = Array.from({ length: n }, (_, i) => new MemoryStore(`m${i}`));
  let proposers = 0;
  return (proposer: string) => {
    const base = seed * 100 + 10 * proposers++;
    const stores = memories.map((m, i) => new FaultyStore(m, base + i));
    const register = new QuorumRegister(
      stores.map((store, i) => ({ id: `s${i}`, store })),
      { proposer, deadlineMs: 1500 },
    );
    /** Cuts this proposer off from the members named (or reconnects it). */
    const cut = (ids: string[], down = true) => {
      for (const id of ids) stores[Number(id.slice(1))]!.faults.down = down;
    };
    return { register, stores, cut, memories };
  };
}

const increment = (cur: unknown) => {
  const n = ((cur as number | null) ?? 0) + 1;
  return write(n, n);
};

describe("QuorumRegister.removeMember", () => {
  test("the removed member is fenced: every ref of it decodes as nothing, and the others hold every key", async () => {
    const proposer = shared(3);
    const a = proposer("gw-a");
    for (const k of ["head.x", "head.y", "cluster"]) await a.register.update(k, increment);
    const { rewritten } = await a.register.removeMember("s1");
    expect(rewritten).toBe(3);
    expect(a.register.members.map((m) => m.id)).toEqual(["s0", "s2"]);
    const refs = (await a.memories[1]!.scanRefs("")).refs;
    expect(refs.map((r) => r.name)).toEqual(["cluster", "head.x", "head.y", "register-floor"]);
    for (const r of refs) expect(isFencedText(r.value)).toBe(true);
    // A proposer that still counts s1 (it was not told) reads and writes through the others.
    const stale = proposer("gw-stale");
    expect(await stale.register.read("head.x")).toBe(1);
    expect(await stale.register.update("head.x", increment)).toBe(2);
    expect(await a.register.read("head.x")).toBe(2);
    // s1 never answers it: cut off from s0, the stale proposer has no majority.
    stale.cut(["s0"]);
    await expect(stale.register.update("head.x", increment)).rejects.toBeInstanceOf(RegisterUnavailableError);
    // A failed update is in doubt (its accept may have reached s2 alone): whichever, it is one.
    const after = await a.register.read("head.x");
    expect([2, 3]).toContain(after as number);
    expect(await proposer("gw-c").register.read("head.x")).toBe(after);
  });

  test("a stale proposer cut off with the removed members cannot win against the current members: no split brain", async () => {
    // Five members; s0 and s1 are removed one after the other. A stale proposer that reaches
    // only s0, s1 and s2 holds a majority of the five it still knows, and a current one that
    // reaches only s3 and s4 holds a majority of the three that remain: without the fence
    // both would write, and two values would be chosen for one key.
    const proposer = shared(5);
    const a = proposer("gw-a");
    const stale = proposer("gw-stale");
    await a.register.update("head.x", increment);
    expect(await stale.register.update("head.x", increment)).toBe(2); // it holds a promise too
    await a.register.removeMember("s0");
    await a.register.removeMember("s1");
    expect(a.register.majority).toBe(2);
    stale.cut(["s3", "s4"]);
    a.cut(["s2"]);
    expect(await a.register.update("head.x", increment)).toBe(3);
    await expect(stale.register.update("head.x", increment)).rejects.toBeInstanceOf(RegisterUnavailableError);
    await expect(stale.register.read("head.x")).rejects.toBeInstanceOf(RegisterUnavailableError);
    stale.cut(["s3", "s4"], false);
    a.cut(["s2"], false);
    expect(await stale.register.read("head.x")).toBe(3);
  });

  test("a value chosen before the removals by members that are gone is still read by the last ones", async () => {
    // Chosen on s0, s1, s2 only; after s0 and s1 leave, a quorum of the remaining three
    // (s3 and s4) must still see it: the rewrite of every key on every remaining member.
    const proposer = shared(5);
    const early = proposer("gw-early");
    early.cut(["s3", "s4"]);
    await early.register.update("head.old", () => write("chosen-early", null));
    const a = proposer("gw-a");
    await a.register.removeMember("s0");
    await a.register.removeMember("s1");
    a.cut(["s2"]);
    expect(await a.register.read("head.old")).toBe("chosen-early");
  });

  test("no increment is lost or counted twice while two members leave under lost replies and stale proposers: a seeded history", async () => {
    // Four proposers increment one counter; one of them removes s0, then s1, meanwhile. Two
    // are never told (they keep all five members). Every acknowledged increment returns the
    // value it wrote: two equal answers would be a split brain; the final value must lie
    // between the acknowledged increments and all attempted ones (a failed one is in doubt).
    // It fails with a quorum one member short; a missing fence or rewrite needs a partition
    // to show, which the two tests above make.
    for (const seed of [5, 77, 2026]) {
      const proposer = shared(5, seed);
      const ps = ["remover", "told", "stale-1", "stale-2"].map((p) => proposer(`gw-${p}`));
      for (const p of ps)
        for (const st of p.stores)
          Object.assign(st.faults, { failBefore: 0.02, failAfter: 0.02, maxDelayMs: 2 });
      const random = seededRandom(seed);
      const answers: number[] = [];
      let attempted = 0;
      let removed = 0;
      await Promise.all(
        ps.map(async (p, i) => {
          for (let k = 0; k < 40; k++) {
            if (i === 0 && (k === 10 || k === 25)) {
              const member = k === 10 ? "s0" : "s1";
              for (let tries = 0; tries < 20; tries++) {
                try {
                  await p.register.removeMember(member);
                  removed++;
                  // The other current gateway follows the record (no I/O of its own).
                  ps[1]!.register.forgetMember(member);
                  break;
                } catch (e) {
                  if (!(e instanceof RegisterUnavailableError) && !String(e).includes("injected")) throw e;
                }
              }
            }
            if (random() < 0.3) await new Promise((r) => setTimeout(r, random() * 5));
            attempted++;
            try {
              answers.push((await p.register.update("counter", increment)) as number);
            } catch (e) {
              if (!(e instanceof RegisterUnavailableError) && !String(e).includes("injected")) throw e;
            }
          }
        }),
      );
      expect(removed).toBe(2);
      expect(new Set(answers).size).toBe(answers.length);
      for (const p of ps)
        for (const st of p.stores) Object.assign(st.faults, { failBefore: 0, failAfter: 0, maxDelayMs: 0 });
      const final = (await ps[0]!.register.read("counter")) as number;
      expect(final).toBeGreaterThanOrEqual(answers.length);
      expect(final).toBeLessThanOrEqual(attempted);
      expect(final).toBeGreaterThanOrEqual(Math.max(...answers));
      // The stale ones agree with the current ones.
      expect(await ps[3]!.register.read("counter")).toBe(final);
      expect(answers.length).toBeGreaterThan(attempted / 2);
    }
  }, 60_000);

  test("refused while fewer than three members or one not answering; stopped half way it leaves a working register and a second call finishes", async () => {
    const proposer = shared(3);
    const a = proposer("gw-a");
    await a.register.update("head.x", increment);
    expect(a.register.removalBlocker("s9")).toContain("not a register member");
    // A member that does not answer: s1 is fenced, but the keys cannot be rewritten on s2.
    a.cut(["s2"]);
    await expect(a.register.removeMember("s1")).rejects.toBeInstanceOf(RegisterUnavailableError);
    expect(a.register.members).toHaveLength(3);
    for (const r of (await a.memories[1]!.scanRefs("")).refs) expect(isFencedText(r.value)).toBe(true);
    a.cut(["s2"], false);
    // Half way: a member that never answers, nothing worse. Writes go on through s0 and s2.
    expect(await a.register.update("head.x", increment)).toBe(2);
    expect(await a.register.removeMember("s1")).toEqual({ rewritten: 1 });
    expect(await a.register.update("head.x", increment)).toBe(3);
    // Two members left: at least two must remain, so neither can go.
    expect(a.register.removalBlocker("s0")).toContain("at least two must remain");
    await expect(a.register.removeMember("s0")).rejects.toBeInstanceOf(RangeError);
    // Another gateway told by the cluster record drops the member without any I/O.
    const b = proposer("gw-b");
    b.register.forgetMember("s1");
    expect(b.register.members.map((m) => m.id)).toEqual(["s0", "s2"]);
    expect(await b.register.read("head.x")).toBe(3);
  });
});
