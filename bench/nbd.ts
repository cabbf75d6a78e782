/**
 * NBD benchmark: fio (ioengine=nbd) against blockmend (`blockmend up`, three file stores,
 * 2 replicas) and against qemu-nbd serving a raw file on the same disk with a writeback
 * cache, interleaved job by job in one run. Prints MB/s, IOPS, p99 and p99.9 completion
 * latency for both and the ratio.
 *
 *   bun bench/nbd.ts [--seconds 10] [--size-mib 1024]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startUpAndQemuNbd } from "./_procs.ts";
import { machine, table } from "./_report.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg("--seconds", 10);
const SIZE_MIB = arg("--size-mib", 1024);

interface Job {
  readonly name: string;
  readonly rw: string;
  readonly bs: string;
  readonly iodepth: number;
}

const JOBS: Job[] = [
  { name: "seq write 1M QD8", rw: "write", bs: "1M", iodepth: 8 },
  { name: "seq read 1M QD8", rw: "read", bs: "1M", iodepth: 8 },
  { name: "rand read 4K QD1", rw: "randread", bs: "4k", iodepth: 1 },
  { name: "rand read 4K QD32", rw: "randread", bs: "4k", iodepth: 32 },
  { name: "rand write 4K QD1", rw: "randwrite", bs: "4k", iodepth: 1 },
  { name: "rand write 4K QD32", rw: "randwrite", bs: "4k", iodepth: 32 },
];

interface Result {
  mbps: number;
  iops: number;
  p99ms: number;
  p999ms: number;
}

async function sh(cmd: string[], quiet = true): Promise<string> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: quiet ? "pipe" : "inherit" });
  const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed (${code}): ${out.slice(0, 2000)}`);
  return out;
}

/** Runs one fio job against an NBD URI and extracts the numbers. */
async function fio(uri: string, job: Job, fill = false): Promise<Result> {
  const out = await sh([
    "fio",
    "--name=bench",
    "--ioengine=nbd",
    `--uri=${uri}`,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--iodepth=${job.iodepth}`,
    `--size=${SIZE_MIB}M`,
    "--output-format=json",
    "--percentile_list=99:99.9",
    ...(fill ? [] : ["--time_based", `--runtime=${SECONDS}`, "--ramp_time=1"]),
    // Fresh random data for every write (blockmend would otherwise deduplicate fio's reused buffer).
    ...(job.rw.includes("write") ? ["--end_fsync=1", "--refill_buffers=1"] : []),
    "--randrepeat=0",
    "--norandommap",
  ]);
  const j = JSON.parse(out.slice(out.indexOf("{")));
  const side = job.rw.includes("write") ? j.jobs[0].write : j.jobs[0].read;
  const pct = side.clat_ns.percentile as Record<string, number>;
  return {
    mbps: (side.bw_bytes as number) / 1e6,
    iops: side.iops as number,
    p99ms: (pct["99.000000"] ?? 0) / 1e6,
    p999ms: (pct["99.900000"] ?? 0) / 1e6,
  };
}

const dir = await mkdtemp(join(tmpdir(), "blockmend-bench-nbd-"));
const procs: Bun.Subprocess[] = [];
try {
  console.log(`# NBD benchmark: ${machine()}`);
  console.log(
    `fio ${(await sh(["fio", "--version"])).trim()}, ${SECONDS} s per job, ${SIZE_MIB} MiB images, data under ${dir}\n`,
  );

  const { targets } = await startUpAndQemuNbd(dir, SIZE_MIB, "bench", procs);
  // Fill both images with random data first so reads hit real data, not holes.
  for (const uri of Object.values(targets))
    await fio(uri, { name: "fill", rw: "write", bs: "1M", iodepth: 8 }, true);

  const rows: (string | number)[][] = [];
  for (const job of JOBS) {
    const r: Record<string, Result> = {};
    for (const [name, uri] of Object.entries(targets)) r[name] = await fio(uri, job);
    const b = r.blockmend!;
    const q2 = r["qemu-nbd"]!;
    rows.push([
      job.name,
      b.mbps,
      q2.mbps,
      b.iops,
      q2.iops,
      b.p99ms,
      q2.p99ms,
      b.p999ms,
      q2.p999ms,
      b.iops / q2.iops,
    ]);
    console.error(`done: ${job.name}`);
  }
  table(
    [
      "job",
      "blockmend MB/s",
      "qemu-nbd MB/s",
      "blockmend IOPS",
      "qemu-nbd IOPS",
      "bm p99 ms",
      "qn p99 ms",
      "bm p99.9 ms",
      "qn p99.9 ms",
      "ratio (bm/qn)",
    ],
    rows,
  );
} finally {
  for (const p of procs) p.kill("SIGTERM");
  await Promise.all(procs.map((p) => p.exited));
  await rm(dir, { recursive: true, force: true });
}
