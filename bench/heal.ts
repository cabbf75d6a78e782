/**
 * Heal benchmark: the scenario test's setup (two data chunk store processes, a witness,
 * a gateway with 2 replicas, min 1) under a steady, rate-limited fio random read/write
 * mix over NBD with a per-I/O latency log. Store B is SIGKILLed, written around, and
 * restarted; the heal runs under load. Then the same with no foreground load, to get the
 * idle heal rate, against the store's raw put rate over HTTP.
 *
 * Prints latency p50/p99/p99.9/max and the longest stretch without a completed I/O
 * before, during and after the heal; heal duration; bytes copied / bytes changed; idle
 * heal rate. Writes docs/heal-latency.svg (latency over time, events marked).
 *
 *   bun bench/heal.ts [--image-mib 512] [--away-seconds 20]
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashChunk } from "../chunkstore/hash.ts";
import { HttpStore } from "../chunkstore/http-store.ts";
import { fioOverNbd, parseFioLog, pct, procs, sh, startProc } from "./_procs.ts";
import { machine, table } from "./_report.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const IMAGE_MIB = arg("--image-mib", 512);
const AWAY_S = arg("--away-seconds", 20);
const BEFORE_S = 10;
const AFTER_S = 10;
const CHUNK = 65536;
const ROOT = new URL("..", import.meta.url).pathname;

const dir = await mkdtemp(join(tmpdir(), "blockmend-bench-heal-"));
try {
  console.log(`# heal benchmark: ${machine()}`);
  const urls: Record<string, string> = {};
  for (const id of ["a", "b", "w"]) {
    const out = await startProc(id, [
      "chunkstore",
      "--dir",
      join(dir, id),
      "--listen",
      "127.0.0.1:0",
      ...(id === "w" ? ["--witness"] : []),
    ]);
    urls[id] = /(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
  }
  const gwOut = await startProc("gw", [
    "gateway",
    ...Object.entries(urls).flatMap(([id, u]) => ["--store", `${id}=${u}`]),
    "--replicas",
    "2",
    "--min-replicas",
    "1",
    "--nbd",
    "127.0.0.1:0",
    "--http",
    "127.0.0.1:0",
  ]);
  const api = /(http:\/\/127\.0\.0\.1:\d+)/.exec(gwOut)![1]!;
  const nbd = /(nbd:\/\/127\.0\.0\.1:\d+)/.exec(gwOut)![1]!;
  const get = async <T>(path: string) => (await (await fetch(`${api}${path}`)).json()) as T;
  type Heal = { healing: boolean; stores: { id: string; state: string; copiedBytes: number }[] };
  const waitHealed = async () => {
    for (;;) {
      const h = await get<Heal>("/v1/heal");
      if (!h.healing && h.stores.every((s) => s.state === "in-sync")) return h;
      await Bun.sleep(100);
    }
  };
  const restart = async (id: string) => {
    const port = new URL(urls[id]!).port;
    await startProc(id, ["chunkstore", "--dir", join(dir, id), "--listen", `127.0.0.1:${port}`]);
  };
  const kill = async (id: string) => {
    procs.get(id)!.kill("SIGKILL");
    await procs.get(id)!.exited;
  };

  await fetch(`${api}/v1/images`, {
    method: "POST",
    body: JSON.stringify({ name: "vm", size: IMAGE_MIB * 1024 * 1024 }),
    headers: { "content-type": "application/json" },
  });
  const fio = (extra: string[]) => fioOverNbd(`${nbd}/vm`, IMAGE_MIB, extra);
  await sh(fio(["--rw=write", "--bs=1M", "--iodepth=8", "--end_fsync=1"]));
  await waitHealed();

  // --- Phase 1: steady foreground load; B killed, written around, restarted; heal under load.
  const logPrefix = join(dir, "lat");
  const t0 = Date.now();
  const total = BEFORE_S + AWAY_S + 60;
  const load = Bun.spawn(
    fio([
      "--rw=randrw",
      "--rwmixread=70",
      "--bs=4k",
      "--iodepth=4",
      "--rate_iops=300,130",
      "--time_based",
      `--runtime=${total}`,
      `--write_lat_log=${logPrefix}`,
      "--log_offset=1",
      "--output-format=json",
    ]),
    { stdout: "pipe", stderr: "pipe" },
  );
  await Bun.sleep(BEFORE_S * 1000);
  const down = Date.now() - t0;
  await kill("b");
  await Bun.sleep(AWAY_S * 1000);
  const up = Date.now() - t0;
  await restart("b");
  await Bun.sleep(500);
  const healed = await waitHealed();
  const healEnd = Date.now() - t0;
  const copied = healed.stores.find((s) => s.id === "b")!.copiedBytes;
  await Bun.sleep(AFTER_S * 1000);
  load.kill("SIGINT");
  await load.exited;

  // fio's log: time (ms since fio start), latency (ns), direction (0 read, 1 write), size, offset.
  const raw = await readFile(`${logPrefix}_clat.1.log`, "utf8");
  const fioStart = t0; // fio starts within a few ms of t0; events are placed on the same clock
  const entries = parseFioLog(raw);
  const changed = new Set<number>();
  for (const [t, , dirn, , off] of entries)
    if (dirn === 1 && t >= down && t <= up) changed.add(Math.floor(off / CHUNK));
  const changedBytes = changed.size * CHUNK;
  const phases = [
    { name: "before (all in sync)", from: 1000, to: down },
    { name: "B down", from: down, to: up },
    { name: "heal running", from: up, to: healEnd },
    { name: "after heal", from: healEnd, to: healEnd + AFTER_S * 1000 },
  ];
  const rows = phases.map((ph) => {
    const inPhase = entries.filter(([t]) => t >= ph.from && t < ph.to);
    const lats = inPhase.map((e) => e[1] / 1e6).sort((a, b) => a - b);
    const times = inPhase.map((e) => e[0]).sort((a, b) => a - b);
    let gap = 0;
    for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!);
    return [
      ph.name,
      ((ph.to - ph.from) / 1000).toFixed(1),
      inPhase.length,
      pct(lats, 0.5),
      pct(lats, 0.99),
      pct(lats, 0.999),
      lats.at(-1) ?? 0,
      gap,
    ];
  });
  console.log(
    `\nForeground: fio randrw 70/30, 4 KiB, QD4, 300 read + 130 write IOPS, ${IMAGE_MIB} MiB image; B down at ${(down / 1000).toFixed(1)} s for ${AWAY_S} s\n`,
  );
  table(
    ["phase", "seconds", "I/Os", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "longest gap ms"],
    rows as (string | number)[][],
  );
  const baseP99 = rows[0]![4] as number;
  const healP99 = rows[2]![4] as number;
  console.log(
    `\nheal: ${((healEnd - up) / 1000).toFixed(1)} s; copied ${copied} bytes for ${changedBytes} bytes changed (${changed.size} distinct 64 KiB chunks written while B was down): ratio ${(copied / changedBytes).toFixed(3)}`,
  );
  console.log(`p99 during heal / baseline p99: ${(healP99 / baseP99).toFixed(2)}`);

  // --- Phase 2: idle heal rate (no foreground), against the store's raw put rate.
  await kill("b");
  await sh(fio(["--rw=write", "--bs=1M", "--iodepth=8", "--size=256M", "--end_fsync=1"]));
  const idleStart = performance.now();
  await restart("b");
  const idle = await waitHealed();
  const idleSeconds = (performance.now() - idleStart) / 1000;
  const idleCopied = idle.stores.find((s) => s.id === "b")!.copiedBytes;
  // Raw put rate of the same kind of store process: 64 KiB chunks through HttpStore.putMany.
  await startProc("raw", ["chunkstore", "--dir", join(dir, "raw"), "--listen", "127.0.0.1:0"]).then(
    async (out) => {
      const store = await HttpStore.open(/(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!);
      const base = new Uint8Array(CHUNK);
      crypto.getRandomValues(base);
      const chunks = Array.from({ length: 4096 }, (_, i) => {
        const b = base.slice();
        new DataView(b.buffer).setUint32(0, i);
        return { hash: hashChunk(b), bytes: b };
      });
      const t = performance.now();
      await Promise.all(
        Array.from({ length: 8 }, (_, lane) => store.putMany(chunks.filter((_, i) => i % 8 === lane))),
      );
      const rawRate = (chunks.length * CHUNK) / ((performance.now() - t) / 1000);
      const idleRate = idleCopied / idleSeconds;
      console.log(
        `\nidle heal: ${idleCopied} bytes in ${idleSeconds.toFixed(1)} s (from restart to in sync) = ${(idleRate / 1e6).toFixed(1)} MB/s; store raw put rate over HTTP ${(rawRate / 1e6).toFixed(1)} MB/s; ratio ${(idleRate / rawRate).toFixed(2)}`,
      );
      await store.close();
    },
  );

  // --- Plot: latency over time, log scale, with the events marked.
  const W = 900;
  const H = 360;
  const tMax = Math.max(...entries.map((e) => e[0]));
  const x = (t: number) => 50 + (t / tMax) * (W - 70);
  const y = (ms: number) => H - 30 - ((Math.log10(Math.max(ms, 0.01)) + 2) / 6) * (H - 50);
  const dots = entries
    // Every I/O above 5 ms (the tail that matters) and one in five of the rest, to keep the file small.
    .filter((e, i) => e[1] > 5e6 || i % 5 === 0)
    .map(
      (e) =>
        `<circle cx="${x(e[0]).toFixed(0)}" cy="${y(e[1] / 1e6).toFixed(0)}" r="1.2" fill="${e[2] === 1 ? "#d62728" : "#1f77b4"}"/>`,
    )
    .join("");
  const mark = (t: number, label: string) =>
    `<line x1="${x(t)}" x2="${x(t)}" y1="15" y2="${H - 30}" stroke="#333" stroke-dasharray="4 3"/><text x="${x(t) + 3}" y="25" font-size="11">${label}</text>`;
  const grid = [0.01, 0.1, 1, 10, 100, 1000]
    .map(
      (ms) =>
        `<line x1="50" x2="${W - 20}" y1="${y(ms)}" y2="${y(ms)}" stroke="#ddd"/><text x="5" y="${y(ms) + 4}" font-size="10">${ms} ms</text>`,
    )
    .join("");
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif"><title>Foreground I/O latency over time during a store outage and heal</title><rect width="100%" height="100%" fill="white"/>${grid}${dots}${mark(down, "store B down")}${mark(up, "B up, heal starts")}${mark(healEnd, "heal end")}<text x="${W / 2 - 120}" y="${H - 8}" font-size="11">time (s, 0 to ${(tMax / 1000).toFixed(0)}); blue = read, red = write; fio completion latency</text></svg>`;
  await writeFile(join(ROOT, "docs/heal-latency.svg"), svg);
  console.log("\nplot: docs/heal-latency.svg");
  void fioStart;
} finally {
  for (const p of procs.values()) p.kill("SIGKILL");
  await Promise.all([...procs.values()].map((p) => p.exited));
  await rm(dir, { recursive: true, force: true });
}
