/**
 * How a garbage collection sweep is paced on a gateway: against the heal throttle's byte
 * rate (`SWEEP_CHUNK_COST` per delete; the rate adapts to VM latency while the sweep runs),
 * and, while VMs do I/O, at most `SWEEP_DELETES_PER_SECOND_UNDER_LOAD` deletes a second
 * whatever that rate grew to.
 */

import { RateLimiter } from "../heal/rate-limiter.ts";
import type { HealThrottle } from "../heal/throttle.ts";
import { SWEEP_CHUNK_COST, type SweepPace } from "./collector.ts";

/**
 * The most deletes a second a sweep makes while VMs do I/O: the throttle's latency signal
 * (a p99 of half a second of requests) is noisy enough that it grew to its ceiling during
 * passes, and a pass then swept 26 000 chunks a second with the VM's p99 at 1.8x its
 * baseline; capped, 1.02-1.07x (bench/gc.ts). With no VM I/O the throttle alone paces it.
 */
export const SWEEP_DELETES_PER_SECOND_UNDER_LOAD = 2048;

/** The pace of this gateway's sweeps; `vmActive` says whether VMs did I/O in the last second. */
export function sweepPace(
  throttle: Pick<HealThrottle, "sharedBy" | "rate">,
  vmActive: () => boolean,
  capPerSecond = SWEEP_DELETES_PER_SECOND_UNDER_LOAD,
): SweepPace {
  const cap = new RateLimiter(capPerSecond);
  return {
    during: (sweep) => throttle.sharedBy(sweep),
    batch: async (chunks) => {
      await throttle.rate.take(chunks * SWEEP_CHUNK_COST);
      if (vmActive()) await cap.take(chunks);
    },
  };
}
