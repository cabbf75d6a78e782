/**
 * Status routes of the gateway, for the whole cluster from any gateway: every answer is
 * computed from the cluster record and the heads read fresh from the register
 * (`heal/cluster-status.ts`), never from what this gateway happens to have open.
 *
 *   GET /v1/stores                          per store: state, reasons, identity, maintenance, damage, lag
 *   GET /v1/stores/{id}/safe-to-remove      {"safe", "reasons", "maintenance", ...} (stores probed now)
 *   PUT /v1/stores/{id}/maintenance         {"on": true|false}: leaving, or back
 *   GET /v1/heal                            per store heal progress, from whichever gateway runs it
 *   GET /v1/heal/limits, PUT /v1/heal/limits   the heal throttle, changeable live
 *   GET /metrics                            Prometheus text format
 */

import type { Hono } from "hono";
import { type EventLoopDelay, LOOP_DELAY_BUCKETS } from "../../runtime/event-loop-delay.ts";
import type { ClusterStatus } from "../heal/cluster-status.ts";
import type { HealScheduler } from "../heal/heal-scheduler.ts";
import { LATENCY_BUCKETS, type LatencyMonitor } from "../heal/latency-monitor.ts";
import type { HealThrottle } from "../heal/throttle.ts";
import { jsonLimit } from "./_body-limits.ts";
import type { PathItem } from "./openapi.ts";
import { HealLimitsBody, MaintenanceBody, valid } from "./schemas.ts";

/** What the status routes read and do. */
export interface StatusSources {
  readonly status: ClusterStatus;
  readonly heal: HealScheduler;
  readonly throttle: HealThrottle;
  readonly latency: LatencyMonitor;
  /** How late this gateway's event loop runs (absent: not sampled). */
  readonly loopDelay?: EventLoopDelay;
  /** Folding of patch stacks on this gateway (absent: not reported). */
  readonly folding?: () => { pendingBlocks: number; foldedBlocks: number };
  /** Turns maintenance of a store on or off (and stamps every head). */
  readonly maintenance: (store: string, on: boolean) => Promise<{ stamped: number }>;
}

/** Mounts the status routes on `app` (use as `createGatewayApp`'s `routes`). */
export function mountStatusRoutes(app: Hono, s: StatusSources): void {
  app.get("/v1/stores", async (c) => c.json(await s.status.stores()));

  app.get("/v1/stores/:id/safe-to-remove", async (c) => {
    const id = c.req.param("id");
    try {
      return c.json(await s.status.safeToRemove(id));
    } catch (err) {
      if (err instanceof RangeError && err.message.startsWith("No store"))
        return c.json({ error: { code: "store_not_found", message: err.message } }, 404);
      throw err;
    }
  });

  app.put("/v1/stores/:id/maintenance", jsonLimit, valid("json", MaintenanceBody), async (c) => {
    const id = c.req.param("id");
    const body = c.req.valid("json");
    try {
      const { stamped } = await s.maintenance(id, body.on);
      return c.json({ store: id, maintenance: body.on, headsStamped: stamped });
    } catch (err) {
      if (err instanceof RangeError && err.message.startsWith("No store"))
        return c.json({ error: { code: "store_not_found", message: err.message } }, 404);
      throw err;
    }
  });

  app.get("/v1/heal", async (c) => c.json(await s.status.heal()));
  app.get("/v1/heal/limits", (c) => c.json(s.throttle.limits()));
  app.put("/v1/heal/limits", jsonLimit, valid("json", HealLimitsBody), async (c) =>
    c.json(s.throttle.setLimits(c.req.valid("json"))),
  );

  app.get("/metrics", async (c) =>
    c.text(await metrics(s), 200, { "content-type": "text/plain; version=0.0.4" }),
  );
}

