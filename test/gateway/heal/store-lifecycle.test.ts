/**
 * Adding, draining and removing stores with real store and gateway processes and the CLI,
 * two gateways (the second follows the first's changes live). Every claim is acted upon:
 * after `store add d --wait` every live chunk is on its placement stores under the new
 * set, d holds exactly the chunks placed on it (1.00x of the share that moved), and a store
 * safe-to-remove names is killed and every byte read back; after `store drain d --wait` and
 * `store remove d`, d is killed and every byte read back through both gateways; then head
 * holder c is drained and removed (it leaves the register), killed, and every byte read
 * back and written again over the two head holders left.
 *
 * Cluster: head holders a, b, c (data stores too), then data store d; 2 replicas, min 1.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import type { Hash } from "../../../chunkstore/chunk-store.ts";
import { HttpStore } from "../../../chunkstore/http-store.ts";
import { Rendezvous } from "../../../gateway/replication/placement.ts";
import { blockmendCommand } from "../../support/processes.ts";
import {
  api,
  nbd,
  randomBytes,
  readsBack,
  type StoresBody,
  safeToRemove,
  send,
  storeState,
  TestCluster,
  type TestGateway,
  waitFor,
  waitInSync,
} from "../../support/test-cluster.ts";
import { run } from "../../support/tools.ts";

const MiB = 1024 * 1024;
let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/** `blockmend ...args` against gateway `g`. */
function cli(g: TestGateway, ...args: string[]): Promise<{ code: number; out: string }> {
  return run(blockmendCommand(args), { env: { BLOCKMEND_API: g.url } });
}

/** Every chunk each store holds. */
async function holdings(urls: Record<string, string>): Promise<Map<string, Set<Hash>>> {
  const out = new Map<string, Set<Hash>>();
  for (const [id, url] of Object.entries(urls)) {
    const client = await HttpStore.open(url);
    const set = new Set<Hash>();
    for await (const h of client.list()) set.add(h);
    await client.close();
    out.set(id, set);
  }
  return out;
}

