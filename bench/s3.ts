/**
 * S3 endpoint benchmark, against the NBD export of the same gateway in the same run,
 * interleaved round by round (medians reported):
 *
 * - GET of a 1 GiB image of random data: the AWS SDK (one GetObject stream) and aws-cli
 *   (`aws s3 cp`, parallel ranged GETs) against `nbdcopy` out of the NBD export;
 * - import of 1 GiB of fresh random data: a multipart upload with @aws-sdk/lib-storage
 *   (8 MiB parts, 4 at a time) against `qemu-img convert` into an NBD export, with the CPU
 *   seconds each import cost the gateway and its client (client and gateway share the
 *   machine's cores, so a client that burns more CPU slows the gateway too).
 *
 *   bun bench/s3.ts [--rounds 3] [--size-mib 1024] [--import-only] [--cpu-prof DIR]
 *
 * `--import-only` skips the GETs; `--cpu-prof DIR` writes the gateway's CPU profile there
 * (`bun --cpu-prof`), for finding where the gateway's thread goes.
 */
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { GATEWAY_PROCESS_ENV } from "../runtime/process-env.ts";
import { machine, mbps, table, timed } from "./_report.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const ROUNDS = arg("--rounds", 3);
const SIZE = arg("--size-mib", 1024) * 1024 * 1024;
const IMPORT_ONLY = process.argv.includes("--import-only");
const PROFILE_DIR = process.argv.includes("--cpu-prof")
  ? process.argv[process.argv.indexOf("--cpu-prof") + 1]!
  : undefined;
const ROOT = new URL("..", import.meta.url).pathname;
const AWS = (await Bun.file("/usr/bin/aws").exists()) ? "/usr/bin/aws" : "aws";

async function sh(cmd: string[], env: Record<string, string | undefined> = {}): Promise<string> {
  const merged: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...env })) if (v !== undefined) merged[k] = v;
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: merged });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  if (code !== 0)
    throw new Error(`${cmd.join(" ")} failed (${code}): ${out.slice(0, 500)} ${err.slice(0, 2000)}`);
  return out;
}

