/** The cluster record as gateways change it (gateway/replication/cluster.ts). */
import { describe, expect, test } from "bun:test";
import { newIdentity } from "../../../chunkstore/identity.ts";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { QuorumRegister } from "../../../gateway/register/quorum-register.ts";
import { write } from "../../../gateway/register/register.ts";
import { Cluster } from "../../../gateway/replication/cluster.ts";
import { CLUSTER_KEY, newClusterRecord } from "../../../gateway/replication/cluster-record.ts";

describe("Cluster", () => {
  test("a late gateway never records an older identity of a store wiped twice back over the newer one", async () => {
    const id = new Map<string, string>();
    const ident = (name: string) => id.get(name) ?? id.set(name, newIdentity()).get(name)!;
    const members = ["a", "b", "w"].map((id) => ({ id, store: new MemoryStore(id) }));
    const register = (proposer: string) => new QuorumRegister(members, { proposer });
    const record = newClusterRecord(
      ["a", "b", "w"].map((id) => ({ id, identity: ident(`${id}-0`), chunks: id !== "w", refs: true })),
    );
    await register("boot").update(CLUSTER_KEY, () => write(record, null));
    const g1 = new Cluster(register("g1"), [], record);
    const g2 = new Cluster(register("g2"), [], record);
    // g1 brings back w's first new identity, then (wiped again) its second.
    await g1.recordIdentity("w", ident("w-1"), ident("w-0"));
    await g1.recordIdentity("w", ident("w-2"), ident("w-1"));
    // g2 finishes its bringing back of the first one late, from what it saw recorded then.
    const seen: string[] = [];
    g2.identityChanged.add((_, identity) => seen.push(identity));
    const after = await g2.recordIdentity("w", ident("w-1"), ident("w-0"));
    expect(after.stores.w!.identity).toBe(ident("w-2"));
    expect(g2.identity("w")).toBe(ident("w-2"));
    expect(seen).toEqual([ident("w-2")]);
    // The caller sees the record names another identity and looks again (replacement.ts).
    expect((await g1.fresh()).stores.w!.identity).toBe(ident("w-2"));
  });
});
