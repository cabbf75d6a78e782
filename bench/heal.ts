/**
 * Heal benchmark on the performance issue's workload (modelled on the GlusterFS and Ceph
 * heal tests): chunk store processes a and b (data) and w (witness), a gateway with 2
 * replicas, min 1, and a 4 GiB image filled with random data. A VM job runs through each
 * round: fio randrw 50/50, 4 KiB, QD1, 500 read + 500 write IOPS, with a per-I/O latency
 * log. Each round takes store b away for 45 s while a second fio job writes 64 KiB blocks at
 * 10 MB/s, brings b back and times the heal under the VM's load. Three rounds, one per way
 * of going away: SIGKILL then restart (`kill`), SIGSTOP then SIGKILL and restart
 * (`stop-restart`: a hung host rebooted), SIGSTOP then SIGCONT (`stop-cont`: a hung host
 * that wakes up).
 *
 * Prints per round and phase (before, away, heal, after): IOPS and the share of the
 * before-phase IOPS kept, p50/p99/p99.9/max, the longest stretch without a completed I/O,
 * the I/Os over 100 ms, and the CPU % of the gateway and of stores a and b (/proc); the heal's duration from b's return to in sync; bytes copied over
 * bytes changed (distinct blocks written while b was away, times the chunk size: an upper
 * bound since small writes are patch chunks of about their own size); the status ETA's error
 * against the time the heal really took, once 10 % was copied. Then the idle heal rate (no VM
 * load) against the store's raw put rate over HTTP. Writes docs/heal-latency.svg (the first
 * round's latency over time, events marked).
 *
 * The goals: the VM keeps at least 95 % of its IOPS, p99 at most 1.5x its baseline,
 * the heal finishes within 30 s of the store's return, none over 100 ms during the heal; idle
 * heal at least 0.8x the store's raw put rate; ETA within 20 % once 10 % is copied.
 *
 * The idle heal runs `--idle-rounds` times: b is killed, `--idle-mib` of 1 MiB writes land
 * on a alone, b restarts; it reports the time from the restart to in sync, the copy phase
 * alone (first copied byte to in sync), the CPU % of the gateway, a, b and the machine in
 * that phase, and, interleaved, a fresh store's raw put rate over HTTP two ways: in the
 * heal's shape (64-chunk batches, 4 MiB at 64 KiB, as many in flight as the heal's concurrency) and in bulk (8
 * requests of 64 MiB in flight). `--rounds none` runs the idle heal alone.
 *
 *   bun bench/heal.ts [--image-mib 4096] [--away-seconds 45] [--before-seconds 15]
 *                     [--writer-mbps 10] [--rounds kill,stop-restart,stop-cont]
 *                     [--idle-mib 1024] [--idle-rounds 3] [--chunk-size 65536]
 *
 * `--chunk-size` creates the image with that chunk size; the raw puts use chunks of it too.
 * With `HEAL_ETA_LOG=1` in the environment every ETA sample the error is taken over is
 * printed beside what happened (time left, copied bytes, the copy rate and the limit).
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
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
  median,
  parseFioLog,
  procs,
  sh,
  startProc,
  vmJobArgs,
} from "./_procs.ts";
import { machine, table } from "./_report.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const IMAGE_MIB = arg("--image-mib", 4096);
const AWAY_S = arg("--away-seconds", 45);
const BEFORE_S = arg("--before-seconds", 15);
const WRITER_MBPS = arg("--writer-mbps", 10);
const AFTER_S = 10;
/** Quiet time after the fill and between rounds. */
const SETTLE_S = 30;
/** A heal that has not finished this long after the store's return is reported as such. */
const HEAL_LIMIT_S = 600;
const roundsIndex = process.argv.indexOf("--rounds");
const ROUNDS = (roundsIndex > 0 ? process.argv[roundsIndex + 1]! : "kill,stop-restart,stop-cont")
  .split(",")
  .filter((r) => r !== "none");
