/**
 * NBD benchmark: fio (ioengine=nbd) against blockmend (`blockmend up`, three file stores,
 * 2 replicas) and against qemu-nbd serving a raw file on the same disk with a writeback
 * cache, interleaved job by job in one run. Prints MB/s, IOPS, p99 and p99.9 completion
 * latency for both and the ratio. The sequential write row also runs the physical limit
 * the performance issue measures writes against: the disk's synced sequential append rate
 * (fio, two files appended at once with O_DSYNC 1 MiB writes, one per replica, on the
 * stores' disk, growing as segments do) divided by the replica count.
 *
 *   bun bench/nbd.ts [--seconds 10] [--size-mib 1024] [--rounds 1] [--only "seq write"] [--cpu-prof DIR]
 *                    [--chunk-size 65536]
 *
 * After the fio jobs, `qemu-img convert` of a fresh random file into each export ("convert
 * in", timed to the end of its flush) and of each export back out to a file ("convert out").
 *
 * `--rounds N` repeats every job N times (peers interleaved in each) and prints the
 * medians; `--only` keeps the jobs whose name contains the text; `--cpu-prof DIR` writes
 * the gateway's CPU profile (Bun's `--cpu-prof`) into DIR when it exits; `--chunk-size`
 * creates blockmend's image with that chunk size instead of the gateway's default.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { median, startUpAndQemuNbd } from "./_procs.ts";
import { machine, table } from "./_report.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg("--seconds", 10);
const SIZE_MIB = arg("--size-mib", 1024);
const ROUNDS = arg("--rounds", 1);
const CHUNK_SIZE = arg("--chunk-size", 0) || undefined;
const text = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const ONLY = text("--only");
const PROFILE_DIR = text("--cpu-prof");
/** Replicas `blockmend up` writes (its default). */
const REPLICAS = 2;

interface Job {
  readonly name: string;
  readonly rw: string;
  readonly bs: string;
  readonly iodepth: number;
  /** Before this job, wait until blockmend has folded every patch stack (stack-folder.ts). */
  readonly afterFold?: boolean;
}

