/**
 * Makes docs/dashboard.png, the README's picture of the dashboard, from a real run: three
 * store processes (two data, a witness) and a gateway on loopback, VM I/O over NBD, store
 * b killed, data written while it is away, b started again with a slowed heal; the
 * screenshot is taken while the heal runs. Every process is stopped at the end.
 *
 *   node_modules/.bin/bun scripts/dashboard-screenshot.ts [OUT.png]
 *
 * Needs Debian's chromium (scripts/test.sh installs it). The picture must stay under
 * 150 KB: the viewport is the top of the page at 1100 x 940, and where Debian's pngquant
 * is installed (`apt-get install pngquant`) its colours are reduced to a palette.
 */
import { writeFile } from "node:fs/promises";
import { launchChromium } from "../test/support/browser.ts";
import { nbd, randomBytes, send, TestCluster, waitFor, waitInSync } from "../test/support/test-cluster.ts";

const MiB = 1024 * 1024;
const out = process.argv[2] ?? new URL("../docs/dashboard.png", import.meta.url).pathname;

const cluster = await TestCluster.start(["a", "b", "w"]);
const browser = await launchChromium();
try {
  const gw = await cluster.startGateway();
  await send(gw, "POST", "/v1/images", { name: "web01", size: 1024 * MiB });
  await send(gw, "POST", "/v1/images", { name: "db-2", size: 256 * MiB });
  const disk = await nbd(gw, "web01");
  for (let o = 0; o < 32 * MiB; o += MiB) await disk.write(o, randomBytes(MiB));
  await disk.flush();
  await send(gw, "POST", "/v1/images/web01/snapshots", { name: "before-upgrade" });
  await waitInSync(gw);

  const page = await browser.newPage({ width: 1100, height: 940 });
  await page.goto(`${gw.url}/`);
  await page.waitForSelector('#connection[data-state="live"]', { timeout: 20_000 });

  // A minute of VM I/O for the chart, with store b killed half way and data written meanwhile.
  const io = async (seconds: number, writeFrom: number) => {
    const end = Date.now() + seconds * 1000;
    let o = writeFrom;
    while (Date.now() < end) {
      await disk.write(o, randomBytes(256 * 1024));
      await disk.read(o % (32 * MiB), 256 * 1024);
      o += 256 * 1024;
      await disk.flush();
      await Bun.sleep(50);
    }
    return o;
  };
  let at = await io(30, 64 * MiB);
  await cluster.stopStore("b");
  at = await io(25, at);
  await send(gw, "PUT", "/v1/heal/limits", {
    floorBytesPerSecond: 2 * MiB,
    ceilingBytesPerSecond: 2 * MiB,
    rateBytesPerSecond: 2 * MiB,
    concurrency: 1,
  });
  await cluster.startStore("b");
  await page.waitForSelector('#heal-list li[data-key="b"][data-running="true"] progress[value]', {
    timeout: 30_000,
  });
  await io(8, at);
  await waitFor(
    "the heal a third done",
    async () =>
      (await page.$eval('#heal-list li[data-key="b"] progress', (p) => {
        const bar = p as HTMLProgressElement;
        return bar.value / bar.max;
      })) > 0.33,
    60_000,
  );
  const png = await page.screenshot({ animations: "disabled" });
  await writeFile(out, png);
  if (Bun.which("pngquant")) {
    const q = Bun.spawnSync(["pngquant", "--force", "--quality", "70-95", "--output", out, out]);
    if (q.exitCode !== 0) console.error(`pngquant failed (${q.exitCode}); kept the full-colour PNG`);
  }
  console.log(`${out}: ${Bun.file(out).size} bytes`);
  disk.close();
} finally {
  await browser.close();
  await cluster.close();
}
