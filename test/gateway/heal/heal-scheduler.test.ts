/**
 * The heal scheduler in one process, over memory stores that can be switched off:
 * only what a store missed is copied, a new gateway resumes a heal from the heads,
 * read-repair puts back a copy found missing or corrupt, and scrub finds corrupt copies.
 */
import { describe, expect, test } from "bun:test";
import type { ChunkStore } from "../../../chunkstore/chunk-store.ts";
import { StoreUnavailableError } from "../../../chunkstore/errors.ts";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { WitnessStore } from "../../../chunkstore/witness-store.ts";
import { HealScheduler } from "../../../gateway/heal/heal-scheduler.ts";
import { LatencyMonitor } from "../../../gateway/heal/latency-monitor.ts";
import { StoreHealth } from "../../../gateway/replication/store-health.ts";
import { imageService, pattern, SwitchableStore } from "../image/_image-fixture.ts";

const MiB = 1024 * 1024;
/** Heads need a majority: two data stores and a witness keep one with either data store down. */
let sharedWitness: ChunkStore = new WitnessStore(new MemoryStore("w"));

/** A gateway's image service plus health and heal over the given stores and one witness. */
function gateway(stores: MemoryStore[], witness: ChunkStore = sharedWitness) {
  const g = imageService([...stores, witness], { replicas: 2, minReplicas: 1 });
  const health = new StoreHealth(g.set.members, { probeIntervalMs: 50, probeTimeoutMs: 500 });
  g.set.health = health;
  const heal = new HealScheduler(g.service, g.set, health, new LatencyMonitor());
  g.set.onBadCopy = (id, hash, reason) => heal.repair(id, hash, reason);
  return { ...g, health, heal };
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

describe("heal scheduler", () => {
  test("a store that was down gets only the chunks it missed, then is in sync", async () => {
    sharedWitness = new WitnessStore(new MemoryStore("w"));
    const stores = [new SwitchableStore("a"), new SwitchableStore("b")];
    const g = gateway(stores);
    await g.service.create("vm", 16 * MiB);
    const img = await g.service.open("vm");
    await img.write(0, pattern(16 * MiB, 1), { fua: true });
    stores[1]!.down = true;
    g.health.reportFailure("b", "test: switched off");
    await img.write(4 * MiB, pattern(MiB, 2), { fua: true }); // 16 chunks of 64 KiB while b is away
    await g.heal.tick();
    expect(g.health.status("b")!.state).toBe("down");
    stores[1]!.down = false;
    g.health.start();
    g.heal.start({ scrub: false });
    await until("b in sync", () => g.health.status("b")!.state === "in-sync" && !g.heal.status().healing);
    const b = g.heal.status().stores.find((s) => s.id === "b")!;
    expect(b.copiedBytes).toBeGreaterThanOrEqual(MiB);
    expect(b.copiedBytes).toBeLessThan(MiB + 64 * 1024); // the chunks plus a few map pages
    expect(img.head.synced.b!.generation).toBe(img.head.generation);
    // b now holds every chunk a holds (2 stores, 2 replicas: both hold everything).
    const onA: string[] = [];
    for await (const h of stores[0]!.list()) onA.push(h);
    expect((await stores[1]!.has(onA)).every(Boolean)).toBe(true);
    g.heal.stop();
    g.health.stop();
    await g.service.close();
  });

  test("a new gateway resumes the heal from the heads alone", async () => {
    sharedWitness = new WitnessStore(new MemoryStore("w"));
    const stores = [new SwitchableStore("a"), new SwitchableStore("b")];
    const first = gateway(stores);
    await first.service.create("vm", 8 * MiB);
    const img = await first.service.open("vm");
    await img.write(0, pattern(8 * MiB, 3), { fua: true });
    stores[1]!.down = true;
    first.health.reportFailure("b", "test");
    await img.write(MiB, pattern(2 * MiB, 4), { fua: true });
    await first.service.close(); // the first gateway goes away before any heal
    stores[1]!.down = false;

    const second = gateway(stores);
    second.health.start();
    second.heal.start({ scrub: false });
    await until("b in sync via the second gateway", async () => {
      const head = await second.service.info("vm");
      return head.synced.b?.generation === head.generation && !second.heal.status().healing;
    });
    expect(second.heal.status().stores.find((s) => s.id === "b")!.copiedBytes).toBeGreaterThanOrEqual(
      2 * MiB,
    );
    stores[0]!.down = true; // b alone serves every byte
    second.health.reportFailure("a", "test");
    const view = await second.service.open("vm");
    expect(await view.read(MiB, 2 * MiB)).toEqual(pattern(2 * MiB, 4));
    second.heal.stop();
    second.health.stop();
  });

  test("read-repair puts back a corrupt copy found on a read; scrub finds corrupt copies by itself", async () => {
    sharedWitness = new WitnessStore(new MemoryStore("w"));
    const stores = [new MemoryStore("a"), new MemoryStore("b")];
    const g = gateway(stores);
    await g.service.create("vm", 4 * MiB);
    const img = await g.service.open("vm");
    const data = pattern(65536, 5);
    await img.write(0, data, { fua: true });
    const hash = (await import("../../../chunkstore/hash.ts")).hashChunk(data);
    // Corrupt both copies' first store in placement order, then read through a fresh gateway (cold cache).
    const first = g.set.placement(hash)[0]!;
    const bad = stores.find((s) => s.name === first)!;
    bad.corrupt(hash);
    const reader = gateway(stores);
    const view = await reader.service.open("vm");
    expect(await view.read(0, 65536)).toEqual(data); // served by the other replica
    await until("read-repair", () => reader.heal.repairedChunks === 1);
    expect(await bad.get(hash)).toEqual(data);

    // Scrub: corrupt again, let the scrub loop find and repair it.
    bad.corrupt(hash);
    reader.heal.setLimits({ scrubBytesPerSecond: 64 * MiB });
    reader.heal.start();
    await until(
      "scrub repair",
      () => reader.heal.scrubStatus().some((s) => s.corruptChunks > 0) && reader.heal.repairedChunks === 2,
    );
    expect(await bad.get(hash)).toEqual(data);
    reader.heal.stop();
    await g.service.close();
  });
});
