/**
 * The dashboard page in headless Chromium against a stand-in gateway: the real page, its
 * real routes and CSP, and the real event stream, over a state the test makes up, so
 * what no real cluster can produce is shown too. Image names with markup are refused by
 * the real API (IMAGE_NAME_PATTERN), so only this test can prove that such a name (and
 * every other string the page shows: reasons, errors, gateway ids) stays text, with the
 * CSP on and also with it off (the DOM is built with textContent, not just saved by the
 * policy). Then: the token flow (a 401 asks for a token, which then goes on every
 * request as a bearer header, and nowhere else), the typed confirmation of maintenance,
 * the heal limits and snapshot actions, the stale marking while the stream is down and
 * the reconnect, keyboard reach, and no CSP violation throughout.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Hono } from "hono";
import type { Page } from "playwright-core";
import { Listeners } from "../../../gateway/_listeners.ts";
import { LatencyMonitor } from "../../../gateway/heal/latency-monitor.ts";
import { loadDashboardAssets, mountDashboardRoutes } from "../../../gateway/http/dashboard-routes.ts";
import { EventStreams } from "../../../gateway/http/events.ts";
import { IoTimeline } from "../../../gateway/http/io-timeline.ts";
import { type HttpServer, serveHttp } from "../../../runtime/serve-http.ts";
import { launchChromium, seriousAxeViolations, type TestBrowser } from "../../support/browser.ts";

const HOSTILE_IMAGE = `<img src=x onerror="window.__pwned=1">`;
const HOSTILE_SNAPSHOT = `"><script>window.__pwned=2</script>`;
const HOSTILE_REASON = `answers <b>bold</b> & <img src=y onerror="window.__pwned=3">`;
const HOSTILE_ERROR = `<svg onload="window.__pwned=4"></svg>`;
const HOSTILE_GATEWAY = `gw-<i onmouseover="window.__pwned=5">x</i>`;
const MiB = 1024 * 1024;
const NOW = new Date().toISOString();

const store = (id: string, over: Record<string, unknown> = {}) => ({
  id,
  url: `http://127.0.0.1:94${id.charCodeAt(0)}`,
  role: id === "w" ? "witness" : "data",
  state: "in-sync",
  reasons: [],
  since: NOW,
  identity: `${id}1b92fd-60c3-4a8b-b1a3-6e59a2c22f55`,
  observedIdentity: `${id}1b92fd-60c3-4a8b-b1a3-6e59a2c22f55`,
  maintenance: null,
  damagedChunks: 0,
  chunks: 1028,
  bytes: 64 * MiB,
  freeBytes: 10 * 1024 * MiB,
  failures: 0,
  lag: [],
  ...over,
});

const heal = (id: string, over: Record<string, unknown> = {}) => ({
  id,
  state: "in-sync",
  imagesBehind: 0,
  running: false,
  gateway: null,
  missingBytes: 0,
  copiedBytes: 0,
  rateBytesPerSecond: 0,
  etaSeconds: null,
  converges: true,
  lostChunks: 0,
  lastError: null,
  startedAt: null,
  finishedAt: null,
  images: [],
  ...over,
});

const safe = (id: string, ok: boolean, reasons: string[] = []) => ({
  store: id,
  safe: ok,
  reasons,
  maintenance: false,
  wouldLoseLastCurrentCopy: [],
  wouldFallBelowMinReplicas: [],
  healSources: [],
  unstamped: [],
});

const gcStore = (store: string, over: Record<string, unknown> = {}) => ({
  store,
  skipped: null,
  stored: 2758,
  condemned: 2068,
  deleted: 0,
  bytesDeleted: 0,
  kept: 0,
  error: null,
  ...over,
});

/** A pass in its grace: started 10 s ago, its first three steps took 0.5 s, 300 s of grace. */
function gcRunning() {
  return {
    token: "5f0c2a1e-9d1b-4c61-a0f3-0f0d6b1e2a77",
    gateway: HOSTILE_GATEWAY,
    phase: "grace",
    startedAt: new Date(Date.now() - 10_000).toISOString(),
    finishedAt: null,
    graceMs: 300_000,
    gcEpoch: 7,
    referenced: 1029,
    stores: [gcStore("a"), gcStore("b", { skipped: "unreachable", stored: 0, condemned: 0 })],
    error: null,
    stepMs: { mark: 120, condemn: 340, barrier: 40 },
  };
}

