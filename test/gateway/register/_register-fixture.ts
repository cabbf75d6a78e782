/** A register over `n` in-memory members behind fault injection, for the register tests. */
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { QuorumRegister } from "../../../gateway/register/quorum-register.ts";
import { FaultyStore } from "../../support/faulty-store.ts";

/** The members (with live `faults`) and a factory for proposers over them. */
export function cluster(n = 3, seed = 1) {
  const stores = Array.from({ length: n }, (_, i) => new FaultyStore(new MemoryStore(`m${i}`), seed + i));
  const members = stores.map((store, i) => ({ id: `s${i}`, store }));
  const register = (proposer: string, deadlineMs = 3000) =>
    new QuorumRegister(members, { proposer, deadlineMs });
  return { stores, members, register };
}