const IDLE_MIB = arg("--idle-mib", 1024);
const IDLE_ROUNDS = arg("--idle-rounds", 3);
/** The image's chunk size (`--chunk-size`; the gateway's default is 64 KiB). */
const CHUNK = arg("--chunk-size", 65536);
/** The copy engine's batch (gateway/heal/copy-engine.ts): 64 chunks, 4 MiB. */
const COPY_BATCH_CHUNKS = 64;
const ROOT = new URL("..", import.meta.url).pathname;

type Heal = {
  healing: boolean;
  limits: { rateBytesPerSecond: number };
  stores: {
    id: string;
    state: string;
    running: boolean;
    missingBytes: number;
    copiedBytes: number;
    etaSeconds: number | null;
    rateBytesPerSecond: number;
    startedAt: string | null;
  }[];
};

/** One phase of a round, measured from the VM job's latency log. */
interface Phase {
  name: string;
  seconds: number;
  ios: number;
  iops: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  gap: number;
  over100: number;
}

function phase(
  entries: [number, number, number, number, number][],
  name: string,
  from: number,
  to: number,
): Phase {
  const inPhase = entries.filter(([t]) => t >= from && t < to);
  const times = [from, ...inPhase.map((e) => e[0]).sort((a, b) => a - b), to];
  let gap = 0;
  for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!);
  const seconds = (to - from) / 1000;
  return {
    name,
    seconds,
    iops: inPhase.length / seconds,
    gap,
    ...latencyTail(inPhase.map((e) => e[1] / 1e6)),
  };
}

/** CPU seconds of the gateway and the two data stores now (by pid: b's changes when it restarts). */
async function cpuNow(): Promise<Record<string, { pid: number; s: number | null }>> {
  const out: Record<string, { pid: number; s: number | null }> = {};
  for (const id of ["gw", "a", "b"]) {
    const pid = procs.get(id)!.pid;
    out[id] = { pid, s: await cpuSeconds(pid) };
  }
  return out;
}

/** CPU % of each process between two samples (blank where the process changed or was gone). */
function cpuPercent(
  from: Awaited<ReturnType<typeof cpuNow>>,
  to: Awaited<ReturnType<typeof cpuNow>>,
  seconds: number,
) {
  return ["gw", "a", "b"].map((id) => {
    const x = from[id]!;
    const y = to[id]!;
    return x.pid === y.pid && x.s !== null && y.s !== null ? (((y.s - x.s) / seconds) * 100).toFixed(0) : "";
  });
}