const GC_LAST = {
  token: "f1730bc8-4d2e-4f0e-9a55-1b2c3d4e5f60",
  gateway: "gw-e4321c158ac0",
  phase: "done",
  startedAt: "2026-12-01T12:46:55.236Z",
  finishedAt: "2026-12-01T12:46:55.805Z",
  graceMs: 0,
  gcEpoch: 6,
  referenced: 1029,
  stores: [
    gcStore("a", { deleted: 2068, bytesDeleted: 128.4 * MiB }),
    gcStore("b", { condemned: 12, error: HOSTILE_ERROR }),
  ],
  error: null,
  stepMs: { mark: 80, condemn: 200, barrier: 30, grace: 0, remark: 60, sweep: 190 },
};

const backupJob = (id: string, over: Record<string, unknown> = {}): Record<string, unknown> => ({
  id,
  kind: "create",
  state: "running",
  phase: "uploading",
  target: "s3://vm-backups/site-a?endpoint=http://127.0.0.1:7491&region=us-east-1",
  image: HOSTILE_IMAGE,
  backup: null,
  gateway: "gw-fake",
  startedAt: NOW,
  finishedAt: null,
  bytesDone: 96 * MiB,
  bytesTotal: 256 * MiB,
  rateBytesPerSecond: 32 * MiB,
  etaSeconds: 5,
  error: null,
  ...over,
});

const LIMITS = {
  rateBytesPerSecond: 32 * MiB,
  floorBytesPerSecond: 4 * MiB,
  ceilingBytesPerSecond: 1024 * MiB,
  concurrency: 4,
  scrubBytesPerSecond: 8 * MiB,
};

function makeState() {
  return {
    stores: {
      replicas: 2,
      minReplicas: 1,
      stores: [
        store("a"),
        store("b", { state: "healing", reasons: [HOSTILE_REASON], lag: [] }),
        store("w", { chunks: 0, bytes: 0 }),
      ],
    },
    heal: {
      healing: true,
      limits: LIMITS,
      stores: [
        heal("a"),
        heal("b", {
          state: "healing",
          running: true,
          gateway: HOSTILE_GATEWAY,
          missingBytes: 64 * MiB,
          copiedBytes: 16 * MiB,
          rateBytesPerSecond: 4 * MiB,
          etaSeconds: 12,
          lastError: HOSTILE_ERROR,
          startedAt: NOW,
          images: [
            {
              image: HOSTILE_IMAGE,
              fromGeneration: 3,
              toGeneration: 5,
              missingChunks: 1024,
              copiedChunks: 256,
              done: false,
            },
          ],
        }),
      ],
      scrub: [],
      repairedChunks: 0,
    },
    images: [
      {
        name: HOSTILE_IMAGE,
        size: 10 * 1024 * MiB,
        chunkSize: 65536,
        generation: 5,
        owner: HOSTILE_GATEWAY,
        updatedAt: NOW,
        clonedFrom: null,
        snapshots: [{ name: HOSTILE_SNAPSHOT, size: 10 * 1024 * MiB, createdAt: NOW }],
      },
      {
        name: "web01",
        size: 64 * MiB,
        chunkSize: 65536,
        generation: 2,
        owner: null,
        updatedAt: NOW,
        clonedFrom: null,
        snapshots: [],
      },
    ],
    safeToRemove: {
      a: safe("a", false, [`1 image(s) would lose their last current copy: ${HOSTILE_IMAGE}`]),
      b: safe("b", false, ["it is not in sync"]),
      w: safe("w", true),
    },
    gc: { running: gcRunning(), last: GC_LAST },
    backups: [
      backupJob("0fb94c9e2616"),
      backupJob("7c5d181f427c", {
        kind: "verify",
        state: "failed",
        phase: "failed",
        image: null,
        backup: "20261201-114528-84d000d2",
        finishedAt: NOW,
        bytesDone: 0,
        bytesTotal: 0,
        rateBytesPerSecond: 0,
        etaSeconds: 0,
        error: HOSTILE_ERROR,
      }),
    ],
  };
}

