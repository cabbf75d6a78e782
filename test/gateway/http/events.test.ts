/**
 * The event stream's rules, over a state source the test controls, served by the real
 * HTTP server (runtime/serve-http.ts): a snapshot first on every connect, then only the
 * sections that changed, in order; samples and marks relayed; no reads without a
 * stream; the cap (503); heartbeats; a failing read reported, not fatal; close() ends
 * every stream at once.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { Hono } from "hono";
import { Listeners } from "../../../gateway/_listeners.ts";
import { LatencyMonitor } from "../../../gateway/heal/latency-monitor.ts";
import { EventStreams, eventsHandler } from "../../../gateway/http/events.ts";
import { IoTimeline } from "../../../gateway/http/io-timeline.ts";
import { type HttpServer, serveHttp } from "../../../runtime/serve-http.ts";
import { type EventReader, openEvents } from "../../support/event-stream.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(options: { maxStreams?: number; heartbeatMs?: number } = {}) {
  const state = { stores: ["a", "b"] as unknown, images: [] as unknown };
  let reads = 0;
  let fail: string | null = null;
  const wentDown = new Listeners<[string, string]>();
  const timeline = new IoTimeline({
    latency: new LatencyMonitor(),
    healedBytes: () => 0,
    healing: () => [],
    wentDown,
    returned: new Listeners<[string]>(),
  });
  timeline.start();
  const streams = new EventStreams(
    {
      read: async () => {
        reads++;
        if (fail) throw new Error(fail);
        return structuredClone(state);
      },
      timeline,
      gateway: { id: "gw-test", startedAt: "2026-01-01T00:00:00.000Z" },
    },
    { intervalMs: 50, ...options },
  );
  const app = new Hono();
  app.get("/v1/events", eventsHandler(streams));
  const server: HttpServer = await serveHttp(app.fetch, { hostname: "127.0.0.1", port: 0 });
  const readers: EventReader[] = [];
  cleanups.push(async () => {
    for (const r of readers) await r.cancel();
    streams.close();
    timeline.stop();
    await server.close();
  });
  const open = async () => {
    const r = await openEvents(`${server.url}/v1/events`);
    readers.push(r);
    return r;
  };
  return {
    state,
    streams,
    timeline,
    wentDown,
    server,
    open,
    reads: () => reads,
    setFail: (m: string | null) => {
      fail = m;
    },
  };
}

describe("GET /v1/events", () => {
  test("starts with a snapshot of every section, then sends only what changed, in order", async () => {
    const s = await setup();
    const r = await s.open();
    const first = await r.next();
    expect(first.type).toBe("snapshot");
    expect(first.data.sections).toEqual({ stores: ["a", "b"], images: [] });
    expect(first.data.gateway).toEqual({ id: "gw-test", startedAt: "2026-01-01T00:00:00.000Z" });
    expect(first.data.samples).toEqual([]);
    expect(first.data.problem).toBeNull();
    s.state.images = [{ name: "web01" }];
    const change = await r.next();
    expect(change.type).toBe("change");
    expect(change.data.sections).toEqual({ images: [{ name: "web01" }] }); // stores did not change
    s.state.stores = ["a"];
    s.state.images = [];
    const next = await r.next();
    expect(next.data.sections).toEqual({ stores: ["a"], images: [] });
    expect(next.id).toBeGreaterThan(change.id);
    expect(change.id).toBeGreaterThan(first.id);
  });

  test("a second stream gets a snapshot of the current state, and both see the next change", async () => {
    const s = await setup();
    const r1 = await s.open();
    await r1.next();
    s.state.images = ["x"];
    await r1.next();
    const r2 = await s.open();
    const snap = await r2.next();
    expect(snap.type).toBe("snapshot");
    expect(snap.data.sections).toEqual({ stores: ["a", "b"], images: ["x"] });
    s.state.images = ["y"];
    const [c1, c2] = await Promise.all([r1.next(), r2.next()]);
    expect(c1.data.sections).toEqual({ images: ["y"] });
    expect(c2).toEqual(c1);
  });

  test("relays samples and marks, and the snapshot carries the recent ones", async () => {
    const s = await setup();
    s.timeline.sample();
    const r = await s.open();
    const snap = await r.next();
    expect(snap.data.samples).toHaveLength(1);
    s.wentDown.emit("b", "connection refused");
    const mark = await r.next();
    expect(mark.type).toBe("mark");
    expect(mark.data).toMatchObject({ kind: "store-down", store: "b" });
    s.timeline.sample();
    const sample = await r.next();
    expect(sample.type).toBe("sample");
    expect(sample.data).toHaveProperty("p99Ms");
  });

  test("reads the state only while a stream is open", async () => {
    const s = await setup();
    await Bun.sleep(200);
    expect(s.reads()).toBe(0);
    const r = await s.open();
    await r.next();
    await Bun.sleep(200);
    expect(s.reads()).toBeGreaterThan(1);
    await r.cancel();
    await Bun.sleep(200);
    const after = s.reads();
    await Bun.sleep(300);
    expect(s.reads()).toBe(after);
    expect(s.streams.size).toBe(0);
  });

  test("refuses streams beyond the cap with 503 and Retry-After", async () => {
    const s = await setup({ maxStreams: 2 });
    await s.open();
    await s.open();
    const res = await fetch(`${s.server.url}/v1/events`);
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("5");
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("too_many_streams");
  });

  test("sends heartbeat comments", async () => {
    const s = await setup({ heartbeatMs: 100 });
    const r = await s.open();
    await r.next();
    await Bun.sleep(350);
    s.state.images = ["poke"]; // an event, so the reader reads what came before it
    await r.next();
    expect(r.text.match(/^: heartbeat$/gm)?.length ?? 0).toBeGreaterThanOrEqual(2);
  });

  test("a failing read is reported as the problem, the sections keep their last values", async () => {
    const s = await setup();
    const r = await s.open();
    await r.next();
    s.setFail("no majority of the head holders answered");
    const bad = await r.next();
    expect(bad.type).toBe("change");
    expect(bad.data.sections).toEqual({});
    expect((bad.data.problem as { message: string }).message).toContain("no majority");
    s.setFail(null);
    const good = await r.next();
    expect(good.data.problem).toBeNull();
    const r2 = await s.open();
    expect((await r2.next()).data.sections).toEqual({ stores: ["a", "b"], images: [] });
  });

  test("a reader that falls too far behind is dropped, not buffered for", async () => {
    const s = await setup();
    const big = "x".repeat(1024 * 1024);
    const res = s.streams.open(); // a body nobody reads: its queue only grows
    expect(res.status).toBe(200);
    for (let i = 0; i < 8 && s.streams.size > 0; i++) {
      s.state.images = [`${i}${big}`];
      await Bun.sleep(120);
    }
    expect(s.streams.size).toBe(0);
    await res.body?.cancel().catch(() => {});
  });

  test("close() ends every stream at once and refuses new ones", async () => {
    const s = await setup();
    const r1 = await s.open();
    const r2 = await s.open();
    await r1.next();
    await r2.next();
    const t = Date.now();
    s.streams.close();
    await r1.end(2000);
    await r2.end(2000);
    expect(Date.now() - t).toBeLessThan(2000);
    expect((await fetch(`${s.server.url}/v1/events`)).status).toBe(503);
    const closing = Date.now();
    await s.server.close();
    expect(Date.now() - closing).toBeLessThan(2000); // nothing held the listener open
  });
});
