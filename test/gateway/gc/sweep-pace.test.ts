/**
 * The sweep's pace (gateway/gc/sweep-pace.ts) over a real HealThrottle whose rate is at its
 * ceiling (as a noisy latency signal left it in bench/gc.ts): with VM I/O the cap holds the
 * sweep to its deletes per second; without, the throttle alone paces it.
 */
import { expect, test } from "bun:test";
import { sweepPace } from "../../../gateway/gc/sweep-pace.ts";
import { LatencyMonitor } from "../../../gateway/heal/latency-monitor.ts";
import { HealThrottle } from "../../../gateway/heal/throttle.ts";

/** Seconds that `deletes` take through `pace`, in batches of 128. */
async function sweepSeconds(pace: ReturnType<typeof sweepPace>, deletes: number): Promise<number> {
  const start = performance.now();
  await pace.during(async () => {
    for (let done = 0; done < deletes; done += 128) await pace.batch(Math.min(128, deletes - done));
  });
  return (performance.now() - start) / 1000;
}

test("with VM I/O a sweep keeps to the cap even when the throttle is at its ceiling; without, the throttle alone paces it", async () => {
  const throttle = new HealThrottle(new LatencyMonitor());
  throttle.setLimits({ rateBytesPerSecond: 1024 ** 3 }); // the ceiling: 65 536 deletes/s
  let vm = true;
  const pace = sweepPace(throttle, () => vm, 1000);
  // 1000 tokens of burst, then 1000 a second: 2500 deletes take about 1.5 s.
  const capped = await sweepSeconds(pace, 2500);
  expect(capped).toBeGreaterThan(1.3);
  expect(capped).toBeLessThan(5); // loose: a loaded machine only adds delay
  vm = false;
  const free = await sweepSeconds(pace, 2500); // 2500 x 16 KiB (SWEEP_CHUNK_COST) = 40 MiB of 1 GiB/s
  expect(free).toBeLessThan(0.5);
});