/** The stand-in gateway: the real dashboard routes, fake state and action routes that record. */
class FakeGateway {
  state = makeState();
  token: string | null = null;
  csp = true;
  readonly requests: { method: string; path: string; auth: string | null; body: unknown }[] = [];
  readonly timeline = new IoTimeline({
    latency: new LatencyMonitor(),
    healedBytes: () => 0,
    healing: () => [],
    wentDown: new Listeners(),
    returned: new Listeners(),
  });
  streams = this.#newStreams();
  server!: HttpServer;

  #newStreams(): EventStreams {
    return new EventStreams(
      {
        read: async () => structuredClone(this.state),
        timeline: this.timeline,
        gateway: { id: "gw-fake", startedAt: NOW },
      },
      { intervalMs: 200 },
    );
  }

  /** The event stream goes away (503s) until {@link reopen}. */
  down(): void {
    this.streams.close();
  }

  reopen(): void {
    this.streams = this.#newStreams();
  }

  async start(): Promise<void> {
    const app = new Hono();
    app.use("*", async (c, next) => {
      const path = new URL(c.req.url).pathname;
      const auth = c.req.header("authorization") ?? null;
      let body: unknown = null;
      if (c.req.method !== "GET")
        body = await c.req.raw
          .clone()
          .json()
          .catch(() => null);
      this.requests.push({ method: c.req.method, path, auth, body });
      if (path.startsWith("/v1/") && this.token !== null && auth !== `Bearer ${this.token}`)
        return c.json({ error: { code: "unauthorized", message: "A bearer token is required" } }, 401);
      await next();
      if (!this.csp) c.res.headers.delete("content-security-policy");
    });
    const assets = await loadDashboardAssets();
    mountDashboardRoutes(app, assets, { open: () => this.streams.open() });
    app.put("/v1/stores/:id/maintenance", async (c) =>
      c.json({ store: c.req.param("id"), maintenance: true, headsStamped: 2 }),
    );
    app.put("/v1/heal/limits", (c) => c.json(LIMITS));
    app.post("/v1/images/:name/snapshots", async (c) => {
      const body = (await c.req.json()) as { name: string };
      return c.json({ name: body.name, size: 1, generation: 1, root: "x", createdAt: NOW }, 201);
    });
    this.server = await serveHttp(app.fetch, { hostname: "127.0.0.1", port: 0 });
  }

  async stop(): Promise<void> {
    this.streams.close();
    await this.server.close();
  }

  sent(method: string, prefix: string) {
    return this.requests.filter((r) => r.method === method && r.path.startsWith(prefix));
  }
}

let gw: FakeGateway;
let browser: TestBrowser;

beforeAll(async () => {
  gw = new FakeGateway();
  await gw.start();
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await gw?.stop();
});

