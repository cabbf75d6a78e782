/**
 * Garbage collection racing everything else (issue 13), seeded: two gateways run two
 * workers that write and TRIM (from a small pool of block contents, so commits deduplicate against
 * chunks that are garbage a moment earlier), snapshot, delete snapshots, clone from any
 * snapshot (also one the other worker is deleting) and delete images, while a collector
 * runs pass after pass with zero grace, alternating between the gateways, over stores
 * with random latency. A model records what was acknowledged. After every round, a
 * gateway that never saw the images reads every image and snapshot back in full; at the
 * end a quiet pass leaves the stores holding exactly the referenced chunks.
 *
 * Replay: GC_SEED=n bun test test/gateway/gc/gc-race.test.ts (the operations replay; the
 * interleaving with the collector depends on timing too).
 */
import { describe, expect, test } from "bun:test";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { ImageNotFoundError } from "../../../gateway/errors.ts";
import { Collector, type GcReport } from "../../../gateway/gc/collector.ts";
import type { ImageService } from "../../../gateway/image/image-service.ts";
import { FaultyStore, seededRandom } from "../../support/faulty-store.ts";
import { imageService, pattern } from "../image/_image-fixture.ts";
import { referencedByHeads } from "./_gc-fixture.ts";

const BLOCK = 65536;
const BLOCKS = 24;
const SIZE = BLOCKS * BLOCK;
/** Distinct block contents: few, so that commits keep deduplicating against garbage. */
const CONTENTS = 6;
const ROUNDS = 3;
const OPS_PER_ROUND = 14;
/** Commits linger up to this long after each put: long enough to straddle a pass. */
const PUT_DELAY_MS = 100;
/**
 * Pause between passes. A commit refused at the barrier puts its chunks again and retries;
 * passes back to back, each shorter than that re-put, would refuse it every time (with the
 * default 300 s grace a pass outlasts any re-put, so a commit is refused at most once).
 */
const PASS_GAP_MS = 4 * PUT_DELAY_MS;

type Blocks = Map<number, number>;

function expectedBytes(blocks: Blocks): Uint8Array {
  const out = new Uint8Array(SIZE);
  for (const [i, seed] of blocks) out.set(pattern(BLOCK, seed), i * BLOCK);
  return out;
}

async function readAll(service: ImageService, exportName: string): Promise<Uint8Array> {
  const img = await service.open(exportName);
  try {
    return await img.read(0, img.size);
  } finally {
    await service.release(img);
  }
}

/** What was acknowledged: images by name, snapshots by `image@snap` (immutable). */
class Model {
  readonly images = new Map<string, { worker: number; blocks: Blocks }>();
  readonly snapshots = new Map<string, Blocks>();
}

