/**
 * Every JSON body and query of the gateway API goes through one schema (issue 9): unknown
 * keys, wrong types and absurd values are 400 naming the field, in the one error shape,
 * and change nothing.
 */
import { afterEach, expect, test } from "bun:test";
import { NO_PINS } from "../../../gateway/backup/backup-cluster.ts";
import { BackupClusterAdapter } from "../../../gateway/backup/backup-cluster-adapter.ts";
import { BackupJobs } from "../../../gateway/backup/backup-jobs.ts";
import { mountBackupRoutes } from "../../../gateway/backup/backup-routes.ts";
import { MemoryObjectStore } from "../../../gateway/backup/memory-object-store.ts";
import { LatencyMonitor } from "../../../gateway/heal/latency-monitor.ts";
import { HealThrottle } from "../../../gateway/heal/throttle.ts";
import { createGatewayApp } from "../../../gateway/http/http-api.ts";
import { mountStatusRoutes, type StatusSources } from "../../../gateway/http/status-api.ts";
import type { ImageService } from "../../../gateway/image/image-service.ts";
import { imageService } from "../image/_image-fixture.ts";

let services: ImageService[] = [];
afterEach(async () => {
  await Promise.all(services.map((s) => s.close()));
  services = [];
});

async function setup() {
  const { service } = await imageService();
  services.push(service);
  const throttle = new HealThrottle(new LatencyMonitor());
  const maintenanceCalls: [string, boolean][] = [];
  const sources = {
    throttle,
    maintenance: async (store: string, on: boolean) => {
      maintenanceCalls.push([store, on]);
      return { stamped: 0 };
    },
  } as unknown as StatusSources;
  const app = createGatewayApp(service, { routes: (a) => mountStatusRoutes(a, sources) });
  const send = (method: string, path: string, body?: unknown) =>
    app.request(`http://127.0.0.1${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
  return { service, throttle, maintenanceCalls, send };
}

/** A 400 whose message names `field`, with the code expected. */
async function refused(res: Response, code: string, ...words: string[]): Promise<void> {
  expect(res.status).toBe(400);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(Object.keys(body)).toEqual(["error"]);
  expect(body.error.code).toBe(code);
  for (const w of words) expect(body.error.message).toContain(w);
}

test("PUT /v1/heal/limits refuses 1 B/s, a concurrency of 0.5, 1e300, a string and an unknown key, naming each, and keeps the limits", async () => {
  const { send, throttle } = await setup();
  const before = throttle.limits();
  await refused(
    await send("PUT", "/v1/heal/limits", { rateBytesPerSecond: 1 }),
    "out_of_range",
    '"rateBytesPerSecond"',
    "at least 65536",
  );
  await refused(
    await send("PUT", "/v1/heal/limits", { concurrency: 0.5 }),
    "bad_request",
    '"concurrency"',
    "whole number",
  );
  await refused(
    await send("PUT", "/v1/heal/limits", { ceilingBytesPerSecond: 1e300 }),
    "out_of_range",
    '"ceilingBytesPerSecond"',
    "at most",
  );
  await refused(
    await send("PUT", "/v1/heal/limits", { floorBytesPerSecond: "fast" }),
    "bad_request",
    '"floorBytesPerSecond"',
  );
  await refused(
    await send("PUT", "/v1/heal/limits", { rateBytesPerSecnd: 1048576 }),
    "bad_request",
    'unknown field "rateBytesPerSecnd"',
  );
  await refused(await send("PUT", "/v1/heal/limits", "[1,2]"), "bad_request");
  expect(throttle.limits()).toEqual(before);
  const ok = await send("PUT", "/v1/heal/limits", { concurrency: 8, scrubBytesPerSecond: 1048576 });
  expect(ok.status).toBe(200);
  expect(throttle.limits().concurrency).toBe(8);
});

test("POST /v1/images refuses a negative size, more than 1 PiB, chunkSize 3000, an unknown key and a bad name, and creates nothing", async () => {
  const { send, service } = await setup();
  await refused(
    await send("POST", "/v1/images", { name: "a", size: -512 }),
    "out_of_range",
    '"size"',
    "negative",
  );
  await refused(
    await send("POST", "/v1/images", { name: "a", size: 2 ** 50 + 512 }),
    "out_of_range",
    '"size"',
    "1 PiB",
  );
  await refused(
    await send("POST", "/v1/images", { name: "a", size: 1000 }),
    "out_of_range",
    '"size"',
    "512-byte sectors",
  );
  await refused(
    await send("POST", "/v1/images", { name: "a", size: 4096, chunkSize: 3000 }),
    "out_of_range",
    '"chunkSize"',
    "power of two",
  );
  await refused(
    await send("POST", "/v1/images", { name: "a", size: 4096, chunksize: 65536 }),
    "bad_request",
    'unknown field "chunksize"',
  );
  await refused(await send("POST", "/v1/images", { name: "../x", size: 4096 }), "bad_request", '"name"');
  await refused(await send("POST", "/v1/images", { name: "a", size: true }), "bad_request", '"size"');
  await refused(await send("POST", "/v1/images", { name: "a", from: "nosnap" }), "bad_request", '"from"');
  expect(await service.list()).toEqual([]);
});

test("a JSON route wants Content-Type: application/json", async () => {
  const { service } = await setup();
  const app = createGatewayApp(service);
  const res = await app.request("http://127.0.0.1/v1/images", {
    method: "POST",
    body: JSON.stringify({ name: "a", size: 4096 }),
  });
  await refused(res, "bad_request", "Content-Type: application/json");
});

test("the maintenance body is {on: boolean} and nothing else", async () => {
  const { send, maintenanceCalls } = await setup();
  await refused(
    await send("PUT", "/v1/stores/a/maintenance", { on: "yes" }),
    "bad_request",
    '"on"',
    "true or false",
  );
  await refused(
    await send("PUT", "/v1/stores/a/maintenance", { on: true, force: true }),
    "bad_request",
    'unknown field "force"',
  );
  await refused(await send("PUT", "/v1/stores/a/maintenance", {}), "bad_request", '"on"');
  expect(maintenanceCalls).toEqual([]);
  expect((await send("PUT", "/v1/stores/a/maintenance", { on: true })).status).toBe(200);
  expect(maintenanceCalls).toEqual([["a", true]]);
});

test("queries: unknown parameters, negative and fractional offsets are 400 naming the parameter", async () => {
  const { send } = await setup();
  expect((await send("POST", "/v1/images", { name: "q", size: 1048576 })).status).toBe(201);
  await refused(
    await send("POST", "/v1/images/q/zero?offset=0&length=512&force=1"),
    "bad_request",
    'unknown parameter "force"',
  );
  await refused(await send("POST", "/v1/images/q/zero?offset=-1&length=512"), "bad_request", '"offset"');
  await refused(await send("POST", "/v1/images/q/zero?offset=0"), "bad_request", '"length"');
  await refused(await send("GET", "/v1/images/q/map?offset=1.5"), "bad_request", '"offset"');
  await refused(await send("GET", "/v1/images/q/map?ofset=0"), "bad_request", 'unknown parameter "ofset"');
  await refused(
    await send("PUT", "/v1/images/q/data?offset=99999999999999999", ""),
    "bad_request",
    '"offset"',
  );
  await refused(await send("PATCH", "/v1/images/q", { size: 2 ** 51 }), "out_of_range", '"size"');
  await refused(
    await send("POST", "/v1/images/q/snapshots", { name: "s", at: 1 }),
    "bad_request",
    'unknown field "at"',
  );
});

test("the backup routes: an unknown kind or field, a bad backup id and a repackBelow of 2 are 400 naming the field; no job starts", async () => {
  const { service } = await imageService();
  services.push(service);
  const jobs = new BackupJobs({
    cluster: new BackupClusterAdapter(service),
    pins: NO_PINS,
    log: () => {},
    openStore: () => new MemoryObjectStore(),
  });
  const app = createGatewayApp(service, { routes: (a) => mountBackupRoutes(a, jobs) });
  const send = (path: string, body: unknown) =>
    app.request(`http://127.0.0.1${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  const t = { target: "s3://bucket/prefix?endpoint=http://127.0.0.1:1" };
  await refused(await send("/v1/backups/jobs", { ...t, kind: "backup" }), "bad_request", '"kind"');
  await refused(
    await send("/v1/backups/jobs", { ...t, kind: "create", image: "vm", snapshots: "x" }),
    "bad_request",
    '"snapshots"',
  );
  await refused(
    await send("/v1/backups/jobs", { ...t, kind: "verify", backup: "../x" }),
    "bad_request",
    '"backup"',
    "not a backup id",
  );
  await refused(
    await send("/v1/backups/jobs", { ...t, kind: "prune", keepLast: 1, repackBelow: 2 }),
    "out_of_range",
    '"repackBelow"',
  );
  await refused(
    await send("/v1/backups/list", { ...t, credentials: { accessKeyId: 1, secretAccessKey: "s" } }),
    "bad_request",
    '"credentials.accessKeyId"',
  );
  expect(jobs.list()).toEqual([]);
});

test("POST /v1/images takes a size as text with the CLI's units, and refuses 10GB naming the field", async () => {
  const { send } = await setup();
  const made = await send("POST", "/v1/images", { name: "texty", size: "16MiB" });
  expect(made.status).toBe(201);
  expect(((await made.json()) as { size: number }).size).toBe(16 * 1024 * 1024);
  await refused(
    await send("POST", "/v1/images", { name: "t2", size: "10GB" }),
    "bad_request",
    '"size"',
    "ambiguous",
  );
  await refused(
    await send("POST", "/v1/images", { name: "t2", size: "1000" }),
    "out_of_range",
    '"size"',
    "512-byte",
  );
  expect((await send("GET", "/v1/images/t2")).status).toBe(404);
});