/** A page that records CSP violations and page errors (through the DevTools protocol, not the page). */
async function open(options: { width?: number; colorScheme?: "light" | "dark" } = {}) {
  const page = await browser.newPage(options);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  await page.addInitScript(() => {
    const w = window as unknown as { __csp: string[] };
    w.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) =>
      w.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`),
    );
  });
  await page.goto(`${gw.server.url}/`);
  return { page, errors };
}

async function live(page: Page): Promise<void> {
  await page.waitForSelector('#connection[data-state="live"]', { timeout: 15_000 });
  await page.waitForSelector('#image-list li[data-key="web01"]', { timeout: 15_000 });
}

async function cspViolations(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as { __csp: string[] }).__csp);
}

describe("the dashboard page against a stand-in gateway", () => {
  for (const csp of [true, false]) {
    test(`every name and reason with markup shows as text (CSP ${csp ? "on" : "off"})`, async () => {
      gw.csp = csp;
      const { page, errors } = await open();
      try {
        await live(page);
        await page.waitForSelector("#heal-list li[data-running=true]");
        const pwned = await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned);
        expect(pwned).toBeUndefined();
        // No element came from the strings: the page has no img, script in body, svg, b or i.
        expect(await page.locator("body img, body script, main svg, main b, main i").count()).toBe(0);
        for (const s of [HOSTILE_IMAGE, HOSTILE_SNAPSHOT, HOSTILE_REASON, HOSTILE_ERROR, HOSTILE_GATEWAY])
          expect(await page.locator("main").innerText()).toContain(s);
        expect(await page.locator("#image-list h3").first().textContent()).toBe(HOSTILE_IMAGE);
        expect(
          await page.locator(`#image-list li[data-key="${HOSTILE_IMAGE.replaceAll('"', '\\"')}"]`).count(),
        ).toBe(1);
        if (csp) expect(await cspViolations(page)).toEqual([]);
        expect(errors).toEqual([]);
      } finally {
        gw.csp = true;
        await page.close();
      }
    }, 60_000);
  }

  test("a heal shows as a progress bar with bytes, rate, ETA and whether it converges", async () => {
    const { page } = await open();
    try {
      await live(page);
      const card = page.locator('#heal-list li[data-key="b"]');
      const bar = card.locator("progress");
      expect(await bar.getAttribute("max")).toBe(String(64 * MiB));
      expect(await bar.evaluate((p) => (p as HTMLProgressElement).value)).toBe(16 * MiB);
      const words = await card.innerText();
      expect(words).toContain("16.0 MiB of 64.0 MiB copied (25%)");
      expect(words).toContain("4.0 MiB/s");
      expect(words).toContain("12 s");
      expect(words).toMatch(/Converges\s+yes/);
      gw.state.heal.stores[1]!.copiedBytes = 48 * MiB;
      await page.waitForFunction(
        () =>
          (document.querySelector('#heal-list li[data-key="b"] progress') as HTMLProgressElement).value >
          40e6,
      );
      expect(await seriousAxeViolations(page)).toEqual([]);
    } finally {
      gw.state = makeState();
      await page.close();
    }
  }, 60_000);

  test("a gc pass in its grace shows its step and a countdown that runs between events; the last pass what it deleted", async () => {
    gw.state.gc.running = gcRunning(); // started 10 s before now
    const { page, errors } = await open();
    try {
      await live(page);
      const running = page.locator("#gc-running");
      await running.waitFor({ state: "visible" });
      expect(await page.locator("#gc-running-title").textContent()).toBe(
        `Pass 5f0c2a1e on gateway ${HOSTILE_GATEWAY}`,
      );
      const steps = await page.$$eval("#gc-steps li", (lis) => lis.map((li) => li.getAttribute("data-step")));
      expect(steps).toEqual(["done", "done", "done", "current", "todo"]);
      const current = page.locator('#gc-steps li[aria-current="step"]');
      expect(await current.innerText()).toMatch(/^Grace now: /);
      expect(await page.locator("#gc-steps-bar").evaluate((p) => (p as HTMLProgressElement).value)).toBe(3);
      // Started 10 s ago, 0.5 s to the barrier, 300 s of grace: the sweep in about 4 min 50 s.
      const line = page.locator("#gc-countdown");
      const first = await line.textContent();
      expect(first).toMatch(
        /^Sweep in 4 min (4\d|5[01]) s \(at \d\d:\d\d:\d\d\): the 5 min 0 s grace began when the barrier was set, at \d\d:\d\d:\d\d\.$/,
      );
      // No event changes the state, yet the countdown moves.
      await page.waitForFunction((t) => document.getElementById("gc-countdown")!.textContent !== t, first, {
        timeout: 5_000,
      });
      expect(await page.locator("#gc-running-stores").innerText()).toContain("b: left alone, unreachable");

      const last = page.locator("#gc-last");
      expect(await last.getAttribute("data-deleted")).toBe("2068");
      expect(await last.getAttribute("data-state")).toBe("done");
      const words = await last.innerText();
      expect(words).toMatch(/Run by\s+gateway gw-e4321c158ac0/);
      expect(words).toMatch(/Deleted\s+2,068 chunk\(s\), 128 MiB/);
      expect(words).toContain("a: 2,068 chunk(s) deleted (128 MiB) of 2,758 stored, 2,068 unreferenced");
      expect(words).toContain(`12 unreferenced; error: ${HOSTILE_ERROR}`);
      expect(words).toMatch(/Finished\s+.+ \(took under 1 s\)/);
      expect(await page.locator("#gc-summary").textContent()).toContain(
        "A pass is running on this gateway (grace).",
      );

      // The pass ends: the running card goes, and the countdown with it.
      gw.state.gc = {
        running: null as never,
        last: { ...GC_LAST, token: "0a1b2c3d-0000-4000-8000-000000000000" },
      };
      await running.waitFor({ state: "hidden" });
      expect(await page.locator("#gc-last-title").textContent()).toBe("Last pass 0a1b2c3d");
      expect(await page.locator("#gc-summary").textContent()).toMatch(
        /^No pass is running on this gateway\./,
      );
      expect(await seriousAxeViolations(page)).toEqual([]);
      expect(await cspViolations(page)).toEqual([]);
      expect(errors).toEqual([]);
    } finally {
      gw.state = makeState();
      await page.close();
    }
  }, 60_000);

  test("a backup job shows as a progress bar with rate and ETA, a failed one with its error", async () => {
    const { page } = await open();
    try {
      await live(page);
      const card = page.locator('#backup-list li[data-key="0fb94c9e2616"]');
      const bar = card.locator("progress");
      expect(await bar.getAttribute("max")).toBe(String(256 * MiB));
      expect(await bar.evaluate((p) => (p as HTMLProgressElement).value)).toBe(96 * MiB);
      const words = await card.innerText();
      expect(words).toContain(`Backup of ${HOSTILE_IMAGE}`);
      expect(words).toContain("96.0 MiB of 256 MiB (38%)");
      expect(words).toMatch(/Rate\s+32\.0 MiB\/s/);
      expect(words).toMatch(/Time left\s+5 s/);
      expect(words).toContain("s3://vm-backups/site-a?endpoint=http://127.0.0.1:7491&region=us-east-1");
      const failed = page.locator('#backup-list li[data-key="7c5d181f427c"]');
      expect(await failed.getAttribute("data-state")).toBe("failed");
      expect(await failed.innerText()).toContain("Verify of backup 20261201-114528-84d000d2");
      expect(await failed.locator(".lost").textContent()).toBe(HOSTILE_ERROR);
      expect(await page.locator("#backups-summary").textContent()).toContain(
        "1 job(s) running; 1 finished (1 failed)",
      );
      // It moves, and ends.
      gw.state.backups[0] = { ...gw.state.backups[0]!, bytesDone: 200 * MiB, etaSeconds: 2 };
      await page.waitForFunction(
        () =>
          (document.querySelector('#backup-list li[data-key="0fb94c9e2616"] progress') as HTMLProgressElement)
            .value >
          150 * 1024 * 1024,
      );
      gw.state.backups[0] = {
        ...gw.state.backups[0]!,
        state: "done",
        phase: "done",
        bytesDone: 256 * MiB,
        finishedAt: new Date().toISOString(),
        backup: "20261201-114528-84d000d2",
        etaSeconds: 0,
      };
      await page.waitForSelector('#backup-list li[data-key="0fb94c9e2616"][data-state="done"]');
      expect(await card.locator(".bar-label").textContent()).toBe("256 MiB of 256 MiB (100%), done");
      expect(await card.innerText()).toMatch(/Backup\s+20261201-114528-84d000d2/);
      expect(await seriousAxeViolations(page)).toEqual([]);
    } finally {
      gw.state = makeState();
      await page.close();
    }
  }, 60_000);

  test("a 401 asks for a token, which then goes as a bearer header on every API request", async () => {
    gw.token = "s3cret-token";
    const from = gw.requests.length;
    const { page, errors } = await open();
    try {
      const dialog = page.locator("#dialog");
      await dialog.waitFor({ state: "visible", timeout: 15_000 });
      expect(await page.locator("#dialog-title").textContent()).toBe("API token");
      expect(await page.locator("#connection").textContent()).toBe("Token needed");
      await page.fill("#dialog-input", "s3cret-token");
      await page.click("#dialog-ok");
      await live(page);
      expect(await page.evaluate(() => sessionStorage.getItem("blockmend.apiToken"))).toBe("s3cret-token");
      const api = gw.requests.slice(from).filter((r) => r.path.startsWith("/v1/"));
      expect(api[0]!.auth).toBeNull(); // the first try went without one
      expect(api.at(-1)!.auth).toBe("Bearer s3cret-token");
      // The page and its files never carry it (they are fetched by the browser, not by the page's code).
      for (const r of gw.requests.slice(from).filter((x) => !x.path.startsWith("/v1/")))
        expect(r.auth).toBeNull();
      // A reload in the same tab keeps it: no question again.
      await page.reload();
      await live(page);
      expect(await page.locator("#dialog").isVisible()).toBe(false);
      // Actions carry it too.
      await page.click('#safety-list li[data-key="w"] button');
      await page.fill("#dialog-input", "w");
      await page.click("#dialog-ok");
      await page.waitForFunction(() => !document.getElementById("action-status")!.hidden);
      expect(gw.sent("PUT", "/v1/stores/w/maintenance").at(-1)!.auth).toBe("Bearer s3cret-token");
      expect(errors.filter((e) => !e.includes("401"))).toEqual([]);
    } finally {
      gw.token = null;
      await page.close();
    }
  }, 60_000);

  test("maintenance needs the store id typed; Cancel and Escape send nothing", async () => {
    const { page } = await open();
    try {
      await live(page);
      const before = gw.sent("PUT", "/v1/stores/b/maintenance").length;
      await page.click('#safety-list li[data-key="b"] button');
      expect(await page.locator("#dialog-title").textContent()).toBe("Start maintenance of store b?");
      expect(await page.locator("#dialog-label").textContent()).toBe("Type b to confirm");
      expect(await page.locator("#dialog-ok").isDisabled()).toBe(true);
      await page.fill("#dialog-input", "a");
      expect(await page.locator("#dialog-ok").isDisabled()).toBe(true);
      await page.keyboard.press("Escape");
      await page.locator("#dialog").waitFor({ state: "hidden" });
      await page.click('#safety-list li[data-key="b"] button');
      await page.click("#dialog-cancel");
      expect(gw.sent("PUT", "/v1/stores/b/maintenance").length).toBe(before);
      await page.click('#safety-list li[data-key="b"] button');
      await page.fill("#dialog-input", "b");
      expect(await page.locator("#dialog-ok").isDisabled()).toBe(false);
      await page.click("#dialog-ok");
      await page.waitForFunction(() =>
        document.getElementById("action-status")!.textContent!.includes("2 image"),
      );
      const sent = gw.sent("PUT", "/v1/stores/b/maintenance");
      expect(sent.length).toBe(before + 1);
      expect(sent.at(-1)!.body).toEqual({ on: true });
    } finally {
      await page.close();
    }
  }, 60_000);

  test("heal limits send only the changed field, after a confirmation naming it", async () => {
    const { page } = await open();
    try {
      await live(page);
      await page.waitForFunction(
        () => (document.getElementById("limit-floor") as HTMLInputElement).value === "4",
      );
      await page.fill("#limit-floor", "2");
      await page.click("#limits-apply");
      expect(await page.locator("#dialog-body").innerText()).toContain("floor: 2.0 MiB/s");
      await page.click("#dialog-ok");
      await page.waitForFunction(
        () => document.getElementById("action-status")!.textContent === "Heal limits changed.",
      );
      expect(gw.sent("PUT", "/v1/heal/limits").at(-1)!.body).toEqual({ floorBytesPerSecond: 2 * MiB });
    } finally {
      await page.close();
    }
  }, 60_000);

  test("a snapshot asks for a valid name and posts it for the right image", async () => {
    const { page } = await open();
    try {
      await live(page);
      await page.click('#image-list li[data-key="web01"] button');
      await page.fill("#dialog-input", "bad name!");
      await page.click("#dialog-ok");
      expect(await page.locator("#dialog-error").textContent()).toContain("Use 1 to 128");
      await page.fill("#dialog-input", "nightly");
      await page.click("#dialog-ok");
      await page.waitForFunction(() =>
        document.getElementById("action-status")!.textContent!.includes("web01@nightly"),
      );
      expect(gw.sent("POST", "/v1/images/").map((r) => [r.path, r.body])).toEqual([
        ["/v1/images/web01/snapshots", { name: "nightly" }],
      ]);
    } finally {
      await page.close();
    }
  }, 60_000);

  test("while the stream is down the page says its data is stale, and it reconnects by itself", async () => {
    const { page } = await open();
    try {
      await live(page);
      gw.down();
      await page.waitForSelector("main.stale", { timeout: 10_000 });
      expect(await page.locator("#stale-banner").innerText()).toContain(
        "Stale: these panels show the state as of",
      );
      expect(await page.locator("#connection").getAttribute("data-state")).toBe("retrying");
      expect(await seriousAxeViolations(page)).toEqual([]);
      gw.state.images.push({ ...gw.state.images[1]!, name: "after-restart" });
      gw.reopen();
      await page.waitForSelector('#connection[data-state="live"]', { timeout: 20_000 });
      await page.waitForSelector('#image-list li[data-key="after-restart"]');
      expect(await page.locator("main.stale").count()).toBe(0);
      expect(await page.locator("#stale-banner").isHidden()).toBe(true);
    } finally {
      gw.state = makeState();
      await page.close();
    }
  }, 60_000);

  test("every control is reachable with the keyboard, and Enter acts", async () => {
    const { page } = await open();
    try {
      await live(page);
      const want = await page.evaluate(
        () =>
          [...document.querySelectorAll("a[href], button, input")].filter(
            (e) => !(e as HTMLElement).closest("dialog") && (e as HTMLElement).offsetParent !== null,
          ).length,
      );
      const reached = new Set<string>();
      for (let i = 0; i < want + 5; i++) {
        await page.keyboard.press("Tab");
        reached.add(
          await page.evaluate(() => {
            const e = document.activeElement as HTMLElement;
            const key = e.closest("li[data-key]")?.getAttribute("data-key") ?? "";
            return `${e.tagName} ${e.id} ${key} ${e.textContent?.trim() ?? ""}`;
          }),
        );
      }
      expect([...reached].filter((r) => /^(A|BUTTON|INPUT) /.test(r)).length).toBeGreaterThanOrEqual(want);
      // Enter on a focused maintenance button opens its confirmation.
      await page.focus('#safety-list li[data-key="a"] button');
      await page.keyboard.press("Enter");
      await page.locator("#dialog").waitFor({ state: "visible" });
      expect(await page.evaluate(() => document.activeElement?.id)).toBe("dialog-input");
      await page.keyboard.press("Escape");
      await page.locator("#dialog").waitFor({ state: "hidden" });
      expect(await page.evaluate(() => document.activeElement?.closest("li")?.getAttribute("data-key"))).toBe(
        "a",
      );
    } finally {
      await page.close();
    }
  }, 60_000);
});
