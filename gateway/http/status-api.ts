/**
 * Status routes of the gateway: stores, heal, safe-to-remove and Prometheus metrics.
 * Every answer comes from state kept current in memory (store health, the heal
 * scheduler's heads and counters), never from a crawl of the stores.
 *
 *   GET /v1/stores                      per store: id, state, since, reason, chunks, bytes, lag per image
 *   GET /v1/stores/{id}/safe-to-remove  {"safe", "reasons", "wouldLoseLastCurrentCopy", ...}
 *   GET /v1/heal                        {"healing", "stores": [...], "limits"}
 *   GET /v1/heal/limits, PUT /v1/heal/limits   the heal throttle, changeable live
 *   GET /metrics                        Prometheus text format
 */
import type { Hono } from "hono";
import type { HealScheduler } from "../heal/heal-scheduler.ts";
import { LATENCY_BUCKETS, type LatencyMonitor } from "../heal/latency-monitor.ts";
import { safeToRemove } from "../heal/safe-to-remove.ts";
import type { StoreHealth } from "../replication/store-health.ts";
import type { StoreSet } from "../replication/store-set.ts";
import type { PathItem } from "./openapi.ts";

/** What the status routes read. */
export interface StatusSources {
  readonly stores: StoreSet;
  readonly health: StoreHealth;
  readonly heal: HealScheduler;
  readonly latency: LatencyMonitor;
}

/** Mounts the status routes on `app` (use as `createGatewayApp`'s `routes`). */
export function mountStatusRoutes(app: Hono, s: StatusSources): void {
  const healingMap = () => {
    const m = new Map<string, string[]>();
    for (const st of s.heal.status().stores)
      if (st.state === "healing")
        m.set(
          st.id,
          st.images.filter((i) => !i.done).map((i) => i.image),
        );
    return m;
  };

  app.get("/v1/stores", (c) => {
    const heads = [...s.heal.heads.values()];
    return c.json({
      replicas: s.stores.options.replicas,
      minReplicas: s.stores.options.minReplicas,
      stores: s.health.all().map((st) => {
        const m = s.stores.member(st.id)!;
        return {
          id: st.id,
          url: st.url,
          role: m.store.capabilities.chunks ? "data" : "witness",
          state: s.heal.storeState(st.id),
          since: st.since,
          reason: st.reason,
          chunks: st.chunks,
          bytes: st.bytes,
          failures: st.failures,
          lag: m.store.capabilities.chunks
            ? heads
                .filter((h) => (h.synced[st.id]?.generation ?? 0) < h.generation)
                .map((h) => ({
                  image: h.name,
                  syncedGeneration: h.synced[st.id]?.generation ?? 0,
                  generation: h.generation,
                }))
            : [],
        };
      }),
    });
  });

  app.get("/v1/stores/:id/safe-to-remove", (c) => {
    const id = c.req.param("id");
    const member = s.stores.member(id);
    if (!member) return c.json({ error: { code: "store_not_found", message: `No store "${id}"` } }, 404);
    if (!member.store.capabilities.chunks) {
      // A witness holds heads only: removing it is safe while the others still form a head majority.
      const up = s.health
        .all()
        .filter(
          (st) => st.id !== id && st.state !== "down" && s.stores.member(st.id)!.store.capabilities.refs,
        ).length;
      const holders = s.stores.members.filter((m) => m.store.capabilities.refs).length;
      const safe = up >= Math.floor(holders / 2) + 1;
      return c.json({
        store: id,
        safe,
        reasons: safe ? [] : [`without it only ${up} of ${holders} head holders answer: no majority`],
        wouldLoseLastCurrentCopy: [],
        wouldFallBelowMinReplicas: [],
        healSources: [],
      });
    }
    const dataStores = s.stores.dataMembers.map((m) => ({ id: m.id, state: s.heal.storeState(m.id) }));
    return c.json(
      safeToRemove(id, {
        replicas: s.stores.options.replicas,
        minReplicas: s.stores.options.minReplicas,
        dataStores,
        heads: s.heal.heads.values(),
        healing: healingMap(),
      }),
    );
  });

  app.get("/v1/heal", (c) => c.json(s.heal.status()));
  app.get("/v1/heal/limits", (c) => c.json(s.heal.limits()));
  app.put("/v1/heal/limits", async (c) => {
    const body = await c.req.json().catch(() => {
      throw new TypeError(
        'Body must be JSON: {"rateBytesPerSecond": ..., "floorBytesPerSecond": ..., "ceilingBytesPerSecond": ..., "concurrency": ...}',
      );
    });
    return c.json(s.heal.setLimits(body as Record<string, number>));
  });

  app.get("/metrics", (c) => c.text(metrics(s), 200, { "content-type": "text/plain; version=0.0.4" }));
}

/** Prometheus text exposition of store states, heal progress and I/O latency. */
function metrics(s: StatusSources): string {
  const lines: string[] = [];
  const help = (name: string, type: string, text: string) =>
    lines.push(`# HELP ${name} ${text}`, `# TYPE ${name} ${type}`);
  help("blockmend_store_state", "gauge", "1 for the state each store is in");
  for (const st of s.health.all()) {
    for (const state of ["in-sync", "healing", "down"])
      lines.push(`blockmend_store_state{store="${st.id}",state="${state}"} ${st.state === state ? 1 : 0}`);
  }
  const heal = s.heal.status();
  help("blockmend_heal_missing_bytes", "gauge", "Bytes the current or last heal of each store found missing");
  for (const h of heal.stores) lines.push(`blockmend_heal_missing_bytes{store="${h.id}"} ${h.missingBytes}`);
  help("blockmend_heal_copied_bytes", "gauge", "Bytes copied by the current or last heal of each store");
  for (const h of heal.stores) lines.push(`blockmend_heal_copied_bytes{store="${h.id}"} ${h.copiedBytes}`);
  help("blockmend_heal_rate_bytes_per_second", "gauge", "Current heal copy rate per store");
  for (const h of heal.stores)
    lines.push(`blockmend_heal_rate_bytes_per_second{store="${h.id}"} ${h.rateBytesPerSecond}`);
  help(
    "blockmend_heal_rate_limit_bytes_per_second",
    "gauge",
    "Heal rate limit now (adapts between floor and ceiling)",
  );
  lines.push(`blockmend_heal_rate_limit_bytes_per_second ${heal.limits.rateBytesPerSecond}`);
  help("blockmend_healed_bytes_total", "counter", "Bytes copied by heals since the gateway started");
  lines.push(`blockmend_healed_bytes_total ${s.heal.healedBytesTotal}`);
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
      summary: "Every store: state (in-sync, healing, down), since, reason, chunks, bytes, lag per image",
      responses: { "200": jsonOk("Store status") },
    },
  },
  "/v1/stores/{id}/safe-to-remove": {
    get: {
      summary:
        "Whether store {id} can be taken down without losing the last current copy of an image or falling below minReplicas",
      parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
      responses: {
        "200": jsonOk("{safe, reasons, wouldLoseLastCurrentCopy, wouldFallBelowMinReplicas, healSources}"),
        "404": jsonOk("No such store"),
      },
    },
  },
  "/v1/heal": {
    get: {
      summary:
        "Heal progress per store: missingBytes, copiedBytes, rateBytesPerSecond, etaSeconds, converges, lastError, images",
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
