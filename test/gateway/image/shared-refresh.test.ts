import { describe, expect, test } from "bun:test";
import { SharedRefresh } from "../../../gateway/image/shared-refresh.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("SharedRefresh", () => {
  test("a caller that arrives after a run started does not join it (slack 0)", async () => {
    const r = new SharedRefresh();
    let runs = 0;
    const refresh = async () => {
      runs++;
      await sleep(20);
    };
    const a = r.run(refresh);
    await sleep(5);
    const b = r.run(refresh); // arrived after the first run started: it may have missed a change
    await Promise.all([a, b]);
    expect(runs).toBe(2);
  });

  test("callers within the slack join the run in progress and share its outcome", async () => {
    const r = new SharedRefresh(1000);
    let runs = 0;
    const refresh = async () => {
      runs++;
      await sleep(20);
      throw new Error("register unreachable");
    };
    const results = await Promise.allSettled([r.run(refresh), r.run(refresh), r.run(refresh)]);
    expect(runs).toBe(1);
    expect(results.map((x) => x.status)).toEqual(["rejected", "rejected", "rejected"]);
    // Finished runs are not joined: the next caller starts afresh.
    await r.run(async () => {
      runs++;
    });
    expect(runs).toBe(2);
  });

  test("passes the run's monotonic start time", async () => {
    const r = new SharedRefresh();
    const before = performance.now();
    let started = -1;
    await r.run(async (s) => {
      started = s;
    });
    expect(started).toBeGreaterThanOrEqual(before);
    expect(started).toBeLessThanOrEqual(performance.now());
  });
});
