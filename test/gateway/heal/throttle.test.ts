/**
 * The heal throttle's control (gateway/heal/throttle.ts): the baseline learns only from
 * steady windows, the rate holds inside the band, falls in proportion to an overshoot and
 * grows below it; a noisy but tolerable VM p99 does not walk it down to the floor.
 */
import { describe, expect, test } from "bun:test";
import { LatencyMonitor } from "../../../gateway/heal/latency-monitor.ts";
import {
  DEFAULT_HEAL_LIMITS,
  GROW_RATIO,
  HealThrottle,
  LatencyBaseline,
  nextRate,
  TARGET_RATIO,
} from "../../../gateway/heal/throttle.ts";
import { seededRandom } from "../../support/faulty-store.ts";

const MiB = 1024 * 1024;
const limits = { floorBytesPerSecond: 4 * MiB, ceilingBytesPerSecond: 1024 * MiB };

describe("nextRate", () => {
  test("no VM I/O: doubles up to the ceiling", () => {
    expect(nextRate(32 * MiB, null, 0.005, limits)).toBe(64 * MiB);
    expect(nextRate(800 * MiB, null, 0.005, limits)).toBe(1024 * MiB);
  });
  test("inside the band (1.1x to 1.3x the baseline) it holds", () => {
    expect(nextRate(32 * MiB, 0.005 * 1.2, 0.005, limits)).toBe(32 * MiB);
    expect(nextRate(32 * MiB, 0.005 * (GROW_RATIO + 0.01), 0.005, limits)).toBe(32 * MiB);
  });
  test("below the band it grows by a quarter", () => {
    expect(nextRate(32 * MiB, 0.005, 0.005, limits)).toBe(40 * MiB);
  });
  test("above the band it falls in proportion to the overshoot, by half at most, not below the floor", () => {
    expect(nextRate(32 * MiB, 0.005 * 1.5, 0.005, limits)).toBeCloseTo(32 * MiB * (TARGET_RATIO / 1.5), 0);
    expect(nextRate(32 * MiB, 0.05, 0.005, limits)).toBe(16 * MiB);
    expect(nextRate(5 * MiB, 0.05, 0.005, limits)).toBe(4 * MiB);
  });
  test("a rate the copies did not use does not grow, but still falls", () => {
    expect(nextRate(32 * MiB, null, 0.005, limits, false)).toBe(32 * MiB);
    expect(nextRate(32 * MiB, 0.005, 0.005, limits, false)).toBe(32 * MiB);
    expect(nextRate(32 * MiB, 0.05, 0.005, limits, false)).toBe(16 * MiB);
  });
  test("no baseline yet: grows slowly", () => {
    expect(nextRate(32 * MiB, 0.01, null, limits)).toBeCloseTo(32 * MiB * 1.1, 0);
  });
});

test("the baseline is the median of the steady windows, robust to a few stalls", () => {
  const b = new LatencyBaseline();
  expect(b.value).toBeNull();
  for (let i = 0; i < 30; i++) b.add(0.004 + (i % 3) * 0.001);
  b.add(2); // a store hung for a moment before it was seen down
  b.add(1.5);
  expect(b.value).toBe(0.005);
});

test("the baseline learns only while steady and idle: a store's absence or a heal never sets the bar", () => {
  const t = new HealThrottle(new LatencyMonitor());
  t.adapt(false, false, 0.001); // a store away: writes reach one replica, faster
  expect(t.baselineP99).toBeNull();
  t.adapt(false, true, 0.006);
  expect(t.baselineP99).toBe(0.006);
  t.adapt(true, false, 0.02); // a heal runs: the rate adapts, the baseline stays
  expect(t.baselineP99).toBe(0.006);
  expect(t.limits().rateBytesPerSecond).toBe(DEFAULT_HEAL_LIMITS.rateBytesPerSecond / 2);
});

test("a VM p99 that wanders inside the goal (up to 1.25x, seeded noise) keeps the heal rate up", () => {
  const random = seededRandom(7);
  const t = new HealThrottle(new LatencyMonitor());
  for (let i = 0; i < 40; i++) t.adapt(false, true, 0.005 * (0.9 + random() * 0.2));
  for (let i = 0; i < 120; i++) t.adapt(true, false, 0.005 * (1 + random() * 0.25));
  expect(t.limits().rateBytesPerSecond).toBeGreaterThan(DEFAULT_HEAL_LIMITS.rateBytesPerSecond);
});

test("a VM p99 well over the goal brings the rate to the floor", () => {
  const t = new HealThrottle(new LatencyMonitor());
  for (let i = 0; i < 10; i++) t.adapt(false, true, 0.005);
  for (let i = 0; i < 20; i++) t.adapt(true, false, 0.012);
  expect(t.limits().rateBytesPerSecond).toBe(DEFAULT_HEAL_LIMITS.floorBytesPerSecond);
});

test("while a heal plans (copies nothing) the rate does not grow, so its first copies do not burst at a grown rate", async () => {
  const t = new HealThrottle(new LatencyMonitor());
  for (let i = 0; i < 10; i++) t.adapt(false, true, 0.005);
  for (let i = 0; i < 10; i++) t.adapt(true, false, 0.005, false);
  expect(t.limits().rateBytesPerSecond).toBe(DEFAULT_HEAL_LIMITS.rateBytesPerSecond);
  t.adapt(true, false, 0.005, true); // copies used it: it grows by a quarter
  expect(t.limits().rateBytesPerSecond).toBe(DEFAULT_HEAL_LIMITS.rateBytesPerSecond * 1.25);
});

test("the throttle's own timer sees whether the copies used the rate", async () => {
  const t = new HealThrottle(new LatencyMonitor());
  t.start(() => true);
  await Bun.sleep(1300); // two steps with no VM I/O and no copies: no growth
  expect(t.limits().rateBytesPerSecond).toBe(DEFAULT_HEAL_LIMITS.rateBytesPerSecond);
  const copying = setInterval(() => void t.rate.take(2 * MiB), 50); // 40 MiB/s asked of 32
  await Bun.sleep(1300);
  clearInterval(copying);
  t.stop();
  expect(t.limits().rateBytesPerSecond).toBeGreaterThan(DEFAULT_HEAL_LIMITS.rateBytesPerSecond);
});
