/**
 * Backup benchmark against `aws s3 cp` of the same raw file into the same radosgw, in the
 * same run, interleaved round by round (medians reported):
 *
 * - first backup of a 1 GiB image of random data (`blockmend backup create` into a fresh
 *   prefix: every chunk packed and uploaded) against `aws s3 cp` of the raw file
 *   (multipart, 10 parts in flight); target: at least 1.0x the speed of aws s3 cp;
 * - the incremental backup after 16 MiB of new random data (written through NBD) against
 *   that first backup; target: at least 10x faster;
 * - for diagnosis, the same bytes as bare PutObject calls of 16 MiB from this Bun process
 *   through the AWS SDK, 6 in flight (what the pack uploader does, without reading chunks,
 *   packing or indexing): the ceiling of the upload path itself.
 *
 * The S3 server is $S3_ENDPOINT (AWS_* credentials in the environment) or, without it, a
 * radosgw started here (scripts/s3-test-server/start.sh, 8 GiB OSDs) and stopped after.
 * Stores and gateway are real processes started as `npx blockmend` starts them.
 *
 *   bun bench/backup.ts [--rounds 3] [--size-mib 1024] [--profile DIR]
 *
 * `--profile DIR` runs the gateway under `bun --cpu-prof` and leaves the profile in DIR.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CreateBucketCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { GATEWAY_PROCESS_ENV } from "../runtime/process-env.ts";
import { NbdClient } from "../test/support/nbd-client.ts";
import { machine, mbps, table, timed } from "./_report.ts";

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const ROUNDS = Number(arg("--rounds") ?? 3);
const SIZE = Number(arg("--size-mib") ?? 1024) * 1024 * 1024;
const PROFILE = arg("--profile");
const CHANGE = 16 * 1024 * 1024;
const ROOT = new URL("..", import.meta.url).pathname;
const BUN = process.execPath;
const AWS = (await Bun.file("/usr/bin/aws").exists()) ? "/usr/bin/aws" : "aws";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function env(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...extra })) if (v !== undefined) out[k] = v;
  return out;
}

async function sh(cmd: string[], extra: Record<string, string | undefined> = {}): Promise<string> {
  const p = Bun.spawn(cmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe", env: env(extra) });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  if (code !== 0)
    throw new Error(`${cmd.join(" ")} failed (${code}): ${out.slice(0, 500)} ${err.slice(0, 2000)}`);
  return out;
}

const procs: Bun.Subprocess[] = [];

/** Starts a blockmend process and resolves with the first http URL it prints (and the whole first line). */
async function start(cmd: string[]): Promise<{ proc: Bun.Subprocess; url: string; out: () => string }> {
  const proc = Bun.spawn(cmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe", env: env(GATEWAY_PROCESS_ENV) });
  procs.push(proc);
  let text = "";
  const pump = async (s: ReadableStream<Uint8Array>) => {
    const d = new TextDecoder();
    const reader = s.getReader();
    for (let r = await reader.read(); !r.done; r = await reader.read())
      text += d.decode(r.value, { stream: true });
  };
  void pump(proc.stdout as ReadableStream<Uint8Array>);
  void pump(proc.stderr as ReadableStream<Uint8Array>);
  for (let i = 0; i < 600; i++) {
    const m = /(http:\/\/127\.0\.0\.1:\d+)/.exec(text);
    if (m) return { proc, url: m[1]!, out: () => text };
    if (proc.exitCode !== null) break;
    await Bun.sleep(50);
  }
  throw new Error(`${cmd.join(" ")} did not start:\n${text}`);
}

const dir = await mkdtemp(join(tmpdir(), "blockmend-bench-backup-"));
let s3dir: string | null = null;
try {
  if (!process.env.S3_ENDPOINT) {
    s3dir = join(dir, "s3");
    const port = 17000 + Math.floor(Math.random() * 2000);
    await sh(["bash", "scripts/s3-test-server/start.sh", s3dir, String(port)], {
      OSD_SIZE: "8G",
      MON_PORT: String(port + 1),
    });
    const text = await Bun.file(join(s3dir, "s3.env")).text();
    for (const m of text.matchAll(/^export (\w+)=(.*)$/gm)) process.env[m[1]!] = m[2]!;
  }
  const endpoint = process.env.S3_ENDPOINT!;
  const bucket = `bm-bench-${Date.now().toString(36)}`;
  const s3 = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true });
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const target = (prefix: string) =>
    `s3://${bucket}/${prefix}?endpoint=${encodeURIComponent(endpoint)}&region=us-east-1`;
  const emptyPrefix = async (prefix: string) => {
    for (;;) {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/` }));
      const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
      if (keys.length === 0) return;
      await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
    }
  };

  console.log(`# Backup benchmark: ${machine()}`);
  console.log(`${ROUNDS} rounds, ${SIZE / 2 ** 20} MiB image of random data, S3 at ${endpoint}\n`);

  const stores = await Promise.all(
    ["a", "b", "w"].map((id) =>
      start([
        BUN,
        "cli/main.ts",
        "chunkstore",
        "--dir",
        join(dir, id),
        "--listen",
        "127.0.0.1:0",
        ...(id === "w" ? ["--witness"] : []),
      ]),
    ),
  );
  const gwCmd = [
    BUN,
    ...(PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE}`] : []),
    "cli/main.ts",
    "gateway",
    ...["a", "b", "w"].flatMap((id, i) => ["--store", `${id}=${stores[i]!.url}`]),
    ...[
      "--replicas",
      "2",
      "--min-replicas",
      "1",
      "--nbd",
      "127.0.0.1:0",
      "--http",
      "127.0.0.1:0",
      "--state-dir",
      join(dir, "gw"),
    ],
  ];
  const gw = await start(gwCmd);
  const nbdPort = Number(/nbd:\/\/127\.0\.0\.1:(\d+)/.exec(gw.out())![1]);
  const apiPost = async (path: string, body: unknown) => {
    const res = await fetch(`${gw.url}${path}`, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  };

  // The image and the raw file aws s3 cp uploads: the same random bytes.
  const raw = join(dir, "disk.raw");
  const w = Bun.file(raw).writer();
  for (let at = 0; at < SIZE; at += 64 * 1024 * 1024) {
    const piece = new Uint8Array(Math.min(64 * 1024 * 1024, SIZE - at));
    for (let o = 0; o < piece.length; o += 65536) crypto.getRandomValues(piece.subarray(o, o + 65536));
    w.write(piece);
  }
  await w.end();
  await apiPost("/v1/images", { name: "disk", size: SIZE });
  await sh(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", raw, `nbd://127.0.0.1:${nbdPort}/disk`]);

  const backupCli = async (args: string[]) =>
    JSON.parse(await sh([BUN, "cli/main.ts", "backup", ...args, "--api", gw.url, "--json"])) as Record<
      string,
      number
    >;

  const rows: (string | number)[][] = [];
  const full: number[] = [];
  const cp: number[] = [];
  const inc: number[] = [];
  const sdk: number[] = [];
  const rawBytes = new Uint8Array(await Bun.file(raw).arrayBuffer());
  const sdkPut = (prefix: string) =>
    timed(async () => {
      const PIECE = 16 * 1024 * 1024;
      let next = 0;
      const lane = async () => {
        for (let at = next; at < SIZE; at = next) {
          next += PIECE;
          await s3.send(
            new PutObjectCommand({
              Bucket: bucket,
              Key: `${prefix}/${at}`,
              Body: rawBytes.subarray(at, Math.min(SIZE, at + PIECE)),
            }),
          );
        }
      };
      await Promise.all(Array.from({ length: 6 }, lane));
    });
  for (let round = 0; round < ROUNDS; round++) {
    await apiPost("/v1/images/disk/snapshots", { name: `full${round}` });
    let tFull = 0;
    let tCp = 0;
    let uploaded = 0;
    const runFull = async () => {
      tFull = await timed(async () => {
        uploaded = (await backupCli(["create", `disk@full${round}`, "--to", target(`bm${round}`)]))
          .uploadedBytes!;
      });
    };
    const runCp = async () => {
      tCp = await timed(async () => {
        await sh(
          [
            AWS,
            "s3",
            "cp",
            raw,
            `s3://${bucket}/cp${round}/disk.raw`,
            "--endpoint-url",
            endpoint,
            "--only-show-errors",
            ...["--cli-read-timeout", "600"],
          ],
          {
            AWS_CA_BUNDLE: undefined,
          },
        );
      });
    };
    let tSdk = 0;
    if (round % 2 === 0) {
      await runFull();
      await runCp();
      tSdk = await sdkPut(`sdk${round}`);
    } else {
      tSdk = await sdkPut(`sdk${round}`);
      await runCp();
      await runFull();
    }
    sdk.push(tSdk);
    const client = await NbdClient.connect(nbdPort, "disk");
    const change = new Uint8Array(CHANGE);
    for (let o = 0; o < CHANGE; o += 65536) crypto.getRandomValues(change.subarray(o, o + 65536));
    await client.write((64 + round * 16) * 1024 * 1024, change);
    await client.flush();
    client.close();
    await apiPost("/v1/images/disk/snapshots", { name: `inc${round}` });
    let incUploaded = 0;
    const tInc = await timed(async () => {
      incUploaded = (await backupCli(["create", `disk@inc${round}`, "--to", target(`bm${round}`)]))
        .uploadedBytes!;
    });
    full.push(tFull);
    cp.push(tCp);
    inc.push(tInc);
    rows.push([
      round + 1,
      tFull,
      mbps(SIZE, tFull),
      tCp,
      mbps(SIZE, tCp),
      tCp / tFull,
      mbps(SIZE, tSdk),
      tInc,
      incUploaded / 2 ** 20,
      tFull / tInc,
    ]);
    console.error(
      `round ${round + 1}: backup ${tFull.toFixed(2)} s (${uploaded} B), aws s3 cp ${tCp.toFixed(2)} s, incremental ${tInc.toFixed(2)} s`,
    );
    await emptyPrefix(`bm${round}`);
    await emptyPrefix(`cp${round}`);
    await emptyPrefix(`sdk${round}`);
  }
  table(
    [
      "round",
      "backup s",
      "backup MB/s",
      "aws s3 cp s",
      "aws MB/s",
      "speed vs aws",
      "bare SDK PUTs MB/s",
      "incremental s",
      "incremental MiB up",
      "first / incremental",
    ],
    rows,
  );
  const ratio = median(cp) / median(full);
  const perRound = median(full.map((f, i) => cp[i]! / f));
  const speedup = median(full) / median(inc);
  console.log(
    `\nmedians: first backup ${median(full).toFixed(2)} s (${mbps(SIZE, median(full)).toFixed(1)} MB/s), aws s3 cp ${median(cp).toFixed(2)} s (${mbps(SIZE, median(cp)).toFixed(1)} MB/s): **${ratio.toFixed(2)}x** (target >= 1.0x ${ratio >= 1 ? "met" : "missed"}; median of the per-round ratios ${perRound.toFixed(2)}x); bare SDK PUTs ${mbps(SIZE, median(sdk)).toFixed(1)} MB/s; incremental ${median(inc).toFixed(2)} s: **${speedup.toFixed(1)}x** faster than the first (target >= 10x ${speedup >= 10 ? "met" : "missed"})`,
  );
  s3.destroy();
} finally {
  for (const p of procs.reverse()) {
    p.kill("SIGTERM");
    await Promise.race([p.exited, Bun.sleep(10_000)]);
    p.kill("SIGKILL");
  }
  if (s3dir) await sh(["bash", "scripts/s3-test-server/stop.sh", s3dir]).catch(() => {});
  await rm(dir, { recursive: true, force: true });
}
