/**
 * The dashboard in headless Chromium against a cluster of real processes (two data
 * stores, a witness, one gateway; TestCluster), as an operator would watch it:
 *
 * - the page shows every store and every image (size, owner gateway, snapshots);
 * - store b is SIGKILLed: within 3 s the page shows it down and store a not safe to
 *   remove (a holds the only current copy now);
 * - the heal is slowed through the page's own heal-limits form (PUT /v1/heal/limits),
 *   data is written over NBD while b is away, b is started again: the progress bar of
 *   b's heal moves, and then the page shows b in sync;
 * - maintenance on and off and a snapshot through the page reach the real API;
 * - a garbage collection pass (POST /v1/gc, after data was overwritten) shows its steps
 *   and the countdown of its grace, then what it deleted per store; a backup job of
 *   web01 (the gateway's real S3 client, into a stand-in S3 over memory) shows with its
 *   bytes;
 * - at each of those moments: axe-core in the page finds no serious or critical
 *   violation, the 375 px and 1280 px layouts have no horizontal overflow, the page
 *   breaks no CSP rule, and a screenshot is saved under test/artifacts/ and checked to
 *   be a real render (its size, and pixels that vary), light and dark.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Page } from "playwright-core";
import type { GcReport } from "../../../gateway/gc/collector.ts";
import {
  horizontalOverflow,
  launchChromium,
  screenshot,
  seriousAxeViolations,
  type TestBrowser,
} from "../../support/browser.ts";
import { startMemoryS3 } from "../../support/memory-s3.ts";
import type { NbdClient } from "../../support/nbd-client.ts";
import {
  api,
  TestCluster as Cluster,
  nbd,
  randomBytes,
  send,
  storeState,
  type TestCluster,
  type TestGateway,
  waitFor,
  waitInSync,
} from "../../support/test-cluster.ts";

const MiB = 1024 * 1024;
/** The heal's rate through the page's form: slow enough to watch 12 MiB go by. */
const SLOW_MIB_PER_S = 1;
const AWAY_BYTES = 12 * MiB;

let cluster: TestCluster;
let gw: TestGateway;
let browser: TestBrowser;
let disk: NbdClient;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  cluster = await Cluster.start(["a", "b", "w"]);
  gw = await cluster.startGateway();
  await send(gw, "POST", "/v1/images", { name: "web01", size: 64 * MiB });
  await send(gw, "POST", "/v1/images", { name: "db-2", size: 32 * MiB });
  disk = await nbd(gw, "web01");
  for (let o = 0; o < 8 * MiB; o += MiB) await disk.write(o, randomBytes(MiB));
  await disk.flush();
  await send(gw, "POST", "/v1/images/web01/snapshots", { name: "before-upgrade" });
  await waitInSync(gw);
  browser = await launchChromium();
  page = await openPage(1280);
}, 120_000);

afterAll(async () => {
  disk?.close();
  await browser?.close();
  await cluster?.close();
});

async function openPage(width: number, colorScheme: "light" | "dark" = "light"): Promise<Page> {
  const p = await browser.newPage({ width, height: 900, colorScheme });
  p.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));
  await p.addInitScript(() => {
    const w = window as unknown as { __csp: string[] };
    w.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) =>
      w.__csp.push(`${e.violatedDirective} ${e.blockedURI}`),
    );
  });
  await p.goto(`${gw.url}/`);
  await p.waitForSelector('#connection[data-state="live"]', { timeout: 20_000 });
  await p.waitForSelector('#store-list li[data-key="w"]', { timeout: 20_000 });
  return p;
}

/**
 * The checks of one moment: no serious axe finding, no horizontal overflow, no CSP
 * violation, and a screenshot that is not blank, at 1280 px and at 375 px.
 */
