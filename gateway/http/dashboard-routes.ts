/**
 * The dashboard on the gateway's HTTP listener:
 *
 *   GET /                     the page (`dashboard/index.html`): holds no data
 *   GET /dashboard/{file}     its scripts, styles, icon and the vendored uPlot (static files)
 *   GET /v1/events            the live stream of state (`events.ts`)
 *
 * The page and its files are public by design: they are the same for everyone and carry
 * no data. Every datum comes from the API (`/v1/events`, and the action routes), with the
 * bearer token the user pasted, sent as `Authorization` by `fetch`: no cookie, so no
 * CSRF surface. Each file is read once at start from `gateway/http/dashboard/` (only files
 * of the known types there are served; no path from a URL reaches the disk), with a
 * Content-Security-Policy the page satisfies: scripts and styles from the gateway only,
 * no inline script or style, no eval, and Trusted Types enforced, so no string can become
 * HTML (the page builds its DOM with `textContent`).
 */
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { Context, Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import type { BackupJobs } from "../backup/backup-jobs.ts";
import type { Collector } from "../gc/collector.ts";
import type { ClusterStatus } from "../heal/cluster-status.ts";
import type { HealScheduler } from "../heal/heal-scheduler.ts";
import type { LatencyMonitor } from "../heal/latency-monitor.ts";
import type { StoreHealth } from "../replication/store-health.ts";
import { readDashboardState } from "./dashboard-state.ts";
import { EVENTS_OPENAPI_PATHS, EventStreams, eventsHandler } from "./events.ts";
import { IoTimeline } from "./io-timeline.ts";
import type { PathItem } from "./openapi.ts";

/** The folder of the page's files. */
export const DASHBOARD_DIR = fileURLToPath(new URL("./dashboard/", import.meta.url));

/** The policy of every dashboard response; the page's tests check that it holds with no violation. */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join("; ");

/** File types served, by extension (anything else in the folder, such as `.d.ts`, is not). */
const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".txt": "text/plain; charset=utf-8",
  "": "text/plain; charset=utf-8", // LICENSE
};

/** One file of the page, in memory. */
interface Asset {
  readonly body: Uint8Array<ArrayBuffer>;
  readonly type: string;
  readonly etag: string;
}

/** Reads every servable file under `dir`, keyed by its path relative to it (`/` separated). */
export async function loadDashboardAssets(dir = DASHBOARD_DIR): Promise<Map<string, Asset>> {
  const assets = new Map<string, Asset>();
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) {
        await walk(path);
        continue;
      }
      if (entry.name.endsWith(".d.ts") || entry.name.startsWith(".")) continue;
      const type = CONTENT_TYPES[extname(entry.name)];
      if (!entry.isFile() || type === undefined) continue;
      const body = new Uint8Array(await readFile(path));
      const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
      assets.set(relative(dir, path).split(sep).join("/"), { body, type, etag });
    }
  };
  await walk(dir);
  if (!assets.has("index.html")) throw new Error(`The dashboard's index.html is missing from ${dir}`);
  return assets;
}

/** Headers of every dashboard file: the policy, no sniffing, no referrer, no framing, revalidate. */
function assetResponse(c: Context, asset: Asset): Response {
  const headers = {
    "content-type": asset.type,
    "content-security-policy": DASHBOARD_CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-cache",
    etag: asset.etag,
  };
  if (c.req.header("if-none-match") === asset.etag) return new Response(null, { status: 304, headers });
  return new Response(c.req.method === "HEAD" ? null : asset.body, { headers });
}

/** What the dashboard reads: the gateway's layers. */
export interface DashboardDeps {
  readonly gatewayId: string;
  readonly status: ClusterStatus;
  readonly heal: HealScheduler;
  readonly health: StoreHealth;
  readonly latency: LatencyMonitor;
  /** Garbage collection: the pass running here, the last one of any gateway. */
  readonly gc: Pick<Collector, "current" | "lastReport">;
  /** This gateway's backup jobs. */
  readonly backups: Pick<BackupJobs, "list">;
}

/** The running dashboard: its chart history, its streams, and the routes to mount. */
export interface Dashboard {
  readonly timeline: IoTimeline;
  readonly streams: EventStreams;
  /** Mounts `/`, `/dashboard/*` and `/v1/events` on `app`. */
  mount(app: Hono): void;
  /** Ends every event stream and stops sampling (call before closing the listener). */
  close(): void;
}

/**
 * Loads the page's files and starts the chart's sampling (no I/O) and the event streams
 * (state read only while a stream is open).
 *
 * @example
 * const dashboard = await startDashboard({ gatewayId, status, heal, health, latency, gc, backups });
 * const app = createGatewayApp(images, { routes: (a) => dashboard.mount(a) });
 */
export async function startDashboard(deps: DashboardDeps): Promise<Dashboard> {
  const assets = await loadDashboardAssets();
  const timeline = new IoTimeline({
    latency: deps.latency,
    healedBytes: () => deps.heal.healedBytesTotal,
    healing: () => deps.heal.healing().keys(),
    wentDown: deps.health.wentDown,
    returned: deps.health.returned,
  });
  timeline.start();
  const streams = new EventStreams({
    read: async () => ({ ...(await readDashboardState(deps)) }),
    timeline,
    gateway: { id: deps.gatewayId, startedAt: new Date().toISOString() },
  });
  return {
    timeline,
    streams,
    mount: (app) => mountDashboardRoutes(app, assets, streams),
    close: () => {
      streams.close();
      timeline.stop();
    },
  };
}

/** Mounts the page, its files and the event stream on `app`. */
export function mountDashboardRoutes(
  app: Hono,
  assets: Map<string, Asset>,
  streams: Pick<EventStreams, "open">,
): void {
  const index = assets.get("index.html")!;
  app.get("/", (c) => assetResponse(c, index));
  app.get("/dashboard/*", (c) => {
    const path = new URL(c.req.url).pathname;
    const asset = assets.get(path.slice("/dashboard/".length));
    if (!asset) throw new HTTPException(404, { message: `No dashboard file ${path}` });
    return assetResponse(c, asset);
  });
  app.get("/v1/events", eventsHandler(streams));
}

/** OpenAPI path items of the dashboard's routes. */
export const DASHBOARD_OPENAPI_PATHS: Record<string, PathItem> = {
  "/": {
    get: {
      summary: "The dashboard page (static, holds no data; reads /v1/events with the API's token)",
      responses: { "200": { description: "text/html" } },
    },
  },
  "/dashboard/{file}": {
    get: {
      summary:
        "The dashboard's static files: its scripts, styles, icon, and the vendored uPlot with its license",
      parameters: [{ name: "file", in: "path", required: true, schema: { type: "string" } }],
      responses: { "200": { description: "The file" }, "404": { description: "No such file" } },
    },
  },
  ...EVENTS_OPENAPI_PATHS,
};
