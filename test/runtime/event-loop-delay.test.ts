/** `runtime/event-loop-delay.ts`: a blocked event loop shows up in the histogram and the maximum. */
import { expect, test } from "bun:test";
import { EventLoopDelay, LOOP_DELAY_BUCKETS } from "../../runtime/event-loop-delay.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("a 120 ms busy loop is sampled as a delay of about that much; an idle loop as small ones", async () => {
  const d = new EventLoopDelay(10);
  d.start();
  try {
    await sleep(200);
    expect(d.count).toBeGreaterThan(5);
    expect(d.max).toBeLessThan(0.1); // idle (a shared machine may add tens of ms, not 100)
    const t = performance.now();
    while (performance.now() - t < 120); // block the thread
    await sleep(50);
    expect(d.max).toBeGreaterThanOrEqual(0.1);
    expect(d.max).toBeLessThan(1);
    const over100ms = d.counts.slice(LOOP_DELAY_BUCKETS.indexOf(0.1) + 1).reduce((a, b) => a + b, 0);
    expect(over100ms).toBeGreaterThanOrEqual(1);
    expect(d.sum).toBeGreaterThanOrEqual(d.max);
  } finally {
    d.stop();
  }
});

test("record sorts samples into the Prometheus buckets (le: upper bound inclusive)", () => {
  const d = new EventLoopDelay();
  d.record(0.001);
  d.record(0.0011);
  d.record(3);
  expect(d.counts[0]).toBe(1);
  expect(d.counts[1]).toBe(1);
  expect(d.counts.at(-1)).toBe(1);
  expect(d.count).toBe(3);
  expect(d.max).toBe(3);
});