/** Prometheus text exposition of store states, heal progress and I/O latency. */
async function metrics(s: StatusSources): Promise<string> {
  const lines: string[] = [];
  const help = (name: string, type: string, text: string) =>
    lines.push(`# HELP ${name} ${text}`, `# TYPE ${name} ${type}`);
  const [stores, heal] = await Promise.all([s.status.stores(), s.status.heal()]);
  help("blockmend_store_state", "gauge", "1 for the state each store is in");
  for (const st of stores.stores) {
    for (const state of ["in-sync", "healing", "full", "draining", "drained", "down", "replaced"])
      lines.push(`blockmend_store_state{store="${st.id}",state="${state}"} ${st.state === state ? 1 : 0}`);
  }
  help("blockmend_store_images_behind", "gauge", "Images a store does not hold in full now");
  for (const st of stores.stores)
    lines.push(`blockmend_store_images_behind{store="${st.id}"} ${st.lag.length}`);
  help(
    "blockmend_store_damaged_chunks",
    "gauge",
    "Chunks found corrupt or missing on a store and not yet repaired",
  );
  for (const st of stores.stores)
    lines.push(`blockmend_store_damaged_chunks{store="${st.id}"} ${st.damagedChunks}`);
  help("blockmend_store_maintenance", "gauge", "1 while a store is in maintenance (leaving)");
  for (const st of stores.stores)
    lines.push(`blockmend_store_maintenance{store="${st.id}"} ${st.maintenance ? 1 : 0}`);
  const capacity = [
    ["blockmend_store_chunks", "Chunks a store holds (its own counter; absent for S3)", "chunks"],
    ["blockmend_store_used_bytes", "Bytes of chunks a store holds (absent for S3)", "bytes"],
    ["blockmend_store_free_bytes", "Free bytes on a store's file system (absent for S3)", "freeBytes"],
    [
      "blockmend_store_reclaimable_bytes",
      "Bytes on disk held by deleted chunks, freed by compaction (file stores)",
      "reclaimableBytes",
    ],
    [
      "blockmend_store_fill_bytes_per_second",
      "How fast a store's used bytes grow (smoothed over about a minute; negative while space is freed)",
      "fillBytesPerSecond",
    ],
  ] as const;
  for (const [name, text, field] of capacity) {
    help(name, "gauge", text);
    for (const st of stores.stores)
      if (typeof st[field] === "number") lines.push(`${name}{store="${st.id}"} ${st[field]}`);
  }
  help("blockmend_heal_missing_bytes", "gauge", "Bytes the current or last heal of each store found missing");
  for (const h of heal.stores) lines.push(`blockmend_heal_missing_bytes{store="${h.id}"} ${h.missingBytes}`);
  help("blockmend_heal_copied_bytes", "gauge", "Bytes copied by the current or last heal of each store");
  for (const h of heal.stores) lines.push(`blockmend_heal_copied_bytes{store="${h.id}"} ${h.copiedBytes}`);
  help("blockmend_heal_rate_bytes_per_second", "gauge", "Current heal copy rate per store");
  for (const h of heal.stores)
    lines.push(`blockmend_heal_rate_bytes_per_second{store="${h.id}"} ${h.rateBytesPerSecond}`);
  help(
    "blockmend_heal_lost_chunks",
    "gauge",
    "Chunks the last heal of each store found with no good copy anywhere",
  );
  for (const h of heal.stores) lines.push(`blockmend_heal_lost_chunks{store="${h.id}"} ${h.lostChunks}`);
  help(
    "blockmend_heal_rate_limit_bytes_per_second",
    "gauge",
    "Heal rate limit now (adapts between floor and ceiling)",
  );
  lines.push(`blockmend_heal_rate_limit_bytes_per_second ${heal.limits.rateBytesPerSecond}`);
  help("blockmend_healed_bytes_total", "counter", "Bytes copied by heals on this gateway since it started");
  lines.push(`blockmend_healed_bytes_total ${s.heal.healedBytesTotal}`);
  help(
    "blockmend_repaired_chunks_total",
    "counter",
    "Bad copies replaced by read-repair and scrub since start",
  );
  lines.push(`blockmend_repaired_chunks_total ${heal.repairedChunks}`);
  help("blockmend_io_latency_seconds", "histogram", "Latency of VM requests (NBD) by operation");
  for (const [op, counts] of s.latency.counts) {
    let cum = 0;
    LATENCY_BUCKETS.forEach((le, i) => {
      cum += counts[i]!;
      lines.push(`blockmend_io_latency_seconds_bucket{op="${op}",le="${le}"} ${cum}`);
    });
    cum += counts[LATENCY_BUCKETS.length]!;
    lines.push(`blockmend_io_latency_seconds_bucket{op="${op}",le="+Inf"} ${cum}`);
    lines.push(`blockmend_io_latency_seconds_sum{op="${op}"} ${s.latency.sums.get(op) ?? 0}`);
    lines.push(`blockmend_io_latency_seconds_count{op="${op}"} ${cum}`);
  }
  if (s.folding) {
    const f = s.folding();
    help(
      "blockmend_patch_stacks_pending_blocks",
      "gauge",
      "Blocks of the open images known to carry a patch stack that an idle fold has not rewritten yet",
    );
    lines.push(`blockmend_patch_stacks_pending_blocks ${f.pendingBlocks}`);
    help(
      "blockmend_patch_stacks_folded_blocks_total",
      "counter",
      "Blocks whose patch stack was folded into a whole chunk",
    );
    lines.push(`blockmend_patch_stacks_folded_blocks_total ${f.foldedBlocks}`);
  }
  if (s.loopDelay) {
    const d = s.loopDelay;
    help(
      "blockmend_event_loop_delay_seconds",
      "histogram",
      "How late the gateway's event loop ran a 20 ms timer: the stall any request on it waited behind",
    );
    let cum = 0;
    LOOP_DELAY_BUCKETS.forEach((le, i) => {
      cum += d.counts[i]!;
      lines.push(`blockmend_event_loop_delay_seconds_bucket{le="${le}"} ${cum}`);
    });
    cum += d.counts[LOOP_DELAY_BUCKETS.length]!;
    lines.push(`blockmend_event_loop_delay_seconds_bucket{le="+Inf"} ${cum}`);
    lines.push(`blockmend_event_loop_delay_seconds_sum ${d.sum}`);
    lines.push(`blockmend_event_loop_delay_seconds_count ${cum}`);
    help(
      "blockmend_event_loop_delay_max_seconds",
      "gauge",
      "The longest event loop delay since the gateway started",
    );
    lines.push(`blockmend_event_loop_delay_max_seconds ${d.max}`);
  }
  return `${lines.join("\n")}\n`;
}

