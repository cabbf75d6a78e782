/**
 * The dashboard chart's data: quantiles from the latency histogram's change over an
 * interval, throughput from byte counters, and marks for store and heal changes.
 */
import { describe, expect, test } from "bun:test";
import { Listeners } from "../../../gateway/_listeners.ts";
import { LATENCY_BUCKETS, LatencyMonitor } from "../../../gateway/heal/latency-monitor.ts";
import { HISTORY_MS, histogramQuantile, IoTimeline } from "../../../gateway/http/io-timeline.ts";

function buckets(at: Record<number, number>): number[] {
  const b = new Array<number>(LATENCY_BUCKETS.length + 1).fill(0);
  for (const [i, n] of Object.entries(at)) b[Number(i)] = n;
  return b;
}

describe("histogramQuantile", () => {
  test("is null without requests", () => {
    expect(histogramQuantile(0.5, buckets({}))).toBeNull();
  });

  test("interpolates within the bucket the rank falls in", () => {
    // 100 requests between 1 and 2.5 ms (bucket 2): the median is half way.
    expect(histogramQuantile(0.5, buckets({ 2: 100 }))).toBeCloseTo(0.00175, 6);
    // 90 fast (<= 0.5 ms), 10 between 50 and 100 ms: p99 is 90% into the slow bucket.
    const b = buckets({ 0: 90, 7: 10 });
    expect(histogramQuantile(0.5, b)).toBeLessThanOrEqual(0.0005);
    expect(histogramQuantile(0.99, b)).toBeCloseTo(0.05 + 0.05 * 0.9, 6);
  });

  test("answers the largest bound for requests beyond it", () => {
    expect(histogramQuantile(0.99, buckets({ [LATENCY_BUCKETS.length]: 5 }))).toBe(10);
  });
});

function timeline() {
  let now = 1_000_000;
  const latency = new LatencyMonitor();
  let healed = 0;
  let healing: string[] = [];
  const wentDown = new Listeners<[string, string]>();
  const returned = new Listeners<[string]>();
  const t = new IoTimeline(
    { latency, healedBytes: () => healed, healing: () => healing, wentDown, returned },
    () => now,
  );
  return {
    t,
    latency,
    wentDown,
    returned,
    advance: (ms: number) => {
      now += ms;
    },
    heal: (bytes: number, stores: string[]) => {
      healed += bytes;
      healing = stores;
    },
  };
}

describe("IoTimeline", () => {
  test("a sample holds the interval's quantiles and rates, not the totals since start", () => {
    const f = timeline();
    for (let i = 0; i < 50; i++) f.latency.record("read", 0.003, 65536);
    f.advance(2000);
    const first = f.t.sample();
    expect(first.requestsPerSecond).toBe(25);
    expect(first.readBytesPerSecond).toBe(25 * 65536);
    expect(first.writeBytesPerSecond).toBe(0);
    expect(first.p50Ms).toBeGreaterThan(2.5);
    expect(first.p50Ms).toBeLessThanOrEqual(5);
    for (let i = 0; i < 10; i++) f.latency.record("write", 0.0004, 4096);
    f.heal(4 * 1024 * 1024, ["b"]);
    f.advance(2000);
    const second = f.t.sample();
    expect(second.requestsPerSecond).toBe(5);
    expect(second.readBytesPerSecond).toBe(0);
    expect(second.writeBytesPerSecond).toBe(5 * 4096);
    expect(second.healBytesPerSecond).toBe(2 * 1024 * 1024);
    expect(second.p99Ms).toBeLessThanOrEqual(0.5);
    f.advance(2000);
    const idle = f.t.sample();
    expect(idle.p50Ms).toBeNull();
    expect(idle.requestsPerSecond).toBe(0);
  });

  test("marks store down and up from the health events, heal start and end from the samples", () => {
    const f = timeline();
    f.t.start();
    try {
      const heard: string[] = [];
      f.t.marked.add((m) => heard.push(`${m.kind} ${m.store}`));
      f.wentDown.emit("b", "connection refused");
      f.advance(1000);
      f.returned.emit("b");
      f.heal(0, ["b"]);
      f.t.sample();
      f.heal(0, []);
      f.t.sample();
      expect(heard).toEqual(["store-down b", "store-up b", "heal-start b", "heal-end b"]);
      expect(f.t.marks().map((m) => m.text)).toEqual([
        "store b down: connection refused",
        "store b answers again",
        "heal of store b started",
        "heal of store b ended",
      ]);
    } finally {
      f.t.stop();
    }
    f.wentDown.emit("a", "gone");
    expect(f.t.marks().some((m) => m.store === "a")).toBe(false); // stopped: no longer listening
  });

  test("keeps only the last HISTORY_MS", () => {
    const f = timeline();
    f.t.sample();
    f.advance(HISTORY_MS / 2);
    f.t.sample();
    f.advance(HISTORY_MS / 2 + 1);
    f.t.sample();
    expect(f.t.samples()).toHaveLength(2);
  });
});