async function moment(name: string): Promise<void> {
  for (const width of [1280, 375]) {
    await page.setViewportSize({ width, height: 900 });
    await page.waitForTimeout(300); // a layout pass and the charts' resize
    const { overflow, offenders } = await horizontalOverflow(page);
    expect(overflow, `${name} at ${width} px overflows: ${offenders.join("; ")}`).toBe(0);
    const violations = await seriousAxeViolations(page);
    expect(violations, `${name} at ${width} px: ${JSON.stringify(violations, null, 1)}`).toEqual([]);
    const shot = await screenshot(page, `dashboard-${name}-${width}`);
    expect(shot.check.width).toBe(width);
    expect(shot.check.height).toBeGreaterThan(900);
    expect(shot.check.colours, `${shot.path} has a few colours only`).toBeGreaterThan(20);
    expect(shot.check.spread, `${shot.path} is nearly uniform`).toBeGreaterThan(10);
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  expect(await page.evaluate(() => (window as unknown as { __csp: string[] }).__csp)).toEqual([]);
  expect(pageErrors).toEqual([]);
}

const storeCard = (id: string) => `#store-list li[data-key="${id}"]`;

describe("the dashboard against a real cluster", () => {
  test("shows every store and every image", async () => {
    for (const id of ["a", "b", "w"]) {
      const card = page.locator(storeCard(id));
      expect(await card.getAttribute("data-state")).toBe("in-sync");
      const words = await card.innerText();
      expect(words).toContain(`Store ${id}`);
      const identity = (await storeState(gw, id)).identity;
      expect(words).toContain(identity);
      if (id !== "w") {
        expect(words).toMatch(/Holds\s+[\d,]+ chunks/);
        expect(words).toMatch(/Fill: /);
      }
    }
    const web01 = page.locator('#image-list li[data-key="web01"]');
    const words = await web01.innerText();
    expect(words).toMatch(/Size\s+64\.0 MiB/);
    expect(words).toContain("before-upgrade");
    const owner = (await api<{ owner: string }>(gw, "/v1/images/web01")).owner;
    expect(words).toContain(`gateway ${owner}`);
    expect(await page.locator('#image-list li[data-key="db-2"]').innerText()).toMatch(/Size\s+32\.0 MiB/);
    // A name with markup cannot be made here: the API refuses it (so dashboard-page.test.ts
    // shows such names through a stand-in gateway).
    const refused = await fetch(`${gw.url}/v1/images`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: `<img src=x onerror="alert(1)">`, size: MiB }),
    });
    expect(refused.status).toBe(400);
    // A sample has arrived for the chart, and the chart was drawn.
    await page.waitForFunction(
      () => document.getElementById("io-now")!.textContent!.startsWith("At "),
      null,
      {
        timeout: 10_000,
      },
    );
    expect(await page.locator("#latency-chart canvas").count()).toBeGreaterThan(0);
    await moment("1-in-sync");
    const dark = await openPage(1280, "dark");
    try {
      expect(await seriousAxeViolations(dark)).toEqual([]);
      const shot = await screenshot(dark, "dashboard-1-in-sync-1280-dark");
      expect(shot.check.spread).toBeGreaterThan(10);
    } finally {
      await dark.close();
    }
  }, 120_000);

  test("a SIGKILLed store shows down within 3 s, and the other store not safe to remove", async () => {
    await cluster.stopStore("b", "SIGKILL");
    const killed = Date.now();
    await page.waitForSelector(`${storeCard("b")}[data-state="down"]`, { timeout: 3_000 });
    await page.waitForSelector('#safety-list li[data-key="a"][data-safe="false"]', {
      timeout: Math.max(1, 3_000 - (Date.now() - killed)),
    });
    const seenIn = Date.now() - killed;
    console.log(`dashboard: store b shown down, and a not safe to remove, ${seenIn} ms after its SIGKILL`);
    expect(seenIn).toBeLessThanOrEqual(3_000);
    expect(await page.locator('#safety-list li[data-key="a"]').innerText()).toContain(
      "would lose their last current copy",
    );
    expect(
      await page
        .locator(`${storeCard("b")} .badge`)
        .first()
        .textContent(),
    ).toBe("down");
    await page.waitForSelector('#mark-list li[data-kind="store-down"]', { timeout: 5_000 });
    await moment("2-store-down");
  }, 60_000);

  test("a slowed heal moves its progress bar, then the store shows in sync", async () => {
    // Slow the heal down through the page's own form (PUT /v1/heal/limits).
    for (const id of ["limit-floor", "limit-ceiling", "limit-rate"])
      await page.fill(`#${id}`, String(SLOW_MIB_PER_S));
    await page.fill("#limit-concurrency", "1");
    await page.click("#limits-apply");
    await page.click("#dialog-ok");
    await page.waitForFunction(
      () => document.getElementById("action-status")!.textContent === "Heal limits changed.",
    );
    const limits = await api<Record<string, number>>(gw, "/v1/heal/limits");
    expect(limits.ceilingBytesPerSecond).toBe(SLOW_MIB_PER_S * MiB);
    expect(limits.concurrency).toBe(1);

    // What b misses while away, written as a VM would (NBD).
    for (let o = 16 * MiB; o < 16 * MiB + AWAY_BYTES; o += MiB) await disk.write(o, randomBytes(MiB));
    await disk.flush();
    await cluster.startStore("b");

    const bar = `#heal-list li[data-key="b"][data-running="true"] progress[value]`;
    await page.waitForSelector(bar, { timeout: 30_000 });
    const value = () => page.$eval(bar, (p) => (p as HTMLProgressElement).value);
    await waitFor("the heal to copy something", async () => (await value()) > 0, 30_000);
    const first = await value();
    const max = Number(await page.$eval(bar, (p) => p.getAttribute("max")));
    expect(max).toBeGreaterThanOrEqual(AWAY_BYTES);
    expect(first).toBeLessThan(max);
    await waitFor("the progress bar to move", async () => (await value()) > first, 30_000);
    const words = await page.locator('#heal-list li[data-key="b"]').innerText();
    expect(words).toMatch(/copied \(\d+%\)/);
    expect(words).toMatch(/Rate\s+[\d.]+ (KiB|MiB)\/s/);
    expect(words).toMatch(/Time left\s+\d+/);
    expect(words).toMatch(/Converges\s+yes/);
    // Some VM reads meanwhile, for the chart.
    for (let o = 0; o < 4 * MiB; o += 256 * 1024) await disk.read(o, 256 * 1024);
    await moment("3-healing");

    await page.waitForSelector(`${storeCard("b")}[data-state="in-sync"]`, { timeout: 120_000 });
    await page.waitForSelector('#heal-list li[data-key="b"][data-running="false"][data-state="in-sync"]', {
      timeout: 30_000,
    });
    expect(await page.locator('#heal-list li[data-key="b"] .badge').textContent()).toBe("in sync");
    expect(await page.locator('#heal-list li[data-key="b"] .bar-label').textContent()).toContain(
      "done; store b is in sync",
    );
    await page.waitForSelector('#safety-list li[data-key="a"][data-safe="true"]', { timeout: 10_000 });
    await page.waitForSelector('#mark-list li[data-kind="heal-end"]', { timeout: 10_000 });
    await moment("4-in-sync-again");
    await send(gw, "PUT", "/v1/heal/limits", {
      ceilingBytesPerSecond: 1024 * MiB,
      rateBytesPerSecond: 32 * MiB,
      floorBytesPerSecond: 4 * MiB,
      concurrency: 4,
    });
  }, 240_000);

  test("maintenance and a snapshot through the page reach the gateway", async () => {
    await page.click('#safety-list li[data-key="a"] button');
    await page.fill("#dialog-input", "a");
    await page.click("#dialog-ok");
    await waitFor(
      "store a in maintenance",
      async () => (await storeState(gw, "a")).maintenance !== null,
      20_000,
    );
    await page.waitForFunction(
      () => document.querySelector('#safety-list li[data-key="a"]')!.textContent!.includes("Maintenance: on"),
      null,
      { timeout: 10_000 },
    );
    await page.click('#safety-list li[data-key="a"] button');
    await page.fill("#dialog-input", "a");
    await page.click("#dialog-ok");
    await waitFor(
      "store a out of maintenance",
      async () => (await storeState(gw, "a")).maintenance === null,
      20_000,
    );

    await page.click('#image-list li[data-key="web01"] button');
    await page.fill("#dialog-input", "from-dashboard");
    await page.click("#dialog-ok");
    await page.waitForFunction(
      () =>
        document.querySelector('#image-list li[data-key="web01"]')!.textContent!.includes("from-dashboard"),
      null,
      { timeout: 10_000 },
    );
    const snaps = await api<{ snapshots: { name: string }[] }>(gw, "/v1/images/web01/snapshots");
    expect(snaps.snapshots.map((s) => s.name)).toContain("from-dashboard");
    expect(pageErrors).toEqual([]);
  }, 60_000);

  test("a gc pass shows its grace's countdown, then what it deleted; a backup job shows with its bytes", async () => {
    // Garbage: 2 MiB written twice. Once every store is in sync at the second version,
    // nothing references the first one's chunks.
    for (let round = 0; round < 2; round++) {
      for (let o = 40 * MiB; o < 42 * MiB; o += MiB) await disk.write(o, randomBytes(MiB));
      await disk.flush();
    }
    await waitInSync(gw);
    const passing = send<GcReport>(gw, "POST", "/v1/gc?wait=1", { graceSeconds: 5 });
    passing.catch(() => {});
    await page.waitForSelector('#gc-running[data-phase="grace"]', { timeout: 5_000 });
    expect(await page.locator('#gc-steps li[aria-current="step"] .step-name').textContent()).toBe("Grace");
    expect(await page.locator("#gc-countdown").textContent()).toMatch(
      /^Sweep (in [0-5] s \(at \d\d:\d\d:\d\d\)|due now): the 5 s grace began when the barrier was set/,
    );
    const report = await passing;
    expect(report.phase).toBe("done");
    const deleted = report.stores.reduce((n, s) => n + s.deleted, 0);
    expect(deleted).toBeGreaterThan(0);
    expect(await api(gw, "/v1/gc")).toEqual({ running: null, last: report });
    await page.waitForSelector(`#gc-last[data-deleted="${deleted}"]`, { timeout: 10_000 });
    expect(await page.locator("#gc-running").isHidden()).toBe(true);
    const words = await page.locator("#gc-last").innerText();
    expect(words).toContain(`Last pass ${report.token.slice(0, 8)}`);
    expect(words).toMatch(/Deleted\s+[\d,]+ chunk\(s\), [\d.]+ (KiB|MiB)/);
    expect(words).toMatch(new RegExp(`Run by\\s+gateway ${report.gateway}`));
    for (const s of report.stores)
      expect(
        await page.locator(`#gc-last-stores li[data-key="${s.store}"]`).getAttribute("data-deleted"),
      ).toBe(String(s.deleted));

    const s3 = startMemoryS3();
    try {
      const job = await send<{ id: string }>(gw, "POST", "/v1/backups/jobs", {
        kind: "create",
        target: s3.target("dashboard"),
        credentials: { accessKeyId: "test", secretAccessKey: "test" },
        image: "web01",
      });
      const card = `#backup-list li[data-key="${job.id}"]`;
      await page.waitForSelector(`${card}[data-state="done"]`, { timeout: 30_000 });
      const status = await api<{ bytesDone: number; bytesTotal: number; backup: string }>(
        gw,
        `/v1/backups/jobs/${job.id}`,
      );
      expect(status.bytesTotal).toBeGreaterThan(0);
      const bar = `${card} progress`;
      expect(Number(await page.$eval(bar, (p) => p.getAttribute("max")))).toBe(status.bytesTotal);
      expect(await page.$eval(bar, (p) => (p as HTMLProgressElement).value)).toBe(status.bytesTotal);
      const jobWords = await page.locator(card).innerText();
      expect(jobWords).toContain("Backup of web01");
      expect(jobWords).toMatch(/\(100%\), done/);
      expect(jobWords).toMatch(new RegExp(`Backup\\s+${status.backup}`));
      expect(s3.objects.objects.size).toBeGreaterThan(0); // it did land in the bucket
      await moment("5-gc-and-backup");
    } finally {
      await s3.stop();
    }
  }, 120_000);
});
