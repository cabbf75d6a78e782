/**
 * What a background copy at a fixed rate costs the VM on this machine, blockmend's heal side
 * by side with two peers that do only part of its work: the heal goal (a 1.4 GB heal within
 * 30 s while the VM keeps 95 % of its IOPS and p99 within 1.5x) needs about 47 MB/s of
 * copies, and this finds which part of the copy makes that rate too dear.
 *
 * Stores a, b (data) and w (witness) as processes, a gateway with 2 replicas, a filled image,
 * and the VM job of bench/heal.ts running throughout (fio randrw 50/50 4 KiB QD1 500+500
 * IOPS). Phases of `--phase-seconds`, for each rate in `--rates` (MB/s):
 * - `disk`: fio appends 1 MiB blocks with an fdatasync each to a file on the stores' disk at
 *   the rate (what a store's synced group commit writes, with no blockmend code at all);
 * - `put`: this process puts fresh 64 KiB chunks to store b over HTTP at the rate, 4 MiB
 *   batches in two lanes (the heal's write side: b's HTTP, verification and synced append);
 * - `heal`: b wiped and brought back (a full heal of the image), the heal pinned to the rate
 *   through `PUT /v1/heal/limits` (floor = ceiling = rate): the whole heal, reads from a, the
 *   gateway's work and b's writes.
 * Each peer phase follows a quiet phase (`base`; during the heal, `heal paused` at the 64 KiB/s
 * minimum) and is compared with it: the VM's IOPS kept and p99 ratio, p99.9, max, I/Os over
 * 100 ms, the rate achieved, CPU % of the gateway and of stores a and b, and the whole
 * machine's busy and iowait time (% of one core: 200 is both cores).
 *
 *   bun bench/heal-limit.ts [--image-mib 4096] [--rates 16,32,48,64] [--phase-seconds 20]
 */
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashChunk } from "../chunkstore/hash.ts";
import { HttpStore } from "../chunkstore/http-store.ts";
import {
  cpuSeconds,
  fioOverNbd,
  latencyTail,
  machineCpu,
  machineJiffies,
  parseFioLog,
  procs,
  sh,
  startProc,
  vmJobArgs,
} from "./_procs.ts";
import { machine, table } from "./_report.ts";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const IMAGE_MIB = Number(arg("--image-mib", "4096"));
const RATES = arg("--rates", "16,32,48,64").split(",").map(Number);
const PHASE_S = Number(arg("--phase-seconds", "20"));
const CHUNK = 65536;
const BATCH = 64;
/** The smallest heal rate the limits API takes: a heal at this rate is as good as paused. */
const PAUSED = 65536;
const MB = 1e6;

type Heal = {
  stores: {
    id: string;
    running: boolean;
    startedAt: string | null;
    missingBytes: number;
    copiedBytes: number;
  }[];
};
type Cpu = Record<string, { pid: number; s: number | null }> & { machine?: number[] };
interface Phase {
  name: string;
  mbps: number;
  from: number;
  to: number;
  bytes: number;
  cpu: [Cpu, Cpu];
}

const cpuNow = async (): Promise<Cpu> => {
  const out: Cpu = {};
  for (const id of ["gw", "a", "b"]) {
    const pid = procs.get(id)!.pid;
    out[id] = { pid, s: await cpuSeconds(pid) };
  }
  out.machine = await machineJiffies();
  return out;
};

