/**
 * The dashboard's static routes, through `app.request()`: the page with its
 * Content-Security-Policy, every file it references served from the gateway itself (no
 * CDN), nothing outside the dashboard folder reachable, and tripwires on the checked-in
 * files for what the policy forbids (inline script or style, handlers in markup) and for
 * the DOM sinks that would turn data into HTML.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Hono } from "hono";
import { Listeners } from "../../../gateway/_listeners.ts";
import { LatencyMonitor } from "../../../gateway/heal/latency-monitor.ts";
import {
  DASHBOARD_CSP,
  DASHBOARD_DIR,
  loadDashboardAssets,
  mountDashboardRoutes,
} from "../../../gateway/http/dashboard-routes.ts";
import { EventStreams } from "../../../gateway/http/events.ts";
import { IoTimeline } from "../../../gateway/http/io-timeline.ts";

async function app() {
  const a = new Hono();
  const timeline = new IoTimeline({
    latency: new LatencyMonitor(),
    healedBytes: () => 0,
    healing: () => [],
    wentDown: new Listeners(),
    returned: new Listeners(),
  });
  const streams = new EventStreams({ read: async () => ({}), timeline, gateway: { id: "g", startedAt: "" } });
  mountDashboardRoutes(a, await loadDashboardAssets(), streams);
  return a;
}

const H = "http://gateway";
const INDEX = readFileSync(join(DASHBOARD_DIR, "index.html"), "utf8");
const SCRIPTS = readdirSync(DASHBOARD_DIR).filter((f) => f.endsWith(".js"));

describe("GET /", () => {
  test("serves the page with the policy and the other protective headers", async () => {
    const res = await (await app()).request(`${H}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const csp = res.headers.get("content-security-policy")!;
    expect(csp).toBe(DASHBOARD_CSP);
    for (const d of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "object-src 'none'"])
      expect(csp).toContain(d);
    expect(csp).not.toContain("unsafe-inline");
    expect(csp).not.toContain("unsafe-eval");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("x-frame-options")).toBe("DENY");
    expect(await res.text()).toBe(INDEX);
  });

  test("answers 304 to a matching If-None-Match", async () => {
    const a = await app();
    const etag = (await a.request(`${H}/`)).headers.get("etag")!;
    expect((await a.request(`${H}/`, { headers: { "if-none-match": etag } })).status).toBe(304);
  });

  test("every script, style and icon the page names is served by the gateway, with its type", async () => {
    const a = await app();
    const refs = [...INDEX.matchAll(/\b(?:src|href)="([^"#]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThanOrEqual(4);
    for (const ref of refs) {
      expect(ref.startsWith("/dashboard/"), `${ref} is the gateway's own`).toBe(true);
      const res = await a.request(`${H}${ref}`);
      expect(res.status, ref).toBe(200);
    }
    expect((await a.request(`${H}/dashboard/app.js`)).headers.get("content-type")).toBe(
      "text/javascript; charset=utf-8",
    );
    expect((await a.request(`${H}/dashboard/dashboard.css`)).headers.get("content-type")).toBe(
      "text/css; charset=utf-8",
    );
    // Every module the page imports (relative imports of the served scripts) is served too.
    for (const f of SCRIPTS) {
      const src = readFileSync(join(DASHBOARD_DIR, f), "utf8");
      for (const m of src.matchAll(/from "\.\/([^"]+)"/g))
        expect((await a.request(`${H}/dashboard/${m[1]}`)).status, `${f} imports ${m[1]}`).toBe(200);
    }
  });

  test("the vendored uPlot is served with its license", async () => {
    const a = await app();
    const license = await (await a.request(`${H}/dashboard/vendor/uplot/LICENSE`)).text();
    expect(license).toContain("MIT License");
  });

  test("nothing outside the dashboard's files is reachable", async () => {
    const a = await app();
    for (const path of [
      "/dashboard/../dashboard-routes.ts",
      "/dashboard/%2e%2e/dashboard-routes.ts",
      "/dashboard/..%2fevents.ts",
      "/dashboard/sse-parser.d.ts",
      "/dashboard/vendor/uplot/README.md",
      "/dashboard/",
      "/dashboard/nope.js",
    ]) {
      const res = await a.request(`${H}${path}`);
      expect(res.status, path).toBe(404);
    }
  });
});

describe("the checked-in page", () => {
  test("the README shows a screenshot of it, checked in and under 150 KB", () => {
    const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8");
    expect(readme).toContain("](docs/dashboard.png)");
    const png = readFileSync(new URL("../../../docs/dashboard.png", import.meta.url));
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    expect(png.byteLength).toBeLessThan(150 * 1024);
  });

  test("has no inline script, no inline style and no handler attribute", () => {
    expect(INDEX).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i);
    expect(INDEX).not.toMatch(/<style/i);
    expect(INDEX).not.toMatch(/\sstyle=/i);
    expect(INDEX).not.toMatch(/\son[a-z]+=/i);
  });

  test("no script of the page turns a string into HTML or code", () => {
    for (const f of SCRIPTS) {
      const src = readFileSync(join(DASHBOARD_DIR, f), "utf8");
      for (const sink of [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        'setAttribute("on',
        ".style.",
      ])
        expect(src.includes(sink), `${f} uses ${sink}`).toBe(false);
    }
  });
});