test("add a store and rebalance, drain and remove it, with two gateways following; then a head holder too", async () => {
  cluster = await TestCluster.start(["a", "b", "c"], { witnesses: [] });
  const g1 = await cluster.startGateway();
  const g2 = await cluster.startGateway();
  await send(g1, "POST", "/v1/images", { name: "vm1", size: 32 * MiB });
  const v1 = new Uint8Array(32 * MiB);
  v1.set(randomBytes(16 * MiB), 0);
  const c = await nbd(g1, "vm1");
  for (let off = 0; off < 16 * MiB; off += MiB) await c.write(off, v1.subarray(off, off + MiB));
  await c.flush();
  await send(g1, "POST", "/v1/images/vm1/snapshots", { name: "s1" });
  const v2 = v1.slice();
  v2.set(randomBytes(4 * MiB), 8 * MiB);
  for (let off = 8 * MiB; off < 12 * MiB; off += MiB) await c.write(off, v2.subarray(off, off + MiB));
  await c.flush();
  c.close();
  await waitInSync(g1);
  // Only live chunks on the stores from here: every one must be on its placement after the add.
  await send(g1, "POST", "/v1/gc?wait=1", { graceSeconds: 0 });

  // Add d through the CLI on g1, and wait for the rebalance.
  const dUrl = await cluster.addStoreProcess("d");
  const add = await cli(g1, "store", "add", "d", dUrl, "--wait", "--timeout", "90");
  expect(add.out).toContain("rebalanced");
  expect(add.code).toBe(0);
  // g2 followed live: it knows d (opened within a record refresh), places on it, and sees everything in sync.
  await waitFor(
    "g2 reaches d and sees every store in sync",
    async () => {
      const { stores } = await api<StoresBody>(g2, "/v1/stores");
      return stores.some((s) => s.id === "d") && stores.every((s) => s.state === "in-sync");
    },
    15_000,
  );
  const onG2 = await api<StoresBody & { placementEpoch: number; placement: string[] }>(g2, "/v1/stores");
  expect(onG2.placement).toEqual(["a", "b", "c", "d"]);
  expect(onG2.placementEpoch).toBe(1);
  expect(onG2.stores.map((s) => [s.id, s.state])).toEqual([
    ["a", "in-sync"],
    ["b", "in-sync"],
    ["c", "in-sync"],
    ["d", "in-sync"],
  ]);
  const held = await holdings(cluster.urls());
  const all = new Set([...held.values()].flatMap((s) => [...s]));
  const placement = new Rendezvous(["a", "b", "c", "d"]);
  const placedOnD = new Set<Hash>();
  for (const h of all) {
    const where = placement.order(h).slice(0, 2);
    for (const id of where) expect(held.get(id)!.has(h)).toBe(true);
    if (where.includes("d")) placedOnD.add(h);
  }
  // d got exactly its share: every chunk placed on it, and nothing else.
  expect(held.get("d")!.size).toBe(placedOnD.size);
  expect(placedOnD.size).toBeGreaterThan(all.size / 4); // about half of 2 copies over 4 stores
  // The old stores kept the copies that moved (surplus); a gc pass drops them, now that the
  // placement is settled: afterwards every chunk is on exactly its 2 placement stores.
  const surplusBefore = [...held.values()].reduce((n, set) => n + set.size, 0) - 2 * all.size;
  expect(surplusBefore).toBe(placedOnD.size);
  type Pass = { phase: string; stores: { store: string; surplusDeleted: number }[] };
  const pass = await send<Pass>(g1, "POST", "/v1/gc?wait=1", { graceSeconds: 0 });
  expect(pass.phase).toBe("done");
  expect(pass.stores.reduce((n, s) => n + s.surplusDeleted, 0)).toBe(surplusBefore);
  const after = await holdings(cluster.urls());
  for (const h of all) {
    const where = placement.order(h).slice(0, 2);
    for (const id of ["a", "b", "c", "d"]) expect(after.get(id)!.has(h)).toBe(where.includes(id));
  }
  // A gateway started with the old store list refuses, naming the store it lacks.
  const stateDir = await mkdtemp(join(cluster.dir, "gw-stale-"));
  const stale = await run(
    blockmendCommand([
      "gateway",
      ...["a", "b", "c"].flatMap((id) => ["--store", `${id}=${cluster!.urls()[id]}`]),
      ...["--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0", "--state-dir", stateDir],
    ]),
    { timeoutMs: 30_000 },
  );
  expect(stale.code).not.toBe(0);
  expect(stale.out).toContain(`missing d=${dUrl}`);

  // Acted upon: b is safe to remove now; without it, both gateways read every byte.
  expect((await safeToRemove(g2, "b")).safe).toBe(true);
  await cluster.stopStore("b");
  await readsBack(g2, "vm1", v2);
  await readsBack(g1, "vm1@s1", v1);
  await cluster.startStore("b");
  await waitInSync(g1);

  // d is not drained: remove is refused. Then drain it (through g2), wait, remove it.
  const early = await cli(g1, "store", "remove", "d");
  expect(early.code).toBe(1);
  expect(early.out).toContain("is not drained");
  const drain = await cli(g2, "store", "drain", "d", "--wait", "--timeout", "90");
  expect(drain.out).toContain("store d is drained");
  expect(drain.code).toBe(0);
  expect((await storeState(g1, "d")).state).toBe("drained");
  expect((await safeToRemove(g1, "d")).safe).toBe(true);
  const removed = await cli(g1, "store", "remove", "d", "--json");
  expect(removed.code).toBe(0);
  expect(JSON.parse(removed.out)).toMatchObject({ store: "d", placement: ["a", "b", "c"] });
  await cluster.dropStore("d");
  // g2 forgets d at its next read of the cluster record.
  await waitFor(
    "g2 forgets d",
    async () => (await api<StoresBody>(g2, "/v1/stores")).stores.map((s) => s.id).join() === "a,b,c",
    15_000,
  );
  await readsBack(g2, "vm1", v2);
  await readsBack(g2, "vm1@s1", v1);
  await readsBack(g1, "vm1", v2);

  // A head holder leaves too: drained of data, then out of the register (its refs fenced,
  // every key rewritten on a and b), then out of the record. A drain cancelled first: c
  // takes its share again and everything is in sync.
  const drainC = await cli(g1, "store", "drain", "c", "--wait", "--timeout", "90");
  expect(drainC.code).toBe(0);
  const cancel = await cli(g1, "store", "drain", "c", "--cancel", "--wait", "--timeout", "90");
  expect(cancel.code).toBe(0);
  await waitInSync(g2);
  expect((await cli(g2, "store", "drain", "c", "--wait", "--timeout", "90")).code).toBe(0);
  const removeC = await cli(g1, "store", "remove", "c", "--json");
  expect(removeC.code).toBe(0);
  const removedC = JSON.parse(removeC.out) as { placement: string[]; registerKeysRewritten: number };
  expect(removedC.placement).toEqual(["a", "b"]);
  expect(removedC.registerKeysRewritten).toBeGreaterThanOrEqual(2); // the cluster record and vm1's head at least
  // Acted upon: c is killed; both gateways read every byte, and writes go on (through g2,
  // which learned of the removal from the record) over the two head holders left.
  await cluster.dropStore("c");
  await waitFor(
    "g2 forgets c",
    async () => (await api<StoresBody>(g2, "/v1/stores")).stores.map((s) => s.id).join() === "a,b",
    15_000,
  );
  await readsBack(g2, "vm1", v2);
  await readsBack(g1, "vm1@s1", v1);
  const v3 = v2.slice();
  v3.set(randomBytes(MiB), 20 * MiB);
  const w = await nbd(g2, "vm1");
  await w.write(20 * MiB, v3.subarray(20 * MiB, 21 * MiB));
  await w.flush();
  w.close();
  await readsBack(g1, "vm1", v3);
  // A gateway started now, over a and b, reads it all.
  const g3 = await cluster.startGateway();
  await readsBack(g3, "vm1", v3);
  await readsBack(g3, "vm1@s1", v1);
  // Two head holders left: neither may go.
  const removeB = await cli(g1, "store", "remove", "b");
  expect(removeB.code).toBe(1);
  expect(removeB.out).toContain("at least two must remain");
}, 300_000);
