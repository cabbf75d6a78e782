/**
 * Space comes back (issue 13), with real processes and real clients: three chunk store
 * servers, a gateway, nbdcopy writing a 64 MiB image ten times over (and a snapshot
 * between), `blockmend gc run` from the CLI. Each store's bytes on disk end within 1.2x of
 * the live data it holds; after `image rm` and another pass, at most 24 MiB are left per
 * store and the image's tombstone is gone from every store's refs (the name is free again).
 * The last version is read back with nbdcopy after every pass.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeGc } from "../../../cli/gc-command.ts";
import type { GcReport } from "../../../gateway/gc/collector.ts";
import { blockmendCommand } from "../../support/processes.ts";
import {
  api,
  type TestCluster as Cluster,
  randomBytes,
  send,
  TestCluster,
  type TestGateway,
} from "../../support/test-cluster.ts";
import { requireTools, runOk } from "../../support/tools.ts";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

let cluster: Cluster;
let g: TestGateway;
let dir: string;

beforeAll(async () => {
  requireTools("nbdcopy", "qemu-img");
  dir = await mkdtemp(join(tmpdir(), "blockmend-gc-space-"));
  cluster = await TestCluster.start(["a", "b", "c"]);
  g = await cluster.startGateway();
});

afterAll(async () => {
  await cluster?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Bytes allocated on disk under a directory (what `du` counts). */
async function diskBytes(path: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(path, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    // A store renames files as it goes (ref writes): one gone meanwhile counts for nothing.
    const s = await stat(join(e.parentPath, e.name)).catch(() => null);
    total += (s?.blocks ?? 0) * 512;
  }
  return total;
}

/** Live chunk bytes a store server reports. */
async function liveBytes(id: string): Promise<number> {
  const port = cluster.stores.get(id)!.port;
  return ((await (await fetch(`http://127.0.0.1:${port}/v1/stats`)).json()) as { bytes: number }).bytes;
}

async function gcRun(): Promise<GcReport> {
  return JSON.parse(
    await runOk(blockmendCommand(["gc", "run", "--wait", "--grace", "0", "--json", "--api", g.url]), {
      timeoutMs: 120_000,
    }),
  );
}

/** Waits until every store's disk use is within `bound(id)` (compaction runs a second after a sweep). */
async function settle(
  bound: (id: string, live: number) => number,
): Promise<Record<string, { disk: number; live: number }>> {
  const end = Date.now() + 60_000;
  for (;;) {
    const out: Record<string, { disk: number; live: number }> = {};
    for (const id of ["a", "b", "c"]) {
      const live = await liveBytes(id);
      out[id] = { disk: await diskBytes(cluster.stores.get(id)!.dir), live };
    }
    if (Object.entries(out).every(([id, s]) => s.disk <= bound(id, s.live)) || Date.now() > end) return out;
    await Bun.sleep(500);
  }
}

async function readBack(): Promise<Uint8Array> {
  const out = join(dir, "out.raw");
  await runOk(["nbdcopy", `${g.nbd}/vm`, out], { timeoutMs: 120_000 });
  return new Uint8Array(await Bun.file(out).arrayBuffer());
}

describe("space comes back", () => {
  test("ten overwrites of 64 MiB and a snapshot, then gc: within 1.2x of live; image rm, gc: at most 24 MiB", async () => {
    await send(g, "POST", "/v1/images", { name: "vm", size: SIZE });
    const src = join(dir, "src.raw");
    let last: Uint8Array = new Uint8Array();
    for (let i = 0; i < 10; i++) {
      last = randomBytes(SIZE);
      await writeFile(src, last);
      // --flush: the copy is acknowledged (committed) when nbdcopy exits.
      await runOk(["nbdcopy", "--flush", src, `${g.nbd}/vm`], { timeoutMs: 120_000 });
      if (i === 4) await send(g, "POST", "/v1/images/vm/snapshots", { name: "mid" });
    }
    await send(g, "DELETE", "/v1/images/vm/snapshots/mid");
    const grown = await Promise.all(["a", "b", "c"].map((id) => diskBytes(cluster.stores.get(id)!.dir)));
    // 10 versions x 64 MiB x 2 replicas over 3 stores: over 400 MiB each before gc.
    for (const b of grown) expect(b).toBeGreaterThan(300 * MiB);

    const report = await gcRun();
    expect(report.phase).toBe("done");
    console.log(describeGc(report));
    expect(report.stores.reduce((n, s) => n + s.deleted, 0)).toBeGreaterThan(0);
    const after = await settle((_, live) => live * 1.2);
    console.log("gc space, after the pass:", JSON.stringify(after));
    for (const s of Object.values(after)) expect(s.disk).toBeLessThanOrEqual(s.live * 1.2);
    // The live data is what the image holds: 64 MiB x 2 replicas (plus map pages).
    const liveTotal = Object.values(after).reduce((n, s) => n + s.live, 0);
    expect(liveTotal).toBeGreaterThanOrEqual(2 * SIZE);
    expect(liveTotal).toBeLessThan(2 * SIZE * 1.05);
    expect(Buffer.compare(await readBack(), last)).toBe(0);

    // Delete the image from the CLI: it says when the space comes back.
    const rmOut = await runOk(blockmendCommand(["image", "rm", "vm", "--api", g.url]));
    expect(rmOut).toContain("reclaimed by the next garbage collection pass");
    // The human form this time, as an operator reads it.
    const text = await runOk(blockmendCommand(["gc", "run", "--wait", "--grace", "0", "--api", g.url]), {
      timeoutMs: 120_000,
    });
    console.log(text);
    expect(text).toMatch(/: done, started/);
    expect(text).toMatch(/a: \d+ chunks stored, \d+ unreferenced, [1-9]\d* deleted/);
    const empty = await settle(() => 24 * MiB);
    console.log("gc space, after image rm:", JSON.stringify(empty));
    for (const s of Object.values(empty)) expect(s.disk).toBeLessThanOrEqual(24 * MiB);
    expect((await api<{ last: GcReport }>(g, "/v1/gc")).last.phase).toBe("done");

    // The deleted image's head went too: no store holds a ref for it, only each one's floor.
    expect(text).toContain("deleted images' tombstones: 1 collected");
    for (const id of ["a", "b", "c"]) {
      const refs = await readdir(join(cluster.stores.get(id)!.dir, "refs"));
      expect(refs).not.toContain("head.vm");
      expect(refs).toContain("register-floor");
    }
    expect(await api<{ images: unknown[] }>(g, "/v1/images")).toMatchObject({ images: [] });
    // The name is free again: a new image under it starts over, empty.
    await send(g, "POST", "/v1/images", { name: "vm", size: MiB });
    expect(await api<{ generation: number; size: number }>(g, "/v1/images/vm")).toMatchObject({
      generation: 1,
      size: MiB,
    });
    expect((await readBack()).every((b) => b === 0)).toBe(true);
  }, 300_000);
});
