/**
 * `GET /v1/events` of a real gateway process over real store processes (two data stores
 * and a witness), without a browser: the first event is a snapshot of everything the
 * dashboard shows; a SIGKILLed store then arrives as changes, in order (store down,
 * safe-to-remove of the other false, a mark); a gateway stopped with SIGTERM ends the
 * stream at once (clean shutdown, not the listener's 5 s grace); and a reconnect to the
 * restarted gateway, on the same address, gets a full snapshot again, with no history.
 * Run under Bun and, by scripts/test.sh, with the processes under Deno.
 */
import { afterAll, expect, test } from "bun:test";
import { type EventReader, openEvents, type TestEvent } from "../../support/event-stream.ts";
import { startBlockmend } from "../../support/processes.ts";
import { send, TestCluster, waitFor, waitInSync } from "../../support/test-cluster.ts";

const MiB = 1024 * 1024;
let cluster: TestCluster | undefined;
const readers: EventReader[] = [];

afterAll(async () => {
  for (const r of readers) await r.cancel();
  await cluster?.close();
});

/** A free loopback port (bound and released). */
function freePort(): number {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = s.port!;
  s.stop(true);
  return port;
}

/** `blockmend gateway` on the cluster's stores with its HTTP API on `port`, keeping `stateDir`. */
function startGatewayOn(c: TestCluster, port: number, stateDir: string) {
  return startBlockmend([
    "gateway",
    ...Object.entries(c.urls()).flatMap(([id, url]) => ["--store", `${id}=${url}`]),
    ...["--replicas", "2", "--min-replicas", "1", "--nbd", "127.0.0.1:0", "--http", `127.0.0.1:${port}`],
    ...["--state-dir", stateDir],
  ]);
}

type Sections = {
  stores: { stores: { id: string; state: string }[] };
  heal: { stores: { id: string }[]; limits: Record<string, number> };
  images: { name: string; size: number; owner: string | null; snapshots: { name: string }[] }[];
  safeToRemove: Record<string, { safe: boolean; reasons: string[] }>;
};

function expectFullSnapshot(e: TestEvent, gatewayId: string): Sections {
  expect(e.type).toBe("snapshot");
  const d = e.data as { gateway: { id: string }; sections: Sections; samples: unknown[]; marks: unknown[] };
  expect(d.gateway.id).toBe(gatewayId);
  expect(d.sections.stores.stores.map((s) => s.id)).toEqual(["a", "b", "w"]);
  expect(d.sections.heal.stores.map((s) => s.id)).toEqual(["a", "b"]);
  expect(d.sections.heal.limits.rateBytesPerSecond).toBeGreaterThan(0);
  expect(d.sections.images.map((i) => i.name)).toEqual(["web01"]);
  expect(d.sections.images[0]!.snapshots.map((s) => s.name)).toEqual(["first"]);
  expect(Object.keys(d.sections.safeToRemove).sort()).toEqual(["a", "b", "w"]);
  expect(Array.isArray(d.samples)).toBe(true);
  expect(Array.isArray(d.marks)).toBe(true);
  return d.sections;
}

test("snapshot first, then changes in order; a reconnect to a restarted gateway starts from a full snapshot", async () => {
  cluster = await TestCluster.start(["a", "b", "w"]);
  const port = freePort();
  const g0 = await cluster.startGateway();
  const stateDir = g0.stateDir;
  await cluster.stopGateway(g0, "SIGTERM");
  let gw = await startGatewayOn(cluster, port, stateDir);
  const gatewayId = /blockmend gateway (\S+):/.exec(gw.output())![1]!;
  await send(gw, "POST", "/v1/images", { name: "web01", size: 64 * MiB });
  await send(gw, "POST", "/v1/images/web01/snapshots", { name: "first" });
  await waitInSync(gw);

  const r = await openEvents(`${gw.url}/v1/events`);
  readers.push(r);
  const first = await r.next(15_000);
  const sections = expectFullSnapshot(first, gatewayId);
  expect(sections.stores.stores.every((s) => s.state === "in-sync")).toBe(true);
  expect(sections.safeToRemove.a!.safe).toBe(true);

  await cluster.stopStore("b");
  const killedAt = Date.now();
  const { seen } = await r.until((e) => {
    const s = (e.data.sections as Partial<Sections> | undefined)?.safeToRemove;
    return e.type === "change" && s?.a?.safe === false;
  }, 15_000);
  const changes = seen.filter((e) => e.type === "change");
  const down = changes.find((e) =>
    (e.data.sections as Partial<Sections>).stores?.stores.some((s) => s.id === "b" && s.state === "down"),
  );
  expect(down, "a change with store b down").toBeDefined();
  expect(Date.now() - killedAt).toBeLessThan(5_000);
  const a = (seen.at(-1)!.data.sections as Sections).safeToRemove.a!;
  expect(a.reasons.join(" ")).toContain("web01");
  // In order: ids count up from the snapshot's, each event once.
  const ids = [first.id, ...seen.map((e) => e.id)];
  for (let i = 1; i < ids.length; i++) expect(ids[i]!).toBeGreaterThan(ids[i - 1]!);
  // The timeline marked it (now, or by the time we look: marks come as their own events).
  if (!seen.some((e) => e.type === "mark"))
    await r.until((e) => e.type === "mark" && e.data.kind === "store-down" && e.data.store === "b", 10_000);

  await cluster.startStore("b");
  await r.until(
    (e) =>
      e.type === "change" &&
      ((e.data.sections as Partial<Sections>).stores?.stores.every((s) => s.state === "in-sync") ?? false),
    60_000,
  );

  // Clean shutdown: SIGTERM ends the stream at once and the process exits well inside the
  // listener's 5 s grace (an open stream held it for the whole grace before).
  const stopping = Date.now();
  gw.proc.kill("SIGTERM");
  await r.end(4_000);
  await gw.proc.exited;
  expect(Date.now() - stopping).toBeLessThan(4_000);
  expect(gw.output()).toContain("stopped (SIGTERM)");

  // The page reconnects to the same address: a full snapshot, no history needed.
  gw = await startGatewayOn(cluster, port, stateDir);
  await waitFor("the restarted gateway to answer", async () => (await fetch(`${gw.url}/v1/health`)).ok);
  const again = await openEvents(`${gw.url}/v1/events`);
  readers.push(again);
  const snap = await again.next(15_000);
  expectFullSnapshot(snap, gatewayId);
  expect(snap.id).toBe(1); // a new process: its own numbering, from the start
  expect(
    (snap.data.gateway as { startedAt: string }).startedAt >
      (first.data.gateway as { startedAt: string }).startedAt,
  ).toBe(true);
  await again.cancel();
}, 180_000);