const JOBS: Job[] = [
  { name: "seq write 1M QD8", rw: "write", bs: "1M", iodepth: 8 },
  { name: "seq read 1M QD8", rw: "read", bs: "1M", iodepth: 8 },
  { name: "rand read 4K QD1", rw: "randread", bs: "4k", iodepth: 1 },
  { name: "rand read 4K QD32", rw: "randread", bs: "4k", iodepth: 32 },
  { name: "rand write 4K QD1", rw: "randwrite", bs: "4k", iodepth: 1 },
  { name: "rand write 4K QD32", rw: "randwrite", bs: "4k", iodepth: 32 },
  // After the random writes: blockmend's blocks now carry patch stacks (small writes kept as
  // patch chunks), which a read lays over the block: what that costs a read.
  { name: "rand read 4K QD32 after rand writes", rw: "randread", bs: "4k", iodepth: 32 },
  // Once the idle image has folded its stacks back into whole chunks (the row above may run
  // while the fold does).
  { name: "rand read 4K QD32 after the fold", rw: "randread", bs: "4k", iodepth: 32, afterFold: true },
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

/**
 * The disk's synced sequential append rate with one appender per replica (each O_DSYNC
 * 1 MiB writes to its own file, as each store appends to its own segment), divided by the
 * replica count: the most a client can write through `REPLICAS` synced copies on this disk.
 */
async function appendLimit(dir: string): Promise<Result> {
  const out = await sh([
    "fio",
    "--name=append",
    "--ioengine=psync",
    `--directory=${dir}`,
    "--rw=write",
    "--bs=1M",
    "--sync=dsync",
    `--numjobs=${REPLICAS}`,
    "--group_reporting",
    // Appends, as a store's segments grow: files that never wrap (16 GiB is more than a run
    // writes) and are not preallocated. Rewriting a file already in the page cache runs
    // about 4x faster on this VM (fresh page cache pages cost the guest a host fault each).
    "--size=16G",
    "--fallocate=none",
    "--time_based",
    `--runtime=${SECONDS}`,
    "--ramp_time=1",
    "--output-format=json",
    "--percentile_list=99:99.9",
  ]);
  await sh(["sh", "-c", `rm -f ${dir}/append.*`]);
  const side = JSON.parse(out.slice(out.indexOf("{"))).jobs[0].write;
  const pct = side.clat_ns.percentile as Record<string, number>;
  return {
    mbps: (side.bw_bytes as number) / 1e6 / REPLICAS,
    iops: (side.iops as number) / REPLICAS,
    p99ms: (pct["99.000000"] ?? 0) / 1e6,
    p999ms: (pct["99.900000"] ?? 0) / 1e6,
  };
}

const medianResult = (rs: Result[]): Result => ({
  mbps: median(rs.map((r) => r.mbps)),
  iops: median(rs.map((r) => r.iops)),
  p99ms: median(rs.map((r) => r.p99ms)),
  p999ms: median(rs.map((r) => r.p999ms)),
});

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

/** Blocks folded so far and blocks still to fold, from the gateway's metrics. */
async function foldProgress(api: string): Promise<{ pending: number; folded: number }> {
  const text = await (await fetch(`${api}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1] ?? Number.NaN);
  return {
    pending: value("blockmend_patch_stacks_pending_blocks"),
    folded: value("blockmend_patch_stacks_folded_blocks_total"),
  };
}

/** Waits until the gateway has no patch stack left to fold (the count stays still at 0 for 2 s). */
async function waitForFold(api: string): Promise<void> {
  const started = performance.now();
  let last = await foldProgress(api);
  for (let still = 0; still < 2; ) {
    await Bun.sleep(1000);
    const now = await foldProgress(api);
    still = now.pending === 0 && now.folded === last.folded ? still + 1 : 0;
    last = now;
    if (performance.now() - started > 900_000)
      throw new Error(`the fold did not finish: ${JSON.stringify(now)}`);
  }
  console.log(
    `fold: ${last.folded} blocks folded so far; the last ones within ${((performance.now() - started) / 1000).toFixed(0)} s of the wait's start`,
  );
}

const dir = await mkdtemp(join(tmpdir(), "blockmend-bench-nbd-"));
const procs: Bun.Subprocess[] = [];
try {
  console.log(`# NBD benchmark: ${machine()}`);
  console.log(
    `fio ${(await sh(["fio", "--version"])).trim()}, ${SECONDS} s per job, ${SIZE_MIB} MiB images, ` +
      `chunk size ${CHUNK_SIZE ?? "default"}, data under ${dir}\n`,
  );

  const { targets, api } = await startUpAndQemuNbd(
    dir,
    SIZE_MIB,
    "bench",
    procs,
    PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`] : [],
    CHUNK_SIZE,
  );
  // Fill both images with random data first so reads hit real data, not holes.
  for (const uri of Object.values(targets))
    await fio(uri, { name: "fill", rw: "write", bs: "1M", iodepth: 8 }, true);

  const rows: (string | number)[][] = [];
  const limits: Result[] = [];
  for (const job of JOBS.filter((j) => ONLY === undefined || j.name.includes(ONLY))) {
    const runs: Record<string, Result[]> = { blockmend: [], "qemu-nbd": [] };
    if (job.afterFold) await waitForFold(api);
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which side goes first, so neither always runs on a warmer cache.
      const order = Object.entries(targets);
      if (round % 2) order.reverse();
      for (const [name, uri] of order) runs[name]!.push(await fio(uri, job));
      if (job.name.startsWith("seq write")) limits.push(await appendLimit(dir));
    }
    const b = medianResult(runs.blockmend!);
    const q2 = medianResult(runs["qemu-nbd"]!);
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
    if (ROUNDS > 1) {
      const per = (name: string) => runs[name]!.map((r) => r.mbps.toFixed(0)).join(" / ");
      console.log(`${job.name}: blockmend ${per("blockmend")} MB/s, qemu-nbd ${per("qemu-nbd")} MB/s`);
    }
    console.error(`done: ${job.name}`);
  }
  // qemu-img convert into each export and back out (the "convert in" goal), a fresh
  // random source every round so blockmend cannot deduplicate against an earlier one.
  for (const dirn of ["in", "out"] as const) {
    const name = `qemu-img convert ${dirn}`;
    if (ONLY !== undefined && !name.includes(ONLY)) continue;
    const runs: Record<string, number[]> = { blockmend: [], "qemu-nbd": [] };
    const src = join(dir, "convert-src.raw");
    for (let round = 0; round < ROUNDS; round++) {
      await sh(["dd", "if=/dev/urandom", `of=${src}`, "bs=1M", `count=${SIZE_MIB}`, "status=none"]);
      const order = Object.entries(targets);
      if (round % 2) order.reverse();
      for (const [side, uri] of order) {
        const started = performance.now();
        if (dirn === "in") await sh(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, uri]);
        else await sh(["qemu-img", "convert", "-f", "raw", "-O", "raw", uri, join(dir, "convert-out.raw")]);
        runs[side]!.push((SIZE_MIB * 1048576) / ((performance.now() - started) / 1000) / 1e6);
        await rm(join(dir, "convert-out.raw"), { force: true });
      }
    }
    const b = median(runs.blockmend!);
    const q2 = median(runs["qemu-nbd"]!);
    rows.push([name, b, q2, "", "", "", "", "", "", b / q2]);
    if (ROUNDS > 1) {
      const per = (side: string) => runs[side]!.map((r) => r.toFixed(0)).join(" / ");
      console.log(`${name}: blockmend ${per("blockmend")} MB/s, qemu-nbd ${per("qemu-nbd")} MB/s`);
    }
    console.error(`done: ${name}`);
  }
  if (limits.length > 0) {
    const limit = median(limits.map((l) => l.mbps));
    const seq = rows.find((r) => String(r[0]).startsWith("seq write"))!;
    console.log(
      `\nseq write vs the physical limit for ${REPLICAS} replicas (synced 1 MiB appends, ${REPLICAS} files at once, / ${REPLICAS}): ` +
        `limit ${limit.toFixed(0)} MB/s (rounds ${limits.map((l) => l.mbps.toFixed(0)).join(" / ")}), ` +
        `blockmend ${(seq[1] as number).toFixed(0)} MB/s = ${((seq[1] as number) / limit).toFixed(2)}x the limit\n`,
    );
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