async function run(seed: number): Promise<void> {
  const random = seededRandom(seed);
  const stores = ["a", "b", "c"].map((n, i) => {
    const s = new FaultyStore(new MemoryStore(n), seed * 10 + i);
    s.faults.maxDelayMs = 2;
    // Commits linger between their puts and their head write: they straddle the passes.
    s.faults.putDelayMs = PUT_DELAY_MS;
    return s;
  });
  const gateways = [await imageService(stores), await imageService(stores)];
  const model = new Model();
  let names = 0;
  let stopped = false;
  const reports: GcReport[] = [];

  // The collector: pass after pass, zero grace, on alternating gateways.
  const collectors = gateways.map(
    (g) =>
      new Collector({
        stores: g.core.stores,
        heads: g.core.heads,
        cluster: g.core.cluster,
        register: g.core.register,
        gatewayId: g.core.id,
        isUp: () => true,
      }),
  );
  const gcLoop = (async () => {
    for (let n = 0; !stopped; n++) {
      const r = await collectors[n % 2]!.run({ graceMs: 0 });
      if (r.phase !== "done") throw new Error(`gc pass failed: ${r.error}`);
      reports.push(r);
      await new Promise((res) => setTimeout(res, PASS_GAP_MS * (1 + random())));
    }
  })();

  async function worker(w: number, ops: number): Promise<void> {
    const rnd = seededRandom(seed * 1000 + w + ops);
    const choose = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const service = gateways[w]!.service;
    const mine = () => [...model.images].filter(([, v]) => v.worker === w).map(([n]) => n);
    for (let op = 0; op < ops; op++) {
      const kind = rnd();
      if (mine().length === 0 || kind < 0.1) {
        const name = `w${w}i${names++}`;
        await service.create(name, SIZE);
        model.images.set(name, { worker: w, blocks: new Map() });
      } else if (kind < 0.55) {
        const name = choose(mine());
        const blocks = new Map(model.images.get(name)!.blocks);
        const img = await service.open(name);
        try {
          for (let k = 0; k < 1 + Math.floor(rnd() * 6); k++) {
            const i = Math.floor(rnd() * BLOCKS);
            if (rnd() < 0.2) {
              await img.trim(i * BLOCK, BLOCK, { fua: false }); // a hole: its old chunk may become garbage
              blocks.delete(i);
              continue;
            }
            const c = Math.floor(rnd() * CONTENTS);
            await img.write(i * BLOCK, pattern(BLOCK, c), { fua: false });
            blocks.set(i, c);
          }
          await img.flush();
        } finally {
          await service.release(img);
        }
        model.images.get(name)!.blocks = blocks;
      } else if (kind < 0.7) {
        const name = choose(mine());
        const snap = `s${names++}`;
        await service.snapshot(name, snap);
        model.snapshots.set(`${name}@${snap}`, new Map(model.images.get(name)!.blocks));
      } else if (kind < 0.82) {
        const snaps = [...model.snapshots.keys()].filter((k) => mine().includes(k.split("@")[0]!));
        if (snaps.length === 0) continue;
        const key = choose(snaps);
        const [name, snap] = key.split("@") as [string, string];
        model.snapshots.delete(key);
        await service.deleteSnapshot(name, snap);
      } else if (kind < 0.94) {
        // From any snapshot, also one the other worker may be deleting right now.
        const snaps = [...model.snapshots.keys()];
        if (snaps.length === 0) continue;
        const key = choose(snaps);
        const content = model.snapshots.get(key)!;
        const name = `w${w}c${names++}`;
        try {
          await service.create(name, undefined, { from: key });
          model.images.set(name, { worker: w, blocks: new Map(content) });
        } catch (err) {
          if (!(err instanceof ImageNotFoundError)) throw err; // the snapshot went first: fine
        }
      } else if (mine().length > 1) {
        const name = choose(mine());
        for (const k of [...model.snapshots.keys()]) if (k.startsWith(`${name}@`)) model.snapshots.delete(k);
        model.images.delete(name);
        await service.remove(name);
      }
    }
  }

  async function verify(label: string): Promise<void> {
    const fresh = await imageService(stores);
    try {
      for (const [name, { blocks }] of model.images) {
        const got = await readAll(fresh.service, name);
        if (!same(got, expectedBytes(blocks)))
          throw new Error(`seed ${seed} ${label}: image ${name} differs`);
      }
      for (const [key, blocks] of model.snapshots) {
        const got = await readAll(fresh.service, key);
        if (!same(got, expectedBytes(blocks)))
          throw new Error(`seed ${seed} ${label}: snapshot ${key} differs`);
      }
    } finally {
      await fresh.service.close();
    }
  }

  try {
    for (let round = 0; round < ROUNDS; round++) {
      await Promise.all([worker(0, OPS_PER_ROUND + round), worker(1, OPS_PER_ROUND + round)]);
      await verify(`round ${round}`);
    }
    stopped = true;
    await gcLoop;
    expect(reports.length).toBeGreaterThan(0);
    expect(reports.reduce((n, r) => n + r.stores.reduce((m, s) => m + s.deleted, 0), 0)).toBeGreaterThan(0);
    // Quiet: one more pass leaves exactly what is referenced.
    expect((await collectors[0]!.run({ graceMs: 0 })).phase).toBe("done");
    await verify("after the last pass");
    const live = await referencedByHeads(gateways[0]!.core);
    for (const s of stores) for await (const h of s.list()) expect(live.has(h)).toBe(true);
  } finally {
    stopped = true;
    await gcLoop.catch(() => {});
    for (const g of gateways) await g.service.close();
  }
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(a, b) === 0;
}

const seeds = process.env.GC_SEED ? [Number(process.env.GC_SEED)] : [1, 2, 3];

describe("garbage collection racing writes, snapshots, clones and deletes", () => {
  for (const seed of seeds) test(`seed ${seed}`, () => run(seed), 120_000);
});
