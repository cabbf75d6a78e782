/**
 * Headless Chromium for tests, driven by playwright-core: Debian's `chromium` package
 * (installed by scripts/test.sh and .ci/run; playwright-core downloads no browser), with
 * a fresh profile per launch and every background connection off (this machine's network
 * is closed: Chromium's own connections would only be refused). Plus the page checks the
 * dashboard tests share: axe-core in the page, horizontal overflow, screenshots that are
 * not blank.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BrowserContext, chromium, type Page } from "playwright-core";

/** Debian's Chromium. */
export const CHROMIUM = "/usr/bin/chromium";

/** Where screenshots go (gitignored). */
export const ARTIFACTS = fileURLToPath(new URL("../artifacts/", import.meta.url));

const AXE_SOURCE = readFileSync(fileURLToPath(import.meta.resolve("axe-core/axe.min.js")), "utf8");

/** A launched browser (one context, over the fresh profile it owns). */
export interface TestBrowser {
  readonly context: BrowserContext;
  /** A new page at `width` x `height`, in the light or dark scheme. */
  newPage(options?: { width?: number; height?: number; colorScheme?: "light" | "dark" }): Promise<Page>;
  close(): Promise<void>;
}

/**
 * Launches headless Chromium on a fresh profile directory (Playwright takes it as the
 * persistent context's userDataDir, its way of passing `--user-data-dir`); close() stops
 * it and removes the profile.
 */
export async function launchChromium(): Promise<TestBrowser> {
  const profile = mkdtempSync(join(tmpdir(), "blockmend-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return {
    context,
    newPage: async (o = {}) => {
      const page = await context.newPage();
      await page.setViewportSize({ width: o.width ?? 1280, height: o.height ?? 900 });
      await page.emulateMedia({ colorScheme: o.colorScheme ?? "light" });
      return page;
    },
    close: async () => {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** One axe-core finding. */
export interface AxeViolation {
  readonly id: string;
  readonly impact: string | null;
  readonly help: string;
  readonly nodes: { readonly target: string[]; readonly failureSummary?: string }[];
}

/**
 * Runs axe-core in `page` (injected through the DevTools protocol, which the page's CSP
 * does not govern) and returns the serious and critical violations.
 */
export async function seriousAxeViolations(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(AXE_SOURCE);
  const result = (await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(ctx: unknown, opts: unknown): Promise<unknown> } })
      .axe;
    return axe.run(document, { resultTypes: ["violations"] });
  })) as { violations: AxeViolation[] };
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => ({ target: n.target, failureSummary: n.failureSummary })),
    }));
}

/** How far the page is wider than its viewport (0: no horizontal overflow), and the widest offenders. */
export async function horizontalOverflow(page: Page): Promise<{ overflow: number; offenders: string[] }> {
  return page.evaluate(() => {
    const doc = document.documentElement;
    const width = doc.clientWidth;
    const offenders: string[] = [];
    for (const el of document.querySelectorAll("body *")) {
      const r = el.getBoundingClientRect();
      if (r.width > 0 && r.right > width + 1 && offenders.length < 5)
        offenders.push(
          `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ""}.${el.className} right=${r.right}`,
        );
    }
    return { overflow: Math.max(0, doc.scrollWidth - width), offenders };
  });
}

/** The size of a PNG and whether its pixels vary (a blank render is one colour). */
export interface PngCheck {
  readonly width: number;
  readonly height: number;
  readonly bytes: number;
  /** Distinct colours among the sampled pixels. */
  readonly colours: number;
  /** Standard deviation of the sampled pixels' luminance. */
  readonly spread: number;
}

/**
 * Decodes `png` in the page's own browser (an <img> drawn on a canvas, so no PNG decoder
 * is needed here) and samples a grid of pixels.
 */
export async function checkPng(page: Page, png: Uint8Array): Promise<PngCheck> {
  const b64 = Buffer.from(png).toString("base64");
  const probe = await page.context().newPage();
  try {
    return { ...(await probe.evaluate(decodeAndSample, b64)), bytes: png.byteLength };
  } finally {
    await probe.close();
  }
}

/** Runs in the browser: decodes a base64 PNG and samples 64 x 64 pixels. */
async function decodeAndSample(b64: string): Promise<Omit<PngCheck, "bytes">> {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d")!;
  ctx.drawImage(bitmap, 0, 0);
  const data = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const colours = new Set<number>();
  const lum: number[] = [];
  for (let gy = 0; gy < 64; gy++)
    for (let gx = 0; gx < 64; gx++) {
      const x = Math.floor(((gx + 0.5) * bitmap.width) / 64);
      const y = Math.floor(((gy + 0.5) * bitmap.height) / 64);
      const i = (y * bitmap.width + x) * 4;
      const [r, g, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
      colours.add((r << 16) | (g << 8) | b);
      lum.push(0.2126 * r + 0.7152 * g + 0.0722 * b);
    }
  const mean = lum.reduce((a, b) => a + b, 0) / lum.length;
  const spread = Math.sqrt(lum.reduce((a, b) => a + (b - mean) ** 2, 0) / lum.length);
  return { width: bitmap.width, height: bitmap.height, colours: colours.size, spread };
}

/** Saves a full-page screenshot under test/artifacts/ and returns the PNG with its check. */
export async function screenshot(page: Page, name: string): Promise<{ path: string; check: PngCheck }> {
  await mkdir(ARTIFACTS, { recursive: true });
  const png = await page.screenshot({ fullPage: true, animations: "disabled" });
  const path = join(ARTIFACTS, `${name}.png`);
  await writeFile(path, png);
  return { path, check: await checkPng(page, png) };
}
