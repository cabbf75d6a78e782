/**
 * The head protocol across gateways, with real processes (issue 8, failures 2 to 5):
 * deletes fence open connections and survive a head holder that was down, looking never
 * takes an image over, and one gateway at a time heals a store.
 *
 * Cluster: data stores a and b, witness w, 2 replicas, minReplicas 1.
 */
import { afterEach, describe, expect, test } from "bun:test";
import {
  api,
  type HealBody,
  nbd,
  randomBytes,
  safeToRemove,
  same,
  send,
  storeState,
  TestCluster,
  waitFor,
  waitInSync,
} from "../../support/test-cluster.ts";
import { requireTools, runOk } from "../../support/tools.ts";

const MiB = 1024 * 1024;
let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

type Images = { images: { name: string; owner: string | null; epoch: number }[] };

describe("issue 8: a head protocol that never loses an acknowledged write", () => {
  test("8.2 a delete fences open connections, here and on another gateway, and a re-create is a new image", async () => {
    cluster = await TestCluster.start(["a", "b", "w"]);
    const g1 = await cluster.startGateway();
    const g2 = await cluster.startGateway();
    await send(g1, "POST", "/v1/images", { name: "vm", size: 16 * MiB });
    const here = await nbd(g1, "vm");
    const there = await nbd(g2, "vm");
    await here.write(0, randomBytes(65536));
    await here.flush();
    await send(g1, "DELETE", "/v1/images/vm");
    expect((await api<Images>(g1, "/v1/images")).images).toEqual([]);
    // Neither connection can bring the image back.
    await expect(here.write(0, randomBytes(65536)).then(() => here.flush())).rejects.toThrow(/NBD error/);
    await expect(there.write(0, randomBytes(65536)).then(() => there.flush())).rejects.toThrow(/NBD error/);
    expect((await api<Images>(g2, "/v1/images")).images).toEqual([]);
    // Re-created under the same name: the old connections cannot touch it, and it is not wedged.
    await send(g2, "POST", "/v1/images", { name: "vm", size: 16 * MiB });
    await expect(there.write(65536, randomBytes(65536)).then(() => there.flush())).rejects.toThrow(
      /NBD error/,
    );
    const fresh = await nbd(g1, "vm");
    expect(same(await fresh.read(0, 65536), new Uint8Array(65536))).toBe(true);
    const data = randomBytes(65536);
    await fresh.write(0, data);
    await fresh.flush();
    expect(same(await (await nbd(g2, "vm")).read(0, 65536), data)).toBe(true);
    for (const c of [here, there, fresh]) c.close();
  }, 60_000);

  test("8.3 a delete while a head holder is down stays deleted when it returns", async () => {
    cluster = await TestCluster.start(["a", "b", "w"]);
    const g = await cluster.startGateway();
    await send(g, "POST", "/v1/images", { name: "gone", size: MiB });
    await send(g, "POST", "/v1/images", { name: "kept", size: MiB });
    await cluster.stopStore("w");
    await send(g, "DELETE", "/v1/images/gone");
    await cluster.startStore("w");
    await waitFor("w up", async () => (await storeState(g, "w")).state === "in-sync");
    // Every majority now includes a holder with the tombstone; a fresh gateway agrees.
    await cluster.stopStore("a");
    const names = async (gw: { url: string }) =>
      (await api<Images>(gw, "/v1/images")).images.map((i) => i.name);
    expect(await names(g)).toEqual(["kept"]);
    expect(await names(await cluster.startGateway())).toEqual(["kept"]);
  }, 60_000);

  test("8.4 looking at an image from another gateway never takes it over, and sees the latest flush", async () => {
    requireTools("nbdinfo", "qemu-io");
    cluster = await TestCluster.start(["a", "b", "w"]);
    const g1 = await cluster.startGateway();
    const g2 = await cluster.startGateway();
    await send(g1, "POST", "/v1/images", { name: "vm", size: 16 * MiB });
    const vm = await nbd(g1, "vm");
    const first = randomBytes(MiB);
    await vm.write(0, first);
    await vm.flush();
    const owner = (await api<Images>(g1, "/v1/images")).images[0]!;
    // nbdinfo, a read-only qemu-io, a plain NBD read, the API and a snapshot, all on g2.
    await runOk(["nbdinfo", `${g2.nbd}/vm`]);
    await runOk(["qemu-io", "-r", "-f", "raw", "-c", "read 0 64k", `${g2.nbd}/vm`]);
    const reader = await nbd(g2, "vm");
    expect(same(await reader.read(0, MiB), first)).toBe(true);
    await api(g2, "/v1/images/vm");
    await send(g2, "POST", "/v1/images/vm/snapshots", { name: "look" });
    const still = (await api<Images>(g2, "/v1/images")).images[0]!;
    expect(still.owner).toBe(owner.owner);
    expect(still.epoch).toBe(owner.epoch);
    // The owner's next flush works, and g2 serves it at once.
    const second = randomBytes(MiB);
    await vm.write(0, second);
    await vm.flush();
    expect(same(await reader.read(0, MiB), second)).toBe(true);
    // Both gateways answer status from the same fresh heads.
    await cluster.stopStore("b");
    await waitFor(
      "b down on both",
      async () =>
        (await storeState(g1, "b")).state === "down" && (await storeState(g2, "b")).state === "down",
    );
    const [s1, s2] = [await safeToRemove(g1, "a"), await safeToRemove(g2, "a")];
    expect(s1.safe).toBe(false);
    expect(s2.safe).toBe(false);
    expect(s2.wouldLoseLastCurrentCopy).toEqual(s1.wouldLoseLastCurrentCopy);
    vm.close();
    reader.close();
  }, 60_000);

  test("8.5 one gateway heals a store; every gateway shows that heal", async () => {
    cluster = await TestCluster.start(["a", "b", "w"]);
    const g1 = await cluster.startGateway();
    const g2 = await cluster.startGateway();
    await send(g1, "POST", "/v1/images", { name: "vm", size: 64 * MiB });
    await waitInSync(g1);
    await cluster.stopStore("a");
    await waitFor("a down", async () => (await storeState(g1, "a")).state === "down");
    const c = await nbd(g1, "vm");
    for (let off = 0; off < 16 * MiB; off += MiB) await c.write(off, randomBytes(MiB));
    await c.flush();
    c.close();
    await cluster.startStore("a");
    await waitInSync(g1);
    await waitInSync(g2);
    const healer = async (g: { url: string }) =>
      (await api<HealBody>(g, "/v1/heal")).stores.find((s) => s.id === "a")!;
    const [h1, h2] = [await healer(g1), await healer(g2)];
    expect(h1.gateway).not.toBeNull();
    expect(h2.gateway).toBe(h1.gateway);
    // Copied once: the bytes healed across both gateways are about what a missed (its share of 16 MiB).
    const total = async (g: { url: string }) =>
      Number(/blockmend_healed_bytes_total (\d+)/.exec(await (await fetch(`${g.url}/metrics`)).text())![1]);
    const copied = (await total(g1)) + (await total(g2));
    expect(copied).toBeGreaterThanOrEqual(15 * MiB);
    expect(copied).toBeLessThan(17 * MiB);
  }, 90_000);

  test("8.6 a gateway frozen past its heal lease loses it to another, and does not act on it when it wakes", async () => {
    cluster = await TestCluster.start(["a", "b", "w"]);
    const g1 = await cluster.startGateway();
    await send(g1, "POST", "/v1/images", { name: "vm", size: 64 * MiB });
    await waitInSync(g1);
    await cluster.stopStore("a");
    await waitFor("a down", async () => (await storeState(g1, "a")).state === "down");
    const c = await nbd(g1, "vm");
    for (let off = 0; off < 24 * MiB; off += MiB) await c.write(off, randomBytes(MiB));
    await c.flush();
    c.close();
    // Slow heals, so that one is still running when its gateway freezes.
    const slow = {
      rateBytesPerSecond: 2 * MiB,
      floorBytesPerSecond: 2 * MiB,
      ceilingBytesPerSecond: 2 * MiB,
      concurrency: 1,
    };
    await send(g1, "PUT", "/v1/heal/limits", slow);
    await cluster.startStore("a");
    const healer = async (g: { url: string }) =>
      (await api<HealBody>(g, "/v1/heal")).stores.find((s) => s.id === "a")!;
    await waitFor("g1 heals a", async () => (await healer(g1)).running && (await healer(g1)).copiedBytes > 0);
    const g2 = await cluster.startGateway();
    await send(g2, "PUT", "/v1/heal/limits", slow);
    const total = async (g: { url: string }) =>
      Number(/blockmend_healed_bytes_total (\d+)/.exec(await (await fetch(`${g.url}/metrics`)).text())![1]);
    const idOf = (g: { output(): string }) => /blockmend gateway (gw-[0-9a-f]+)/.exec(g.output())![1]!;
    g1.proc.kill("SIGSTOP");
    await waitFor(
      "g2 takes the heal over",
      async () => {
        const h = await healer(g2);
        return h.running && h.gateway === idOf(g2) && (await total(g2)) > 0;
      },
      30_000,
    );
    g1.proc.kill("SIGCONT");
    // Batches sent before the freeze may finish; after that, g1 copies nothing more.
    await Bun.sleep(3000);
    const settled = await total(g1);
    await Bun.sleep(4000);
    expect(await total(g1)).toBe(settled);
    expect((await healer(g1)).gateway).toBe(idOf(g2));
    await send(g2, "PUT", "/v1/heal/limits", {
      ceilingBytesPerSecond: 1024 * MiB,
      rateBytesPerSecond: 512 * MiB,
      floorBytesPerSecond: 4 * MiB,
    });
    await waitInSync(g2, 120_000);
    await cluster.stopStore("b");
    const r = await nbd(g2, "vm");
    expect((await r.read(0, MiB)).byteLength).toBe(MiB); // a alone serves it
    r.close();
  }, 180_000);
});
