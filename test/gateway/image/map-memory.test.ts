/**
 * Memory of a real gateway process while map requests walk a 1 PiB sparse image (issue 9:
 * four map requests grew a gateway by 1.6 GB, one 8 KiB page object per hole page).
 * Measured as the process's RSS (/proc/PID/status), before and during 32 requests spread
 * over the whole image, each answering MAX_MAP_BLOCKS blocks (64 GiB). The budget is the
 * one docs/operations.md ("Limits") states.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAll, startBlockmend } from "../../support/processes.ts";

/** RSS growth allowed while mapping a sparse image: holes must cost nothing (docs/operations.md, Limits). */
const MAP_RSS_BUDGET_MIB = 48;
const PiB = 2 ** 50;

const dirs: string[] = [];
afterAll(async () => {
  await killAll();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

test("map requests over a 1 PiB sparse image keep the gateway's RSS within its budget", async () => {
  const data = await mkdtemp(join(tmpdir(), "blockmend-map-rss-"));
  dirs.push(data);
  const gw = await startBlockmend(
    ["up", "--data", data, "--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0"],
    60_000,
  );
  const created = await fetch(`${gw.url}/v1/images`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "huge", size: PiB }),
  });
  expect(created.status).toBe(201);
  // One written block far out, so the map has a real path of pages besides its holes.
  const w = await fetch(`${gw.url}/v1/images/huge/data?offset=${PiB - 65536}`, {
    method: "PUT",
    headers: { "content-type": "application/octet-stream" },
    body: new Uint8Array(65536).fill(1),
  });
  expect(w.status).toBe(204);
  await fetch(`${gw.url}/v1/images/huge/map?offset=0`).then((r) => r.json()); // warm up code paths
  const before = await rssMiB(gw.proc.pid);
  let peak = before;
  const requests = 32;
  for (let i = 0; i < requests; i++) {
    const offset = Math.floor((PiB / requests / 65536) * i) * 65536;
    const res = await fetch(`${gw.url}/v1/images/huge/map?offset=${offset}`);
    const map = (await res.json()) as { length: number; extents: { hole: boolean }[] };
    expect(map.length).toBe(64 * 2 ** 30);
    expect(map.extents.every((e) => e.hole)).toBe(true);
    peak = Math.max(peak, await rssMiB(gw.proc.pid));
  }
  const last = (await (await fetch(`${gw.url}/v1/images/huge/map?offset=${PiB - 2 ** 36}`)).json()) as {
    extents: { hole: boolean; length: number }[];
  };
  expect(last.extents.at(-1)).toEqual({ offset: PiB - 65536, length: 65536, hole: false } as never);
  console.log(
    `map RSS: before ${before.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB (+${(peak - before).toFixed(1)})`,
  );
  expect(peak - before).toBeLessThan(MAP_RSS_BUDGET_MIB);
  await gw.kill("SIGTERM");
}, 120_000);
