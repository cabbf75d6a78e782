/**
 * A store at its high-water mark, with real store and gateway processes: it shows as
 * `full` (not down), writes go on with every chunk keeping its 2 copies on the stores with
 * room, nothing is lost (acted upon: each of the other stores is killed in turn and every
 * byte read back), and once it has room again it heals and is in sync (acted upon: the
 * store safe-to-remove names is killed and every byte read back).
 *
 * Cluster: data stores a, b, c (all head holders), 2 replicas, minReplicas 1. The stores
 * share one file system, so c's reserve is set from the free space the test sees.
 */
import { afterEach, expect, test } from "bun:test";
import { statfs } from "node:fs/promises";
import { FULL_MARGIN_BYTES } from "../../../chunkstore/file-store.ts";
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

const MiB = 1024 * 1024;
let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/** The store's chunk counter as the gateway reports it (refreshed every probe while full, else every 5 s). */
async function chunksOn(g: TestGateway, id: string): Promise<number> {
  const s = (await api<StoresBody>(g, "/v1/stores")).stores.find((x) => x.id === id) as unknown as {
    chunks: number;
  };
  return s.chunks;
}

test("a full store takes no new chunks, writes keep 2 copies elsewhere, and it heals once it has room", async () => {
  cluster = await TestCluster.start(["a", "b", "c"], { witnesses: [] });
  const free = (await statfs(cluster.dir)).bavail * (await statfs(cluster.dir)).bsize;
  // c's free space is half the margin above its reserve: at its high-water mark from the start.
  cluster.stores.get("c")!.reserveBytes = Math.max(0, free - FULL_MARGIN_BYTES / 2);
  await cluster.stopStore("c");
  await cluster.startStore("c");
  const g = await cluster.startGateway();
  await waitFor("c shown full", async () => (await storeState(g, "c")).state === "full", 30_000);
  const full = await storeState(g, "c");
  expect(full.reasons.join(" ")).toContain("high-water mark");
  expect(
    (await api<{ stores: { id: string; state: string }[] }>(g, "/v1/stores")).stores.map((s) => s.state),
  ).toEqual(["in-sync", "in-sync", "full"]);
  const metrics = await (await fetch(`${g.url}/metrics`)).text();
  expect(metrics).toContain('blockmend_store_state{store="c",state="full"} 1');
  expect(metrics).toContain('blockmend_store_state{store="c",state="down"} 0');
  const cBefore = await chunksOn(g, "c");

  // Writes go on; every chunk gets its two copies on a and b.
  await send(g, "POST", "/v1/images", { name: "vm1", size: 32 * MiB });
  const model = randomBytes(24 * MiB);
  const image = new Uint8Array(32 * MiB);
  image.set(model, 0);
  const c = await nbd(g, "vm1");
  for (let off = 0; off < model.byteLength; off += MiB) await c.write(off, model.subarray(off, off + MiB));
  await c.flush();
  c.close();
  await waitFor("counters refreshed", async () => (await storeState(g, "c")).state === "full");
  expect(await chunksOn(g, "c")).toBe(cBefore); // no new chunk reached it
  const during = await storeState(g, "c");
  expect(during.state).toBe("full");
  expect(during.lag.map((l) => l.image)).toEqual(["vm1"]); // it lacks what was placed on it: not in sync
  expect((await storeState(g, "a")).state).toBe("in-sync");
  expect((await storeState(g, "b")).state).toBe("in-sync");
  const heal = await api<{ stores: { id: string; running: boolean; converges: boolean }[] }>(g, "/v1/heal");
  expect(heal.stores.find((s) => s.id === "c")).toMatchObject({ running: false, converges: false });

  // Nothing lost: with a gone every byte reads from b, and with b gone from a.
  await cluster.stopStore("a");
  await readsBack(g, "vm1", image);
  await cluster.startStore("a");
  await waitFor("a back", async () => (await storeState(g, "a")).state === "in-sync");
  await cluster.stopStore("b");
  await readsBack(g, "vm1", image);
  await cluster.startStore("b");
  await waitFor("b back", async () => (await storeState(g, "b")).state === "in-sync");

  // Room again (the reserve lowered): c leaves full, heals what it lacks, and is in sync.
  cluster.stores.get("c")!.reserveBytes = 0;
  await cluster.stopStore("c");
  await cluster.startStore("c");
  await waitInSync(g);
  await waitFor(
    "c's counters show the healed chunks",
    async () => (await chunksOn(g, "c")) > cBefore,
    15_000,
  );
  // Acted upon: safe to remove a now, so a goes and every byte reads back from b and c.
  expect((await safeToRemove(g, "a")).safe).toBe(true);
  await cluster.stopStore("a");
  await readsBack(g, "vm1", image);
}, 180_000);
