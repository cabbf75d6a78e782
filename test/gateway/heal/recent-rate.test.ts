/** The heal's recent copy rate (gateway/heal/recent-rate.ts), on a simulated clock. */
import { expect, test } from "bun:test";
import { RecentRate } from "../../../gateway/heal/recent-rate.ts";

test("the rate is that of the last ten seconds, not the average since the heal began", () => {
  const r = new RecentRate();
  expect(r.rate(0)).toBe(0);
  // 20 s at 1 MB/s, then 10 s at 10 MB/s (the throttle opened up).
  for (let s = 0; s < 20; s++) r.add(1e6, s * 1000);
  for (let s = 20; s < 30; s++) r.add(10e6, s * 1000);
  expect(r.rate(29_999)).toBeCloseTo(10e6, -5);
});

test("young: over the time since the first copy, at least a second", () => {
  const r = new RecentRate();
  r.add(4e6, 5000); // after five seconds of planning, the first batch
  expect(r.rate(5100)).toBe(4e6); // one second's span, not 0.1 s
  r.add(4e6, 7000);
  expect(r.rate(7000)).toBe(4e6); // 8 MB over 2 s
});
