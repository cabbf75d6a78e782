/**
 * Garbage collection benchmark: three chunk store processes and a gateway (2 replicas),
 * an image filled once and then overwritten in full (so there is as much garbage as live
 * data), a steady rate-limited fio random read/write mix over NBD with a per-I/O latency
 * log, and a pass started in the middle (`POST /v1/gc?wait=1`, grace 0). The peer is the
 * same VM load without a pass, in the same run: before and after it.
 *
 * Prints the mark, condemn and sweep rates, when the space came back on disk, and the VM's
 * p50/p99/max before, during and after the pass, with p99 during / p99 before (target 1.2).
 *
 *   bun bench/gc.ts [--live-mib 1024]      (the size: --live-mib 4096; needs fio)
 */
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { GcReport } from "../gateway/gc/collector.ts";
import { fioOverNbd, parseFioLog, pct, procs, sh, startProc } from "./_procs.ts";
import { machine, table } from "./_report.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const LIVE_MIB = arg("--live-mib", 1024);
const BEFORE_S = 15;
const AFTER_S = 15;
const MiB = 1024 * 1024;

async function diskBytes(path: string): Promise<number> {
  let total = 0;
  // A store renames files as it goes (ref writes): one gone meanwhile counts for nothing.
  for (const e of await readdir(path, { withFileTypes: true, recursive: true }))
    if (e.isFile()) total += ((await stat(join(e.parentPath, e.name)).catch(() => null))?.blocks ?? 0) * 512;
  return total;
}

const dir = await mkdtemp(join(tmpdir(), "blockmend-bench-gc-"));
try {
  console.log(`# gc benchmark: ${machine()}`);
  const ids = ["a", "b", "c"];
  const urls: Record<string, string> = {};
  for (const id of ids) {
    const out = await startProc(id, ["chunkstore", "--dir", join(dir, id), "--listen", "127.0.0.1:0"]);
    urls[id] = /(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
  }
  const gwOut = await startProc("gw", [
    "gateway",
    ...Object.entries(urls).flatMap(([id, u]) => ["--store", `${id}=${u}`]),
    ...["--replicas", "2", "--min-replicas", "1", "--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0"],
    ...["--state-dir", join(dir, "gw")],
  ]);
  const api = /(http:\/\/127\.0\.0\.1:\d+)/.exec(gwOut)![1]!;
  const nbd = /(nbd:\/\/127\.0\.0\.1:\d+)/.exec(gwOut)![1]!;
  const created = await fetch(`${api}/v1/images`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "vm", size: LIVE_MIB * MiB }),
  });
  if (created.status !== 201) throw new Error(`create vm: ${created.status} ${await created.text()}`);
  const fio = (extra: string[]) => fioOverNbd(`${nbd}/vm`, LIVE_MIB, extra);
  // Filled, then overwritten in full: the first fill is garbage, as much as the live data.
  for (let i = 0; i < 2; i++) await sh(fio(["--rw=write", "--bs=1M", "--iodepth=8", "--end_fsync=1"]));
  const diskBefore = (await Promise.all(ids.map((id) => diskBytes(join(dir, id))))).reduce(
    (a, b) => a + b,
    0,
  );

  const logPrefix = join(dir, "lat");
  const t0 = Date.now();
  const load = Bun.spawn(
    fio([
      "--rw=randrw",
      "--rwmixread=70",
      "--bs=4k",
      "--iodepth=4",
      "--rate_iops=300,130",
      "--time_based",
      "--runtime=3600",
      `--write_lat_log=${logPrefix}`,
      "--log_offset=1",
    ]),
    { stdout: "pipe", stderr: "pipe" },
  );
  await Bun.sleep(BEFORE_S * 1000);
  const gcStart = Date.now() - t0;
  const res = await fetch(`${api}/v1/gc?wait=1`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ graceSeconds: 0 }),
  });
  const report = (await res.json()) as GcReport;
  const gcEnd = Date.now() - t0;
  // The space comes back when the stores have compacted (a second after the sweep).
  let diskAfter = diskBefore;
  for (let i = 0; i < 120; i++) {
    diskAfter = (await Promise.all(ids.map((id) => diskBytes(join(dir, id))))).reduce((a, b) => a + b, 0);
    if (diskAfter < diskBefore * 0.6) break;
    await Bun.sleep(500);
  }
  const reclaimed = Date.now() - t0;
  await Bun.sleep(AFTER_S * 1000);
  load.kill("SIGINT");
  await load.exited;
  if (report.phase !== "done") throw new Error(`the pass failed: ${report.error}`);

  const entries = parseFioLog(await readFile(`${logPrefix}_clat.1.log`, "utf8"));
  const phases = [
    { name: "before (no pass)", from: 1000, to: gcStart },
    { name: "gc pass", from: gcStart, to: gcEnd },
    { name: "compaction", from: gcEnd, to: reclaimed },
    { name: "after (no pass)", from: reclaimed, to: reclaimed + AFTER_S * 1000 },
  ];
  const rows = phases.map((ph) => {
    const lats = entries
      .filter(([t]) => t >= ph.from && t < ph.to)
      .map((e) => e[1] / 1e6)
      .sort((a, b) => a - b);
    return [
      ph.name,
      ((ph.to - ph.from) / 1000).toFixed(1),
      lats.length,
      pct(lats, 0.5),
      pct(lats, 0.99),
      lats.at(-1) ?? 0,
    ];
  });
  const deleted = report.stores.reduce((n, s) => n + s.deleted, 0);
  const bytes = report.stores.reduce((n, s) => n + s.bytesDeleted, 0);
  const stored = report.stores.reduce((n, s) => n + s.stored, 0);
  const ms = report.stepMs;
  console.log(
    `\n${LIVE_MIB} MiB live + ${LIVE_MIB} MiB garbage (x2 replicas over 3 stores); foreground fio randrw 70/30, 4 KiB, QD4, 300 + 130 IOPS\n`,
  );
  table(
    ["step", "ms", "rate"],
    [
      [
        "mark",
        ms.mark ?? 0,
        `${((report.referenced * 65536) / MiB / ((ms.mark ?? 1) / 1000)).toFixed(0)} MiB/s of live data (${report.referenced} chunks)`,
      ],
      [
        "condemn (list + mark)",
        ms.condemn ?? 0,
        `${(stored / ((ms.condemn ?? 1) / 1000)).toFixed(0)} stored chunks/s listed`,
      ],
      ["barrier (bump + stamp)", ms.barrier ?? 0, ""],
      ["second mark", ms.remark ?? 0, ""],
      [
        "sweep",
        ms.sweep ?? 0,
        `${(deleted / ((ms.sweep ?? 1) / 1000)).toFixed(0)} chunks/s (${(bytes / MiB).toFixed(0)} MiB)`,
      ],
    ],
  );
  console.log(
    `\non disk: ${(diskBefore / MiB).toFixed(0)} MiB before, ${(diskAfter / MiB).toFixed(0)} MiB after; back ${((reclaimed - gcEnd) / 1000).toFixed(1)} s after the pass ended\n`,
  );
  table(["VM I/O", "seconds", "I/Os", "p50 ms", "p99 ms", "max ms"], rows as (string | number)[][]);
  const base = rows[0]![4] as number;
  console.log(
    `\np99 during the pass / p99 before: ${((rows[1]![4] as number) / base).toFixed(2)} (target <= 1.2)`,
  );
  console.log(`p99 during compaction / p99 before: ${((rows[2]![4] as number) / base).toFixed(2)}`);
} finally {
  for (const p of procs.values()) p.kill("SIGKILL");
  await rm(dir, { recursive: true, force: true });
}
