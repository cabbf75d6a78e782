/**
 * At-rest latency benchmark: a steady VM-like job (fio over NBD, 4 KiB random read/write
 * 50/50 at QD1, rate-limited to 500 read + 500 write IOPS, per-I/O completion-latency log)
 * against blockmend (`blockmend up`: three file stores, 2 replicas, nothing failing) and
 * against qemu-nbd serving a raw file on the same disk with a writeback cache, rounds
 * interleaved in one run. Both images are filled with random data first.
 *
 * Prints per target and round: p50/p99/p99.9/max, p99.9 / p99, the longest stretch without
 * a completed I/O, how many I/Os took over 50 and 100 ms, and (blockmend) how many of the
 * gateway's event-loop delay samples (every 20 ms, /metrics) were over 20 and 50 ms; then the
 * medians over rounds.
 * The goal: p99.9 at most 3x p99, and no stretch over 50 ms without a completion.
 *
 *   bun bench/at-rest.ts [--seconds 30] [--rounds 3] [--size-mib 1024] [--cpu-prof DIR]
 *
 * `--cpu-prof DIR` writes the gateway's CPU profile (Bun's `--cpu-prof`) into DIR at exit.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fioOverNbd, latencyTail, median, parseFioLog, sh, startUpAndQemuNbd } from "./_procs.ts";
import { machine, table } from "./_report.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg("--seconds", 30);
const ROUNDS = arg("--rounds", 3);
const SIZE_MIB = arg("--size-mib", 1024);
const profIndex = process.argv.indexOf("--cpu-prof");
const PROFILE_DIR = profIndex > 0 ? process.argv[profIndex + 1] : undefined;

/** What one round of the job showed. */
interface Round {
  ios: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  gap: number;
  over50: number;
  over100: number;
  /** blockmend only: event-loop delay samples over 20 and 50 ms during the round. */
  loop20?: number;
  loop50?: number;
}

/** One timed round of the VM job against `uri`, measured from its per-I/O latency log. */
async function round(uri: string, dir: string, tag: string): Promise<Round> {
  const prefix = join(dir, tag);
  await sh(
    fioOverNbd(uri, SIZE_MIB, [
      "--rw=randrw",
      "--rwmixread=50",
      "--bs=4k",
      "--iodepth=1",
      "--rate_iops=500,500",
      "--time_based",
      `--runtime=${SECONDS}`,
      "--norandommap",
      `--write_lat_log=${prefix}`,
      "--log_avg_msec=0",
    ]),
  );
  const entries = parseFioLog(await readFile(`${prefix}_clat.1.log`, "utf8"));
  // Completion times (ms since start) and latencies (ms); the first second is warm-up.
  const done = entries
    .filter((e) => e[0] >= 1000)
    .map((e) => ({ at: e[0], ms: e[1] / 1e6 }))
    .sort((x, y) => x.at - y.at);
  let gap = 0;
  for (let i = 1; i < done.length; i++) gap = Math.max(gap, done[i]!.at - done[i - 1]!.at);
  return { ...latencyTail(done.map((d) => d.ms)), gap };
}

/** The gateway's event-loop delay histogram (cumulative counts by bound in seconds, from /metrics). */
async function loopDelays(api: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${api}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^blockmend_event_loop_delay_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm))
    out.set(m[1]!, Number(m[2]));
  return out;
}

/** Event-loop delay samples over `bound` seconds between two histograms. */
const over = (before: Map<string, number>, after: Map<string, number>, bound: string) =>
  after.get("+Inf")! - after.get(bound)! - (before.get("+Inf")! - before.get(bound)!);

const dir = await mkdtemp(join(tmpdir(), "blockmend-bench-at-rest-"));
const started: Bun.Subprocess[] = [];
try {
  console.log(`# at-rest latency benchmark: ${machine()}`);
  console.log(
    `fio ${(await sh(["fio", "--version"])).trim()}; randrw 50/50 4 KiB QD1 at 500+500 IOPS, ${SECONDS} s per round, ${ROUNDS} rounds, ${SIZE_MIB} MiB images, data under ${dir}\n`,
  );
  const { targets, api } = await startUpAndQemuNbd(
    dir,
    SIZE_MIB,
    "vm",
    started,
    PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`] : [],
  );
  for (const uri of Object.values(targets))
    await sh(fioOverNbd(uri, SIZE_MIB, ["--rw=write", "--bs=1M", "--iodepth=8", "--end_fsync=1"]));
  // Let the fill's commits and compaction settle before the first round.
  await Bun.sleep(5000);

  const results: Record<string, Round[]> = { blockmend: [], "qemu-nbd": [] };
  const rows: (string | number)[][] = [];
  for (let r = 1; r <= ROUNDS; r++)
    for (const [name, uri] of Object.entries(targets)) {
      const before = name === "blockmend" ? await loopDelays(api) : null;
      const x = await round(uri, dir, `${name}-${r}`);
      if (before) {
        const after = await loopDelays(api);
        x.loop20 = over(before, after, "0.02");
        x.loop50 = over(before, after, "0.05");
      }
      results[name]!.push(x);
      rows.push([
        name,
        r,
        x.ios,
        x.p50,
        x.p99,
        x.p999,
        x.max,
        x.p999 / x.p99,
        x.gap,
        x.over50,
        x.over100,
        x.loop20 ?? "",
        x.loop50 ?? "",
      ]);
      console.error(`done: ${name} round ${r}`);
    }
  for (const [name, xs] of Object.entries(results)) {
    const m = (f: (x: Round) => number) => median(xs.map(f));
    rows.push([
      `${name} median`,
      "",
      m((x) => x.ios),
      m((x) => x.p50),
      m((x) => x.p99),
      m((x) => x.p999),
      m((x) => x.max),
      m((x) => x.p999 / x.p99),
      m((x) => x.gap),
      m((x) => x.over50),
      m((x) => x.over100),
      name === "blockmend" ? m((x) => x.loop20 ?? 0) : "",
      name === "blockmend" ? m((x) => x.loop50 ?? 0) : "",
    ]);
  }
  table(
    [
      "target",
      "round",
      "I/Os",
      "p50 ms",
      "p99 ms",
      "p99.9 ms",
      "max ms",
      "p99.9/p99",
      "longest gap ms",
      "> 50 ms",
      "> 100 ms",
      "loop delay > 20 ms",
      "loop delay > 50 ms",
    ],
    rows,
  );
} finally {
  for (const p of started) p.kill("SIGTERM");
  await Promise.all(started.map((p) => p.exited));
  await rm(dir, { recursive: true, force: true });
}