/** CPU seconds (user + system) a process used so far, from /proc (Linux; clock ticks of 1/100 s). */
async function processCpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds of this process (the SDK client runs in it). */
const ownCpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = await mkdtemp(join(tmpdir(), "blockmend-bench-s3-"));
const procs: Bun.Subprocess[] = [];
try {
  console.log(`# S3 benchmark: ${machine()}`);
  console.log(`${ROUNDS} rounds, ${SIZE / 2 ** 20} MiB objects, data under ${dir}\n`);
  const gw = Bun.spawn(
    [
      process.execPath,
      ...(PROFILE_DIR ? ["--cpu-prof", "--cpu-prof-dir", PROFILE_DIR] : []),
      join(ROOT, "cli/main.ts"),
      "up",
      "--data",
      join(dir, "bm"),
      "--nbd",
      "127.0.0.1:0",
      "--http",
      "127.0.0.1:0",
      "--s3",
      "127.0.0.1:0",
    ],
    { stdout: "pipe", stderr: "inherit", env: { ...process.env, ...GATEWAY_PROCESS_ENV } },
  );
  procs.push(gw);
  let out = "";
  const reader = gw.stdout.getReader();
  while (!/S3 endpoint on/.test(out)) out += new TextDecoder().decode((await reader.read()).value);
  void (async () => {
    for (let r = await reader.read(); !r.done; r = await reader.read());
  })();
  const nbd = /(nbd:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
  const api = /HTTP API:\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
  const m = /S3 endpoint on (http:\/\/127\.0\.0\.1:\d+) .*credentials in (\S+)\)/.exec(out)!;
  const s3url = m[1]!;
  const line = (await readFile(m[2]!, "utf8")).split("\n").find((l) => l && !l.startsWith("#"))!;
  const [accessKeyId, secretAccessKey] = [
    line.slice(0, line.indexOf(":")),
    line.slice(line.indexOf(":") + 1),
  ];
  const client = new S3Client({
    endpoint: s3url,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
  });
  const awsEnv = {
    AWS_ACCESS_KEY_ID: accessKeyId,
    AWS_SECRET_ACCESS_KEY: secretAccessKey,
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_CA_BUNDLE: undefined,
    AWS_CONFIG_FILE: "/dev/null",
    AWS_EC2_METADATA_DISABLED: "true",
  };
  const create = async (name: string) => {
    const r = await fetch(`${api}/v1/images`, {
      method: "POST",
      body: JSON.stringify({ name, size: SIZE }),
      headers: { "content-type": "application/json" },
    });
    if (r.status !== 201) throw new Error(`create ${name}: ${await r.text()}`);
  };
  const randomFile = async (path: string) => sh(["sh", "-c", `head -c ${SIZE} /dev/urandom > ${path}`]);

  // The image every GET reads: random data written through NBD.
  const src = join(dir, "src.raw");
  await randomFile(src);
  await create("bench");
  await sh(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, `${nbd}/bench`]);

  const t = {
    nbdcopy: [] as number[],
    sdkGet: [] as number[],
    awsGet: [] as number[],
    qemuImport: [] as number[],
    s3Import: [] as number[],
  };
  /** CPU seconds per import, of the gateway and of the client (qemu-img, or the SDK in this process). */
  const cpu = {
    qemuGateway: [] as number[],
    qemuClient: [] as number[],
    s3Gateway: [] as number[],
    s3Client: [] as number[],
  };
  /** One round of the GETs: nbdcopy, the SDK, aws-cli. */
  async function gets(): Promise<void> {
    t.nbdcopy.push(await timed(() => sh(["nbdcopy", `${nbd}/bench`, "null:"]).then(() => {})));
    t.sdkGet.push(
      await timed(async () => {
        const r = await client.send(new GetObjectCommand({ Bucket: "images", Key: "bench" }));
        let n = 0;
        for await (const piece of r.Body as AsyncIterable<Uint8Array>) n += piece.byteLength;
        if (n !== SIZE) throw new Error(`GET returned ${n} bytes`);
      }),
    );
    t.awsGet.push(
      await timed(() =>
        sh(
          [
            "sh",
            "-c",
            `"${AWS}" --endpoint-url ${s3url} s3 cp --no-progress s3://images/bench - > /dev/null`,
          ],
          awsEnv,
        ).then(() => {}),
      ),
    );
  }

  for (let round = 1; round <= ROUNDS; round++) {
    if (!IMPORT_ONLY) await gets();
    // Fresh random data for each import: dedup would otherwise skip the work.
    const a = join(dir, "a.raw");
    const b = join(dir, "b.raw");
    await randomFile(a);
    await randomFile(b);
    await create(`qemu${round}`);
    let g0 = await processCpuSeconds(gw.pid);
    let clientCpu = 0;
    t.qemuImport.push(
      await timed(async () => {
        const p = Bun.spawn(
          ["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", a, `${nbd}/qemu${round}`],
          {
            stdout: "ignore",
            stderr: "pipe",
          },
        );
        const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
        if (code !== 0) throw new Error(`qemu-img convert failed (${code}): ${err}`);
        const usage = p.resourceUsage()!;
        clientCpu = Number(usage.cpuTime.user + usage.cpuTime.system) / 1e6;
      }),
    );
    cpu.qemuGateway.push((await processCpuSeconds(gw.pid)) - g0);
    cpu.qemuClient.push(clientCpu);
    g0 = await processCpuSeconds(gw.pid);
    const c0 = ownCpuSeconds();
    t.s3Import.push(
      await timed(async () => {
        const up = new Upload({
          client,
          params: { Bucket: "images", Key: `s3-${round}`, Body: createReadStream(b) },
          partSize: 8 * 2 ** 20,
          queueSize: 4,
        });
        await up.done();
      }),
    );
    cpu.s3Gateway.push((await processCpuSeconds(gw.pid)) - g0);
    cpu.s3Client.push(ownCpuSeconds() - c0);
    await rm(a);
    await rm(b);
    console.log(
      `round ${round}: ${Object.entries(t)
        .filter(([, v]) => v.length > 0)
        .map(([k, v]) => `${k} ${mbps(SIZE, v.at(-1)!).toFixed(0)} MB/s`)
        .join(
          ", ",
        )}; CPU s per import, gateway/client: qemu-img ${cpu.qemuGateway.at(-1)!.toFixed(1)}/${cpu.qemuClient
        .at(-1)!
        .toFixed(1)}, S3 ${cpu.s3Gateway.at(-1)!.toFixed(1)}/${cpu.s3Client.at(-1)!.toFixed(1)}`,
    );
  }
  const med = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, mbps(SIZE, median(v))])) as Record<
    keyof typeof t,
    number
  >;
  console.log("");
  table(
    ["what", "median MB/s", "baseline MB/s", "ratio"],
    [
      ...(IMPORT_ONLY
        ? []
        : [
            ["GET, AWS SDK (one stream) vs nbdcopy", med.sdkGet, med.nbdcopy, med.sdkGet / med.nbdcopy],
            ["GET, aws-cli s3 cp vs nbdcopy", med.awsGet, med.nbdcopy, med.awsGet / med.nbdcopy],
          ]),
      [
        "import, SDK multipart vs qemu-img convert into NBD",
        med.s3Import,
        med.qemuImport,
        med.s3Import / med.qemuImport,
      ],
    ],
  );
  const cpuMed = Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, median(v)])) as Record<
    keyof typeof cpu,
    number
  >;
  console.log("");
  table(
    ["CPU seconds per import (medians)", "gateway", "client", "gateway + client"],
    [
      [
        "qemu-img convert into NBD",
        cpuMed.qemuGateway,
        cpuMed.qemuClient,
        cpuMed.qemuGateway + cpuMed.qemuClient,
      ],
      ["SDK multipart into S3", cpuMed.s3Gateway, cpuMed.s3Client, cpuMed.s3Gateway + cpuMed.s3Client],
      [
        "S3 / qemu-img",
        cpuMed.s3Gateway / cpuMed.qemuGateway,
        cpuMed.s3Client / cpuMed.qemuClient,
        (cpuMed.s3Gateway + cpuMed.s3Client) / (cpuMed.qemuGateway + cpuMed.qemuClient),
      ],
    ],
  );
} finally {
  for (const p of procs) p.kill("SIGTERM");
  await Promise.all(procs.map((p) => p.exited));
  await rm(dir, { recursive: true, force: true });
}