const dir = await mkdtemp(join(tmpdir(), "blockmend-bench-heal-"));
try {
  console.log(`# heal benchmark: ${machine()}`);
  console.log(
    `fio ${(await sh(["fio", "--version"])).trim()}; ${IMAGE_MIB} MiB image of ${CHUNK / 1024} KiB chunks; VM randrw 50/50 4 KiB QD1 500+500 IOPS; b away ${AWAY_S} s with 64 KiB writes at ${WRITER_MBPS} MB/s; rounds ${ROUNDS.join(", ")}\n`,
  );
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
  const inSync = (h: Heal) => !h.healing && h.stores.every((s) => s.state === "in-sync");
  const waitHealed = async () => {
    for (;;) {
      const h = await get<Heal>("/v1/heal");
      if (inSync(h)) return h;
      await Bun.sleep(100);
    }
  };
  const restart = async (id: string) => {
    const port = new URL(urls[id]!).port;
    await startProc(id, ["chunkstore", "--dir", join(dir, id), "--listen", `127.0.0.1:${port}`]);
  };
  const kill = async (id: string) => {
    const p = procs.get(id)!;
    p.kill("SIGKILL");
    p.kill("SIGCONT");
    await p.exited;
  };

  await fetch(`${api}/v1/images`, {
    method: "POST",
    body: JSON.stringify({ name: "vm", size: IMAGE_MIB * 1024 * 1024, chunkSize: CHUNK }),
    headers: { "content-type": "application/json" },
  });
  const fio = (extra: string[]) => fioOverNbd(`${nbd}/vm`, IMAGE_MIB, extra);
  const fillStart = performance.now();
  await sh(fio(["--rw=write", "--bs=1M", "--iodepth=8", "--end_fsync=1"]));
  await waitHealed();
  console.log(`filled ${IMAGE_MIB} MiB in ${((performance.now() - fillStart) / 1000).toFixed(0)} s`);
  // The fill's last commits and the stores' compaction settle first, or the first round's
  // "before" phase (its baseline) measures them.
  await Bun.sleep(SETTLE_S * 1000);

  const summary: (string | number)[][] = [];
  const detail: (string | number)[][] = [];
  let plotted = false;
  for (const kind of ROUNDS) {
    const prefix = join(dir, `vm-${kind}`);
    const t0 = Date.now();
    // Long enough for any heal; stopped once the after phase is over.
    const vm = Bun.spawn(fio(vmJobArgs(prefix, BEFORE_S + AWAY_S + HEAL_LIMIT_S + AFTER_S + 30)), {
      stdout: "pipe",
      stderr: "pipe",
    });
    await Bun.sleep(1000);
    const cpuStart = await cpuNow();
    await Bun.sleep(BEFORE_S * 1000 - 1000);
    const cpuDown = await cpuNow();
    // The last heal of an earlier round is shown until this round's starts: not counted.
    const earlier = (await get<Heal>("/v1/heal")).stores.find((s) => s.id === "b")!.startedAt;
    const down = Date.now() - t0;
    if (kind === "kill") await kill("b");
    else procs.get("b")!.kill("SIGSTOP");
    const writerPrefix = join(dir, `writer-${kind}`);
    await sh([
      "fio",
      "--name=writer",
      "--ioengine=nbd",
      `--uri=${nbd}/vm`,
      `--size=${IMAGE_MIB}M`,
      "--refill_buffers=1",
      "--randrepeat=0",
      "--rw=randwrite",
      "--bs=64k",
      "--iodepth=4",
      `--rate=${WRITER_MBPS}m`,
      "--time_based",
      `--runtime=${AWAY_S}`,
      "--end_fsync=1",
      `--write_lat_log=${writerPrefix}`,
      "--log_avg_msec=0",
      "--log_offset=1",
    ]);
    const writerEnd = Date.now() - t0;
    // Whatever the writer's flush took, b comes back AWAY_S after it went.
    await Bun.sleep(Math.max(0, down + AWAY_S * 1000 - writerEnd));
    if (kind === "kill") await restart("b");
    else if (kind === "stop-restart") {
      await kill("b");
      await restart("b");
    } else procs.get("b")!.kill("SIGCONT");
    const up = Date.now() - t0;
    const cpuUp = await cpuNow();

    // Follow the heal: copied bytes per pass (a pass restarts its count), ETA samples.
    const passes = new Map<string, number>();
    const etas: { at: number; eta: number; copied: number; missing: number; rate: number; limit: number }[] =
      [];
    const rates: number[] = [];
    let healEnd = -1;
    await Bun.sleep(200);
    while (Date.now() - t0 - up < HEAL_LIMIT_S * 1000) {
      const h = await get<Heal>("/v1/heal");
      const now = Date.now() - t0;
      const b = h.stores.find((s) => s.id === "b")!;
      if (b.startedAt && b.startedAt !== earlier)
        passes.set(b.startedAt, Math.max(passes.get(b.startedAt) ?? 0, b.copiedBytes));
      if (b.running && b.missingBytes > 0 && b.etaSeconds !== null) {
        if (b.copiedBytes >= b.missingBytes * 0.1 && b.copiedBytes < b.missingBytes)
          etas.push({
            at: now,
            eta: b.etaSeconds,
            copied: b.copiedBytes,
            missing: b.missingBytes,
            rate: b.rateBytesPerSecond,
            limit: h.limits.rateBytesPerSecond,
          });
        rates.push(h.limits.rateBytesPerSecond);
      }
      if (inSync(h)) {
        healEnd = now;
        break;
      }
      await Bun.sleep(500);
    }
    const healed = healEnd >= 0;
    if (!healed) healEnd = Date.now() - t0;
    const cpuHealed = await cpuNow();
    await Bun.sleep(AFTER_S * 1000);
    const cpuEnd = await cpuNow();
    vm.kill("SIGINT");
    await vm.exited;

    const entries = parseFioLog(await readFile(`${prefix}_clat.1.log`, "utf8"));
    const written = parseFioLog(await readFile(`${writerPrefix}_clat.1.log`, "utf8"));
    const changed = new Set<number>();
    for (const [t, , dirn, , off] of entries)
      if (dirn === 1 && t >= down && t <= up) changed.add(Math.floor(off / CHUNK));
    // The writer's log times count from its own start, a moment after `down`.
    for (const [, , dirn, , off] of written) if (dirn === 1) changed.add(Math.floor(off / CHUNK));
    const changedBytes = changed.size * CHUNK;
    const copied = [...passes.values()].reduce((a, x) => a + x, 0);
    const phases = [
      phase(entries, "before", 1000, down),
      phase(entries, "b away", down, up),
      phase(entries, "heal", up, healEnd),
      phase(entries, "after", healEnd, healEnd + AFTER_S * 1000),
    ];
    const base = phases[0]!;
    const cpu = [
      [cpuStart, cpuDown],
      [cpuDown, cpuUp],
      [cpuUp, cpuHealed],
      [cpuHealed, cpuEnd],
    ] as const;
    phases.forEach((ph, k) => {
      detail.push([
        kind,
        ph.name,
        ph.seconds.toFixed(1),
        ph.ios,
        ph.iops.toFixed(0),
        `${((ph.iops / base.iops) * 100).toFixed(0)} %`,
        ph.p50,
        ph.p99,
        ph.p999,
        ph.max,
        ph.gap,
        ph.over100,
        ...cpuPercent(cpu[k]![0], cpu[k]![1], ph.seconds),
      ]);
    });
    const heal = phases[2]!;
    const healSeconds = (healEnd - up) / 1000;
    const errors = etas.map((e) => {
      const actual = (healEnd - e.at) / 1000;
      return Math.abs(e.eta - actual) / Math.max(actual, 1);
    });
    if (process.env.HEAL_ETA_LOG)
      for (const e of etas)
        console.log(
          `eta sample ${kind} t=${((e.at - up) / 1000).toFixed(1)} s: eta ${e.eta} s, actual ${((healEnd - e.at) / 1000).toFixed(1)} s, copied ${(e.copied / 1e6).toFixed(0)} of ${(e.missing / 1e6).toFixed(0)} MB, rate ${(e.rate / 1e6).toFixed(1)} MB/s, limit ${(e.limit / 1e6).toFixed(1)} MB/s`,
        );
    summary.push([
      kind,
      healed ? healSeconds.toFixed(1) : `> ${HEAL_LIMIT_S}`,
      (changedBytes / 1e6).toFixed(0),
      (copied / 1e6).toFixed(0),
      (copied / changedBytes).toFixed(2),
      (copied / 1e6 / Math.max(healSeconds, 0.1)).toFixed(1),
      `${((heal.iops / base.iops) * 100).toFixed(0)} %`,
      (heal.p99 / base.p99).toFixed(2),
      heal.gap,
      heal.over100,
      errors.length ? `${(median(errors) * 100).toFixed(0)} %` : "n/a",
      errors.length ? `${(Math.max(...errors) * 100).toFixed(0)} %` : "n/a",
      rates.length ? (median(rates) / 1048576).toFixed(0) : "n/a",
    ]);
    console.error(`done: round ${kind} (heal ${healSeconds.toFixed(1)} s)`);

    if (!plotted) {
      plotted = true;
      await writePlot(entries, [
        [down, "b away"],
        [up, "b back, heal starts"],
        [healEnd, "in sync"],
      ]);
    }
    await Bun.sleep(SETTLE_S * 1000);
  }

  if (ROUNDS.length > 0) {
    console.log("\nVM job per phase (p50..max in ms; IOPS kept against the round's before phase):\n");
    table(
      [
        "round",
        "phase",
        "seconds",
        "I/Os",
        "IOPS",
        "kept",
        "p50",
        "p99",
        "p99.9",
        "max",
        "longest gap",
        "> 100 ms",
        "gateway CPU %",
        "a CPU %",
        "b CPU %",
      ],
      detail,
    );
    console.log("\nHeals:\n");
    table(
      [
        "round",
        "heal s",
        "changed MB",
        "copied MB",
        "copied/changed",
        "heal MB/s",
        "VM IOPS kept",
        "VM p99 / before",
        "longest gap ms",
        "> 100 ms",
        "ETA error median",
        "ETA error worst",
        "throttle MiB/s (median)",
      ],
      summary,
    );
  }

  // --- Idle heal rate (no foreground), against a fresh store's raw put rate, interleaved.
  const concurrency = (await get<{ concurrency: number }>("/v1/heal/limits")).concurrency;
  const idleRows: (string | number)[][] = [];
  const ratios: { total: number; copy: number; shaped: number }[] = [];
  for (let round = 1; round <= IDLE_ROUNDS; round++) {
    await kill("b");
    await sh(fio(["--rw=write", "--bs=1M", "--iodepth=8", `--size=${IDLE_MIB}M`, "--end_fsync=1"]));
    const idleStart = performance.now();
    await restart("b");
    let copyStart: number | null = null;
    let cpuAtCopy: { procs: Awaited<ReturnType<typeof cpuNow>>; machine: number[] } | null = null;
    let healed: Heal;
    for (;;) {
      const h = await get<Heal>("/v1/heal");
      if (inSync(h)) {
        healed = h;
        break;
      }
      if (copyStart === null && (h.stores.find((x) => x.id === "b")?.copiedBytes ?? 0) > 0) {
        copyStart = performance.now();
        cpuAtCopy = { procs: await cpuNow(), machine: await machineJiffies() };
      }
      await Bun.sleep(50);
    }
    const end = performance.now();
    const cpuEnd = { procs: await cpuNow(), machine: await machineJiffies() };
    const copied = healed.stores.find((x) => x.id === "b")!.copiedBytes;
    const totalS = (end - idleStart) / 1000;
    const copyS = (end - (copyStart ?? idleStart)) / 1000;
    const cpu = cpuAtCopy ? cpuPercent(cpuAtCopy.procs, cpuEnd.procs, copyS) : ["", "", ""];
    const busy = cpuAtCopy ? machineCpu(cpuAtCopy.machine, cpuEnd.machine) : null;
    const shaped = await rawPutRate(join(dir, `raw-${round}-shaped`), COPY_BATCH_CHUNKS, concurrency);
    const bulk = await rawPutRate(join(dir, `raw-${round}-bulk`), (64 * 1048576) / CHUNK, 8);
    const total = copied / totalS;
    const copy = copied / copyS;
    ratios.push({ total: total / bulk, copy: copy / bulk, shaped: copy / shaped });
    idleRows.push([
      round,
      (copied / 1e6).toFixed(0),
      totalS.toFixed(1),
      (total / 1e6).toFixed(1),
      copyS.toFixed(1),
      (copy / 1e6).toFixed(1),
      ...cpu,
      busy ? busy.busy.toFixed(0) : "",
      (shaped / 1e6).toFixed(1),
      (bulk / 1e6).toFixed(1),
      (total / bulk).toFixed(2),
      (copy / bulk).toFixed(2),
      (copy / shaped).toFixed(2),
    ]);
  }
  console.log(`\nidle heal (${IDLE_MIB} MiB written while b was down; heal concurrency ${concurrency}):`);
  table(
    [
      "round",
      "copied MB",
      "restart to in sync s",
      "MB/s",
      "copy phase s",
      "copy MB/s",
      "CPU % gw",
      "a",
      "b",
      "machine busy %",
      "raw put, heal-shaped MB/s",
      "raw put, bulk MB/s",
      "heal / bulk",
      "copy phase / bulk",
      "copy phase / heal-shaped",
    ],
    idleRows,
  );
  const med = (k: "total" | "copy" | "shaped") => median(ratios.map((r) => r[k])).toFixed(2);
  console.log(
    `medians: heal (restart to in sync) / bulk put ${med("total")}, copy phase / bulk ${med("copy")}, copy phase / heal-shaped put ${med("shaped")}`,
  );

  /** A fresh store process's put rate over HTTP: 512 MiB of new chunks in `batch`-chunk requests, `lanes` in flight (bulk: 64 MiB requests). */
  async function rawPutRate(storeDir: string, batch: number, lanes: number): Promise<number> {
    const out = await startProc("raw", ["chunkstore", "--dir", storeDir, "--listen", "127.0.0.1:0"]);
    const store = await HttpStore.open(/(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!);
    try {
      const seed = new Uint8Array(CHUNK);
      crypto.getRandomValues(seed);
      const chunks = Array.from({ length: (512 * 1048576) / CHUNK }, (_, i) => {
        const b = seed.slice();
        new DataView(b.buffer).setUint32(0, i);
        return { hash: hashChunk(b), bytes: b };
      });
      let next = 0;
      const t = performance.now();
      await Promise.all(
        Array.from({ length: lanes }, async () => {
          while (next < chunks.length) {
            const part = chunks.slice(next, next + batch);
            next += part.length;
            await store.putMany(part);
          }
        }),
      );
      return (chunks.length * CHUNK) / ((performance.now() - t) / 1000);
    } finally {
      await store.close();
      const p = procs.get("raw")!;
      p.kill("SIGTERM");
      await p.exited;
      procs.delete("raw");
      await rm(storeDir, { recursive: true, force: true });
    }
  }
} finally {
  for (const p of procs.values()) {
    p.kill("SIGKILL");
    p.kill("SIGCONT");
  }
  await Promise.all([...procs.values()].map((p) => p.exited));
  await rm(dir, { recursive: true, force: true });
}

/** docs/heal-latency.svg: latency over time, log scale, with the events marked. */
async function writePlot(entries: [number, number, number, number, number][], marks: [number, string][]) {
  const W = 900;
  const H = 360;
  const tMax = entries.reduce((m, e) => Math.max(m, e[0]), 0);
  const x = (t: number) => 50 + (t / tMax) * (W - 70);
  const y = (ms: number) => H - 30 - ((Math.log10(Math.max(ms, 0.01)) + 2) / 6) * (H - 50);
  const dots = entries
    // Every I/O above 5 ms (the tail that matters) and one in ten of the rest, to keep the file small.
    .filter((e, i) => e[1] > 5e6 || i % 10 === 0)
    .map(
      (e) =>
        `<circle cx="${x(e[0]).toFixed(0)}" cy="${y(e[1] / 1e6).toFixed(0)}" r="1.2" fill="${e[2] === 1 ? "#d62728" : "#1f77b4"}"/>`,
    )
    .join("");
  const mark = ([t, label]: [number, string]) =>
    `<line x1="${x(t)}" x2="${x(t)}" y1="15" y2="${H - 30}" stroke="#333" stroke-dasharray="4 3"/><text x="${x(t) + 3}" y="25" font-size="11">${label}</text>`;
  const grid = [0.01, 0.1, 1, 10, 100, 1000]
    .map(
      (ms) =>
        `<line x1="50" x2="${W - 20}" y1="${y(ms)}" y2="${y(ms)}" stroke="#ddd"/><text x="5" y="${y(ms) + 4}" font-size="10">${ms} ms</text>`,
    )
    .join("");
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif"><title>VM I/O latency over time while a store is away and healed</title><rect width="100%" height="100%" fill="white"/>${grid}${dots}${marks.map(mark).join("")}<text x="${W / 2 - 160}" y="${H - 8}" font-size="11">time (s, 0 to ${(tMax / 1000).toFixed(0)}); blue = read, red = write; fio completion latency of the VM job</text></svg>`;
  await writeFile(join(ROOT, "docs/heal-latency.svg"), svg);
  console.log("\nplot: docs/heal-latency.svg");
}