const jsonOk = (description: string) => ({
  description,
  content: { "application/json": { schema: { type: "object" } } },
});

/** OpenAPI path items of the status routes. */
export const STATUS_OPENAPI_PATHS: Record<string, PathItem> = {
  "/v1/stores": {
    get: {
      summary:
        "Every store of the cluster: state (in-sync, healing, down, replaced), reasons, identity, maintenance, damaged chunks, images behind",
      responses: { "200": jsonOk("Store status") },
    },
  },
  "/v1/stores/{id}/safe-to-remove": {
    get: {
      summary:
        "Whether store {id} can be taken down now: every version keeps a current copy, minReplicas can be met and a head majority remains (stores probed now, heads read fresh)",
      parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
      responses: {
        "200": jsonOk(
          "{safe, reasons, maintenance, wouldLoseLastCurrentCopy, wouldFallBelowMinReplicas, healSources, unstamped}",
        ),
        "404": jsonOk("No such store"),
      },
    },
  },
  "/v1/stores/{id}/maintenance": {
    put: {
      summary:
        "Puts store {id} in maintenance (new writes stop counting it toward minReplicas) or takes it out",
      parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
      requestBody: { content: { "application/json": { schema: { type: "object" } } } },
      responses: { "200": jsonOk("{store, maintenance, headsStamped}"), "400": jsonOk("Bad body") },
    },
  },
  "/v1/heal": {
    get: {
      summary:
        "Heal progress per store, from whichever gateway runs it: running, gateway, missingBytes, copiedBytes, rateBytesPerSecond, etaSeconds, converges, lostChunks, lastError, images",
      responses: { "200": jsonOk("Heal status") },
    },
  },
  "/v1/heal/limits": {
    get: { summary: "The heal throttle", responses: { "200": jsonOk("Limits") } },
    put: {
      summary: "Change the heal throttle live",
      requestBody: { content: { "application/json": { schema: { type: "object" } } } },
      responses: { "200": jsonOk("New limits"), "400": jsonOk("Invalid limit") },
    },
  },
  "/metrics": { get: { summary: "Prometheus metrics", responses: { "200": { description: "text/plain" } } } },
};