const dir = await mkdtemp(join(tmpdir(), "blockmend-bench-heal-limit-"));
try {
  console.log(`# heal cost at fixed rates: ${machine()}`);
  console.log(
    `${IMAGE_MIB} MiB image; VM randrw 50/50 4 KiB QD1 500+500 IOPS; phases of ${PHASE_S} s at ${RATES.join(", ")} MB/s\n`,
  );
  const urls: Record<string, string> = {};
  const startStore = async (id: string, listen = "127.0.0.1:0") => {
    const args = ["chunkstore", "--dir", join(dir, id), "--listen", listen];
    const out = await startProc(id, id === "w" ? [...args, "--witness"] : args);
    urls[id] = /(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
  };
  for (const id of ["a", "b", "w"]) await startStore(id);
  const gwOut = await startProc("gw", [
    "gateway",
    ...Object.entries(urls).flatMap(([id, u]) => ["--store", `${id}=${u}`]),
    ...["--replicas", "2", "--min-replicas", "1", "--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0"],
  ]);
  const api = /(http:\/\/127\.0\.0\.1:\d+)/.exec(gwOut)![1]!;
  const nbd = /(nbd:\/\/127\.0\.0\.1:\d+)/.exec(gwOut)![1]!;
  const heal = async () => (await (await fetch(`${api}/v1/heal`)).json()) as Heal;
  const healOfB = async () => (await heal()).stores.find((s) => s.id === "b")!;
  const setRate = async (rate: number) => {
    const r = await fetch(`${api}/v1/heal/limits`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        floorBytesPerSecond: rate,
        ceilingBytesPerSecond: rate,
        rateBytesPerSecond: rate,
      }),
    });
    if (!r.ok) throw new Error(`PUT /v1/heal/limits: ${r.status} ${await r.text()}`);
  };

  await fetch(`${api}/v1/images`, {
    method: "POST",
    body: JSON.stringify({ name: "vm", size: IMAGE_MIB * 1024 * 1024 }),
    headers: { "content-type": "application/json" },
  });
  const fio = (extra: string[]) => fioOverNbd(`${nbd}/vm`, IMAGE_MIB, extra);
  await sh(fio(["--rw=write", "--bs=1M", "--iodepth=8", "--end_fsync=1"]));
  await Bun.sleep(30_000);

  const prefix = join(dir, "vm");
  const t0 = Date.now();
  const vm = Bun.spawn(fio(vmJobArgs(prefix, 3600)), { stdout: "pipe", stderr: "pipe" });
  await Bun.sleep(3000);
  const phases: Phase[] = [];
  const run = async (name: string, mbps: number, work: () => Promise<number>) => {
    const c0 = await cpuNow();
    const from = Date.now() - t0;
    const bytes = await work();
    const to = Date.now() - t0;
    phases.push({ name, mbps, from, to, bytes, cpu: [c0, await cpuNow()] });
    console.error(`done: ${name} ${mbps || ""} (${(bytes / MB / ((to - from) / 1000)).toFixed(1)} MB/s)`);
  };
  const quiet = async () => {
    await Bun.sleep(PHASE_S * 1000);
    return 0;
  };
  const diskAppend = (mbps: number) => async () => {
    const file = join(dir, "disk-peer.dat");
    await sh([
      ...["fio", "--name=disk", `--filename=${file}`, "--ioengine=psync", "--rw=write", "--bs=1M"],
      ...["--fdatasync=1", `--rate=${mbps * MB}`, `--size=${Math.ceil((mbps * PHASE_S * 1.2) / 1.048576)}M`],
      ...["--time_based", `--runtime=${PHASE_S}`],
    ]);
    const { size } = await stat(file);
    await rm(file);
    return Math.min(size, mbps * MB * PHASE_S);
  };
  const store = await HttpStore.open(urls.b!);
  const seed = new Uint8Array(CHUNK);
  crypto.getRandomValues(seed);
  let counter = 0;
  const putToB = (mbps: number) => async () => {
    const start = performance.now();
    const end = start + PHASE_S * 1000;
    let sent = 0;
    const lane = async () => {
      while (performance.now() < end) {
        const chunks = Array.from({ length: BATCH }, () => {
          const bytes = seed.slice();
          new DataView(bytes.buffer).setFloat64(0, ++counter);
          return { hash: hashChunk(bytes), bytes };
        });
        await store.putMany(chunks);
        sent += BATCH * CHUNK;
        // Pace both lanes together: wait until the bytes sent are due at the rate.
        const due = start + (sent / (mbps * MB)) * 1000;
        if (due > performance.now()) await Bun.sleep(due - performance.now());
      }
    };
    await Promise.all([lane(), lane()]);
    return sent;
  };
  const healAt = (mbps: number) => async () => {
    await setRate(mbps ? mbps * MB : PAUSED);
    const before = await healOfB();
    await Bun.sleep(PHASE_S * 1000);
    const after = await healOfB();
    console.error(
      `  heal of b: ${JSON.stringify({ ...before, images: undefined })} -> ${JSON.stringify({ ...after, images: undefined })}`,
    );
    // A heal pass that restarted counts from 0 again.
    return after.startedAt === before.startedAt ? after.copiedBytes - before.copiedBytes : after.copiedBytes;
  };

  for (const mbps of RATES) {
    await run("base", 0, quiet);
    await run("disk", mbps, diskAppend(mbps));
    await run("base", 0, quiet);
    await run("put", mbps, putToB(mbps));
  }
  await store.close();

  // b wiped and back: a full heal, paused until its phases.
  await setRate(PAUSED);
  const b = procs.get("b")!;
  b.kill("SIGKILL");
  await b.exited;
  await rm(join(dir, "b"), { recursive: true, force: true });
  await startStore("b", new URL(urls.b!).host);
  for (let i = 0; ; i++) {
    const h = await healOfB();
    if (h.running && h.missingBytes > 0) break;
    if (i > 600) throw new Error("the heal of the wiped store never started");
    await Bun.sleep(100);
  }
  for (const mbps of RATES) {
    await run("heal paused", 0, healAt(0));
    await run("heal", mbps, healAt(mbps));
  }
  vm.kill("SIGINT");
  await vm.exited;

  const entries = parseFioLog(await readFile(`${prefix}_clat.1.log`, "utf8"));
  const tail = (p: Phase) => {
    const inPhase = entries.filter(([t]) => t >= p.from && t < p.to);
    return {
      iops: inPhase.length / ((p.to - p.from) / 1000),
      ...latencyTail(inPhase.map((e) => e[1] / 1e6)),
    };
  };
  const cpu = (p: Phase) =>
    ["gw", "a", "b"].map((id) => {
      const [x, y] = [p.cpu[0][id]!, p.cpu[1][id]!];
      const s = (p.to - p.from) / 1000;
      return x.pid === y.pid && x.s !== null && y.s !== null ? (((y.s - x.s) / s) * 100).toFixed(0) : "";
    });
  const rows: (string | number)[][] = [];
  const verdict = new Map<string, number>();
  let base = tail(phases[0]!);
  for (const p of phases) {
    const t = tail(p);
    if (p.mbps === 0) base = t;
    const kept = t.iops / base.iops;
    const ratio = t.p99 / base.p99;
    if (p.mbps > 0 && kept >= 0.95 && ratio <= 1.5)
      verdict.set(p.name, Math.max(verdict.get(p.name) ?? 0, p.mbps));
    rows.push([
      p.name,
      p.mbps || "",
      (p.bytes / MB / ((p.to - p.from) / 1000)).toFixed(1),
      t.iops.toFixed(0),
      p.mbps ? `${(kept * 100).toFixed(0)} %` : "",
      t.p99,
      p.mbps ? ratio.toFixed(2) : "",
      t.p999,
      t.max,
      t.over100,
      ...cpu(p),
      ...((m) => [m.busy.toFixed(0), m.iowait.toFixed(0)])(machineCpu(p.cpu[0].machine!, p.cpu[1].machine!)),
    ]);
  }
  console.log("\nVM job per phase (ms; kept and p99 ratio against the quiet phase before):\n");
  table(
    [
      "phase",
      "target MB/s",
      "achieved MB/s",
      "VM IOPS",
      "kept",
      "p99",
      "p99 / quiet",
      "p99.9",
      "max",
      "> 100 ms",
      "gateway CPU %",
      "a CPU %",
      "b CPU %",
      "machine busy %",
      "iowait %",
    ],
    rows,
  );
  console.log("\nHighest rate with the VM at >= 95 % of its IOPS and p99 <= 1.5x:");
  for (const name of ["disk", "put", "heal"]) console.log(`  ${name}: ${verdict.get(name) ?? "none"} MB/s`);
} finally {
  for (const p of procs.values()) {
    p.kill("SIGKILL");
    p.kill("SIGCONT");
  }
  await Promise.all([...procs.values()].map((p) => p.exited));
  await rm(dir, { recursive: true, force: true });
}
