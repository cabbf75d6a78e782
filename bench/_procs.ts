/** Process helpers shared by the benchmarks that run real blockmend processes and tools. */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { GATEWAY_PROCESS_ENV } from "../runtime/process-env.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const CLI = join(ROOT, "cli/main.ts");

/** Started blockmend processes by name (a benchmark kills them all at the end). */
export const procs = new Map<string, Bun.Subprocess>();

/** Starts `blockmend <args>` as `npx blockmend` runs it; resolves with its output once it printed a URL. */
export async function startProc(name: string, args: string[]): Promise<string> {
  const p = Bun.spawn([process.execPath, CLI, ...args], {
    stdout: "pipe",
    stderr: "inherit",
    env: { ...process.env, ...GATEWAY_PROCESS_ENV },
  });
  procs.set(name, p);
  const reader = p.stdout.getReader();
  let out = "";
  while (!/http:\/\/127\.0\.0\.1:\d+/.test(out)) {
    const r = await reader.read();
    if (r.done) throw new Error(`${name} exited: ${out}`);
    out += new TextDecoder().decode(r.value);
  }
  reader.releaseLock();
  return out;
}

/** Runs a command; resolves with its stdout, throws with its stderr on failure. */
export async function sh(cmd: string[]): Promise<string> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed: ${err.slice(0, 2000)}`);
  return out;
}

/** The q-quantile of sorted numbers (0 for none). */
export const pct = (xs: number[], q: number) =>
  xs.length ? xs[Math.min(xs.length - 1, Math.floor(xs.length * q))]! : 0;

/** The median of numbers (the lower middle for an even count; NaN for none). */
export const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : Number.NaN;
};

/** The latency tail of completions (ms): count, p50, p99, p99.9, max, and how many took over 50 and 100 ms. */
export function latencyTail(latenciesMs: number[]) {
  const lat = [...latenciesMs].sort((x, y) => x - y);
  return {
    ios: lat.length,
    p50: pct(lat, 0.5),
    p99: pct(lat, 0.99),
    p999: pct(lat, 0.999),
    max: lat.at(-1) ?? 0,
    over50: lat.filter((x) => x > 50).length,
    over100: lat.filter((x) => x > 100).length,
  };
}

/** fio's latency log: [ms since start, latency ns, direction (0 read, 1 write), size, offset]. */
export function parseFioLog(raw: string): [number, number, number, number, number][] {
  return raw
    .trim()
    .split("\n")
    .map((l) => l.split(",").map((x) => Number(x.trim())) as [number, number, number, number, number]);
}

/** A fio command line against NBD export `uri` of `sizeMiB` MiB, fresh random data each run; `extra` is the job. */
export function fioOverNbd(uri: string, sizeMiB: number, extra: string[]): string[] {
  return [
    "fio",
    "--name=vm",
    "--ioengine=nbd",
    `--uri=${uri}`,
    `--size=${sizeMiB}M`,
    "--refill_buffers=1",
    "--randrepeat=0",
    ...extra,
  ];
}

/**
 * The VM job of the heal benchmarks: fio randrw 50/50, 4 KiB, QD1, 500 read + 500 write
 * IOPS for `runtimeS`, logging every I/O's latency to `<logPrefix>_clat.1.log`.
 */
export function vmJobArgs(logPrefix: string, runtimeS: number): string[] {
  return [
    ...["--rw=randrw", "--rwmixread=50", "--bs=4k", "--iodepth=1", "--rate_iops=500,500"],
    ...["--norandommap", "--time_based", `--runtime=${runtimeS}`],
    ...[`--write_lat_log=${logPrefix}`, "--log_avg_msec=0", "--log_offset=1"],
  ];
}

/** Resolves once something listens on 127.0.0.1:`port` (throws after ~10 s). */
export async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      s.end();
      return;
    } catch {
      await Bun.sleep(50);
    }
  }
  throw new Error(`port ${port} never opened`);
}

/** The two NBD servers of a side-by-side benchmark, as {@link startUpAndQemuNbd} started them. */
export interface SideBySide {
  /** NBD URIs of export `name` by target: "blockmend" and "qemu-nbd". */
  readonly targets: Record<string, string>;
  /** The gateway's HTTP API. */
  readonly api: string;
}

/**
 * Starts `blockmend up` (data under `dir/bm`, run as `npx blockmend` runs it, with the
 * process settings) with an image `name` of `sizeMiB`, and the peer: qemu-nbd serving a
 * raw file of the same size in `dir` with a writeback cache. `bunArgs` go to the gateway's
 * Bun (e.g. `--cpu-prof`); `chunkSize` is the image's (the gateway's default if omitted).
 * Every process started goes into `started` at once, so the caller stops them in its
 * `finally` even when this throws half way.
 */
export async function startUpAndQemuNbd(
  dir: string,
  sizeMiB: number,
  name: string,
  started: Bun.Subprocess[],
  bunArgs: string[] = [],
  chunkSize?: number,
): Promise<SideBySide> {
  const bmNbd = 11400 + Math.floor(Math.random() * 500);
  const qPort = bmNbd + 1;
  const httpPort = bmNbd + 2;
  const bm = Bun.spawn(
    [
      process.execPath,
      ...bunArgs,
      CLI,
      "up",
      "--data",
      join(dir, "bm"),
      "--nbd",
      `127.0.0.1:${bmNbd}`,
      "--http",
      `127.0.0.1:${httpPort}`,
    ],
    { stdout: "ignore", stderr: "inherit", env: { ...process.env, ...GATEWAY_PROCESS_ENV } },
  );
  started.push(bm);
  await waitForPort(httpPort);
  const api = `http://127.0.0.1:${httpPort}`;
  const created = await fetch(`${api}/v1/images`, {
    method: "POST",
    body: JSON.stringify({ name, size: sizeMiB * 1024 * 1024, ...(chunkSize ? { chunkSize } : {}) }),
    headers: { "content-type": "application/json" },
  });
  if (created.status !== 201) throw new Error(`create failed: ${await created.text()}`);
  const raw = join(dir, "qemu.raw");
  await sh(["truncate", "-s", `${sizeMiB}M`, raw]);
  const q = Bun.spawn(
    [
      "qemu-nbd",
      "-f",
      "raw",
      "-x",
      name,
      "-p",
      String(qPort),
      "-b",
      "127.0.0.1",
      "--shared=16",
      "--cache=writeback",
      "--persistent",
      raw,
    ],
    { stdout: "ignore", stderr: "inherit" },
  );
  started.push(q);
  await waitForPort(qPort);
  return {
    targets: {
      blockmend: `nbd://127.0.0.1:${bmNbd}/${name}`,
      "qemu-nbd": `nbd://127.0.0.1:${qPort}/${name}`,
    },
    api,
  };
}

/** CPU seconds (user + system) a process has used, from /proc; null if it is gone. */
export async function cpuSeconds(pid: number): Promise<number | null> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => null);
  if (!stat) return null;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

/** The machine's CPU jiffies from /proc/stat: user nice system idle iowait irq softirq steal. */
export async function machineJiffies(): Promise<number[]> {
  const line = (await readFile("/proc/stat", "utf8")).split("\n")[0]!;
  return line.trim().split(/\s+/).slice(1, 9).map(Number);
}

/** The machine's busy and iowait share of all cores between two samples, in % of one core. */
export function machineCpu(from: number[], to: number[]): { busy: number; iowait: number } {
  const d = to.map((x, i) => x - from[i]!);
  const total = d.reduce((a, x) => a + x, 0) || 1;
  const cores = navigator.hardwareConcurrency;
  return { busy: ((total - d[3]! - d[4]!) / total) * 100 * cores, iowait: (d[4]! / total) * 100 * cores };
}
