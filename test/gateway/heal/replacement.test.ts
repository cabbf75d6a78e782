/**
 * Bringing back a replaced store (gateway/heal/replacement.ts) when another gateway gets
 * there first: soak seed 754 ended with a register stuck on one gateway, which kept
 * bringing back an identity the store no longer had, while the record already named the
 * one it answered with (recorded by the other gateway), so its health saw nothing new.
 */
import { expect, test } from "bun:test";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { Replacements } from "../../../gateway/heal/replacement.ts";
import { QuorumRegister } from "../../../gateway/register/quorum-register.ts";
import { write } from "../../../gateway/register/register.ts";
import { Cluster } from "../../../gateway/replication/cluster.ts";
import { CLUSTER_KEY, newClusterRecord } from "../../../gateway/replication/cluster-record.ts";
import type { StoreMember } from "../../../gateway/replication/store-member.ts";
import { FaultyStore } from "../../support/faulty-store.ts";
import { waitFor } from "../../support/test-cluster.ts";

test("a gateway bringing back an older identity of a store wiped again takes the one the store answers with, once another gateway recorded it", async () => {
  const memories = ["a", "b", "w"].map((id) => new MemoryStore(id));
  const stores = memories.map((m, i) => new FaultyStore(m, i + 1));
  const members: StoreMember[] = ["a", "b", "w"].map((id, i) => ({
    id,
    url: `memory:${id}`,
    store: stores[i]!,
    chunks: id !== "w",
    refs: true,
  }));
  const identity = async (i: number) => (await memories[i]!.probe()).identity;
  const record = newClusterRecord(
    await Promise.all(
      ["a", "b", "w"].map(async (id, i) => ({
        id,
        identity: await identity(i),
        chunks: id !== "w",
        refs: true,
      })),
    ),
  );
  const register = new QuorumRegister(members, { proposer: "g0", deadlineMs: 500 });
  await register.update(CLUSTER_KEY, () => write(record, null));
  const cluster = new Cluster(register, members, record);
  for (const [i, m] of members.entries()) m.store.expectIdentity(await identity(i));
  const replacements = new Replacements(members, register, cluster, () => {});
  try {
    // a is wiped; g0 starts bringing it back, but its rejoin cannot finish (w does not answer).
    memories[0]!.wipe();
    const first = await identity(0);
    stores[2]!.faults.down = true;
    replacements.handle("a", first);
    await waitFor("a excluded on g0", () => register.excluded.has("a"), 5000);
    // a is wiped again, and the other gateway (its own register over the same stores) brings
    // that one back: rejoin, then the record names it. g0's health sees a answer as recorded.
    memories[0]!.wipe();
    const second = await identity(0);
    const otherMembers = ["a", "b", "w"].map((id, i) => ({ id, store: memories[i]! }));
    memories[0]!.expectIdentity(second);
    stores[2]!.faults.down = false;
    const other = new QuorumRegister(otherMembers, { proposer: "g1" });
    other.exclude("a");
    await other.rejoin("a");
    await new Cluster(other, [], record).recordIdentity("a", second, record.stores.a!.identity);
    await cluster.fresh();
    expect(cluster.identity("a")).toBe(second);
    // g0 takes a back into its quorums, expecting the identity it answers with: its
    // register works through a and b while w is down (stuck on the old identity, it did not).
    stores[2]!.faults.down = true;
    await waitFor(
      "g0 reads through a and b",
      async () => !register.excluded.has("a") && (await register.read(CLUSTER_KEY)) !== null,
      10_000,
    );
  } finally {
    replacements.stop();
  }
}, 30_000);
