/**
 * `/metrics` capacity gauges and the event loop delay histogram, from a real gateway over
 * file stores: the gauges agree with `/v1/stores`, and a stall of the gateway's thread
 * (the test runs in it) shows up in the histogram and the maximum.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Gateway, startGateway } from "../../../gateway/gateway.ts";

let dir: string;
let gw: Gateway;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "blockmend-metrics-"));
  gw = await startGateway({
    stores: ["a", "b", "c"].map((id) => ({ id, url: `file:${join(dir, id)}` })),
    replicas: 2,
    minReplicas: 1,
    nbd: { hostname: "127.0.0.1", port: 0 },
    http: { hostname: "127.0.0.1", port: 0 },
    stateDir: join(dir, "state"),
    threads: 1,
    log: () => {},
  });
});

afterAll(async () => {
  await gw?.close();
  await rm(dir, { recursive: true, force: true });
});

/** `name{labels} value` lines of a Prometheus text body, as a map. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n"))
    if (line && !line.startsWith("#")) {
      const at = line.lastIndexOf(" ");
      out.set(line.slice(0, at), Number(line.slice(at + 1)));
    }
  return out;
}

test("capacity gauges match /v1/stores; every file store reports free and reclaimable bytes", async () => {
  const api = gw.httpUrl;
  const created = await fetch(`${api}/v1/images`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "m", size: 8 * 1024 * 1024 }),
  });
  expect(created.status).toBe(201);
  const data = new Uint8Array(4 * 1024 * 1024);
  for (let off = 0; off < data.byteLength; off += 65536)
    crypto.getRandomValues(data.subarray(off, off + 65536));
  expect((await fetch(`${api}/v1/images/m/data?offset=0`, { method: "PUT", body: data })).status).toBe(204);
  // Store counters refresh every few seconds: wait until every store counted the write.
  let stores: { id: string; chunks: number; bytes: number; freeBytes: number; reclaimableBytes: number }[] =
    [];
  for (let i = 0; i < 100; i++) {
    stores = (await (await fetch(`${api}/v1/stores`)).json()).stores;
    if (stores.reduce((n, s) => n + (s.bytes ?? 0), 0) >= 2 * data.byteLength) break;
    await Bun.sleep(100);
  }
  const m = samples(await (await fetch(`${api}/metrics`)).text());
  expect(stores.reduce((n, s) => n + s.bytes, 0)).toBeGreaterThanOrEqual(2 * data.byteLength); // 2 replicas
  for (const s of stores) {
    expect(m.get(`blockmend_store_used_bytes{store="${s.id}"}`)).toBe(s.bytes);
    expect(m.get(`blockmend_store_chunks{store="${s.id}"}`)).toBe(s.chunks);
    expect(m.get(`blockmend_store_free_bytes{store="${s.id}"}`)).toBe(s.freeBytes);
    expect(s.freeBytes).toBeGreaterThan(0);
    expect(m.get(`blockmend_store_reclaimable_bytes{store="${s.id}"}`)).toBe(s.reclaimableBytes);
    expect(s.reclaimableBytes).toBeGreaterThanOrEqual(0);
  }
}, 30_000);

test("a 150 ms stall of the gateway's thread is in the event loop delay histogram", async () => {
  const url = `${gw.httpUrl}/metrics`;
  const before = samples(await (await fetch(url)).text());
  const over = (m: Map<string, number>) =>
    m.get('blockmend_event_loop_delay_seconds_bucket{le="+Inf"}')! -
    m.get('blockmend_event_loop_delay_seconds_bucket{le="0.1"}')!;
  const t = performance.now();
  while (performance.now() - t < 150); // the gateway runs on this thread
  await Bun.sleep(100);
  const after = samples(await (await fetch(url)).text());
  expect(after.get("blockmend_event_loop_delay_seconds_count")!).toBeGreaterThan(
    before.get("blockmend_event_loop_delay_seconds_count")!,
  );
  expect(over(after) - over(before)).toBeGreaterThanOrEqual(1);
  expect(after.get("blockmend_event_loop_delay_max_seconds")!).toBeGreaterThanOrEqual(0.13);
  // Buckets are cumulative.
  let last = 0;
  for (const le of [
    "0.001",
    "0.002",
    "0.005",
    "0.01",
    "0.02",
    "0.05",
    "0.1",
    "0.25",
    "0.5",
    "1",
    "2.5",
    "+Inf",
  ]) {
    const v = after.get(`blockmend_event_loop_delay_seconds_bucket{le="${le}"}`)!;
    expect(v).toBeGreaterThanOrEqual(last);
    last = v;
  }
});
