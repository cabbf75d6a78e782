import { expect, test } from "bun:test";
import { RateLimiter } from "../../../gateway/heal/rate-limiter.ts";

const KiB = 1024;

test("a large take is not starved by a stream of small ones (first come, first served)", async () => {
  const limiter = new RateLimiter(1024 * KiB);
  await limiter.take(1024 * KiB); // the bucket is empty now
  let stop = false;
  let small = 0;
  // Eight lanes of 64 KiB takes, like read-repairs, each asking again as soon as it got one.
  const lanes = Array.from({ length: 8 }, async () => {
    while (!stop) {
      await limiter.take(64 * KiB);
      small++;
    }
  });
  await Bun.sleep(300);
  const t = performance.now();
  await limiter.take(1024 * KiB); // a heal batch
  const waited = performance.now() - t;
  stop = true;
  await Promise.all(lanes);
  // Ahead of it: at most the 8 small takes queued (512 KiB) and the bucket's refill, ~1.5 s.
  expect(waited).toBeLessThan(2500);
  expect(small).toBeGreaterThan(0);
});

test("the average rate holds, and a rate raised while callers wait takes effect at once", async () => {
  const limiter = new RateLimiter(64 * KiB);
  await limiter.take(64 * KiB);
  const t = performance.now();
  const waiting = Promise.all([1, 2, 3].map(() => limiter.take(512 * KiB)));
  await Bun.sleep(200);
  limiter.rate = 4096 * KiB;
  await waiting;
  // At 64 KiB/s the three would take 24 s; at 4 MiB/s well under a second after the change.
  expect(performance.now() - t).toBeLessThan(1500);
});
