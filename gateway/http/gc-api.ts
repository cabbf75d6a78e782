/**
 * Garbage collection routes (gateway/gc/collector.ts):
 *
 *   POST /v1/gc   {"graceSeconds"?: n}  starts a pass on this gateway -> 202 {the report so far}
 *                 (?wait=1: answers when the pass ends, 200 with the final report);
 *                 409 gc_running while one runs on any gateway
 *   GET  /v1/gc   {"running": report|null, "last": report|null} (the last from the register)
 */
import type { Hono } from "hono";
import { type Collector, DEFAULT_GC_GRACE_MS, GcBusyError, type GcReport } from "../gc/collector.ts";
import { jsonLimit, noBody } from "./_body-limits.ts";
import type { PathItem } from "./openapi.ts";
import { GcBody, GcQuery, valid } from "./schemas.ts";

/** What `GET /v1/gc` answers (and the dashboard's `gc` section): the pass running here, and the last finished one. */
export interface GcStatus {
  /** The pass running on this gateway (a pass on another gateway shows there), or null. */
  readonly running: GcReport | null;
  /** The last finished pass of any gateway (register key `gc.report`), or null. */
  readonly last: GcReport | null;
}

/** Reads {@link GcStatus}: one register read. */
export async function readGcStatus(gc: Pick<Collector, "current" | "lastReport">): Promise<GcStatus> {
  const current = gc.current;
  return { running: current?.finishedAt ? null : current, last: await gc.lastReport() };
}

/** Mounts the gc routes on `app`. */
export function mountGcRoutes(app: Hono, gc: Collector): void {
  app.post("/v1/gc", jsonLimit, valid("query", GcQuery), valid("json", GcBody), async (c) => {
    const grace = c.req.valid("json").graceSeconds;
    const graceMs = grace === undefined ? DEFAULT_GC_GRACE_MS : Math.round(grace * 1000);
    try {
      const { report, done } = await gc.start({ graceMs });
      if (c.req.valid("query").wait === "1") return c.json(await done, 200);
      done.catch(() => {});
      return c.json(report, 202);
    } catch (err) {
      if (err instanceof GcBusyError)
        return c.json({ error: { code: "gc_running", message: err.message, gateway: err.holder } }, 409);
      throw err;
    }
  });

  app.get("/v1/gc", noBody, async (c) => c.json(await readGcStatus(gc)));
}

const jsonOk = (description: string) => ({
  description,
  content: { "application/json": { schema: { type: "object" } } },
});

/** OpenAPI path items of the gc routes. */
export const GC_OPENAPI_PATHS: Record<string, PathItem> = {
  "/v1/gc": {
    post: {
      summary:
        "Starts a garbage collection pass (deletes chunks no image version references; a barrier keeps commits in flight safe). ?wait=1 answers at the end",
      requestBody: { content: { "application/json": { schema: { type: "object" } } } },
      responses: {
        "200": jsonOk("The finished pass (with ?wait=1)"),
        "202": jsonOk("The pass, started"),
        "409": jsonOk("A pass is running (gc_running)"),
      },
    },
    get: {
      summary: "The pass running here, and the last finished pass of any gateway",
      responses: { "200": jsonOk("{running, last}") },
    },
  },
};
