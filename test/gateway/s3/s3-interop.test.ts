/**
 * The S3 endpoint of a real `blockmend up --s3` process driven by real clients: the AWS
 * SDK (with lib-storage for multipart), the `minio` npm client, Debian's `aws` (awscli)
 * and `rclone`, and curl for presigned URLs; images written and read back through NBD
 * with qemu-img and qemu-io. A missing tool fails with the apt-get line.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createReadStream, existsSync } from "node:fs";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import * as Minio from "minio";
import { killAll, type StartedProcess, startBlockmend } from "../../support/processes.ts";
import { requireTools, runOk } from "../../support/tools.ts";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
/** Debian's awscli (a pip-installed one earlier on PATH may be another major version). */
const AWS = existsSync("/usr/bin/aws") ? "/usr/bin/aws" : "aws";

let dir: string;
let gw: StartedProcess;
let nbd: string;
let s3url: string;
let accessKey: string;
let secret: string;
const children = new Set<Bun.Subprocess>();

/** Runs a command with extra environment; resolves code and output (killed after `timeoutMs`). */
async function sh(cmd: string[], env: Record<string, string | undefined> = {}, timeoutMs = 300_000) {
  const merged: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...env })) if (v !== undefined) merged[k] = v;
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: merged });
  children.add(proc);
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  children.delete(proc);
  return { code, out, err };
}

async function shOk(
  cmd: string[],
  env: Record<string, string | undefined> = {},
  timeoutMs?: number,
): Promise<string> {
  const r = await sh(cmd, env, timeoutMs);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited ${r.code}:\n${r.out}\n${r.err}`);
  return r.out;
}

function awsEnv(s = secret): Record<string, string | undefined> {
  return {
    AWS_ACCESS_KEY_ID: accessKey,
    AWS_SECRET_ACCESS_KEY: s,
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_CA_BUNDLE: undefined,
    AWS_CONFIG_FILE: "/dev/null",
    AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
    AWS_EC2_METADATA_DISABLED: "true",
  };
}
const aws = (args: string[], s?: string) =>
  sh(
    [
      AWS,
      "--endpoint-url",
      s3url,
      ...args,
      ...(args[0] === "s3" && args[1] === "cp" ? ["--no-progress"] : []),
    ],
    awsEnv(s),
  );

function rcloneEnv(s = secret): Record<string, string | undefined> {
  return {
    // Debian's rclone 1.60 refuses to start while AWS_CA_BUNDLE is set.
    AWS_CA_BUNDLE: undefined,
    RCLONE_CONFIG: join(dir, "rclone.conf"),
    RCLONE_CONFIG_BM_TYPE: "s3",
    RCLONE_CONFIG_BM_PROVIDER: "Other",
    RCLONE_CONFIG_BM_ENDPOINT: s3url,
    RCLONE_CONFIG_BM_ACCESS_KEY_ID: accessKey,
    RCLONE_CONFIG_BM_SECRET_ACCESS_KEY: s,
    RCLONE_CONFIG_BM_REGION: "us-east-1",
  };
}
const rclone = (args: string[], s?: string) => sh(["rclone", "--retries", "1", ...args], rcloneEnv(s));

function sdk(s = secret): S3Client {
  return new S3Client({
    endpoint: s3url,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: accessKey, secretAccessKey: s },
  });
}

function minio(s = secret): Minio.Client {
  const u = new URL(s3url);
  return new Minio.Client({
    endPoint: u.hostname,
    port: Number(u.port),
    useSSL: false,
    accessKey,
    secretKey: s,
    region: "us-east-1",
    pathStyle: true,
  });
}

async function streamBytes(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream) parts.push(Buffer.from(p as Uint8Array));
  return Buffer.concat(parts);
}

async function api(path: string, body?: unknown): Promise<Response> {
  return fetch(
    `${gw.url}${path}`,
    body === undefined
      ? {}
      : { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } },
  );
}

/** A sparse raw file of `size` with random regions (and holes between them). */
async function sparseFile(
  path: string,
  size: number,
  regions: readonly (readonly [number, number])[],
): Promise<void> {
  const fh = await open(path, "w");
  await fh.truncate(size);
  for (const [off, len] of regions) {
    const buf = new Uint8Array(len);
    for (let o = 0; o < len; o += 65536) crypto.getRandomValues(buf.subarray(o, Math.min(len, o + 65536)));
    await fh.write(buf, 0, len, off);
  }
  await fh.close();
}

beforeAll(async () => {
  requireTools("qemu-img", "qemu-io", "rclone", "curl");
  if (!existsSync(AWS) && !Bun.which("aws")) requireTools("aws");
  dir = await mkdtemp(join(tmpdir(), "blockmend-s3-"));
  await writeFile(join(dir, "rclone.conf"), "");
  gw = await startBlockmend([
    "up",
    "--data",
    join(dir, "data"),
    "--nbd",
    "127.0.0.1:0",
    "--http",
    "127.0.0.1:0",
    "--s3",
    "127.0.0.1:0",
  ]);
  const out = gw.output();
  nbd = /(nbd:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
  for (let i = 0; i < 100 && !/S3 endpoint on/.test(gw.output()); i++) await Bun.sleep(50);
  const m = /S3 endpoint on (http:\/\/127\.0\.0\.1:\d+) .*credentials in (\S+)\)/.exec(gw.output())!;
  s3url = m[1]!;
  const line = (await readFile(m[2]!, "utf8")).split("\n").find((l) => l && !l.startsWith("#"))!;
  accessKey = line.slice(0, line.indexOf(":"));
  secret = line.slice(line.indexOf(":") + 1);
}, 60_000);

afterAll(async () => {
  for (const p of children) p.kill("SIGKILL");
  await killAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("real S3 clients against blockmend up --s3", () => {
  test("an image written through NBD is listed, headed and read whole and ranged, byte for byte, by the SDK, minio, aws-cli and rclone", async () => {
    const src = join(dir, "vm1.raw");
    await sparseFile(src, 16 * MiB, [
      [0, 3 * MiB + 517],
      [9 * MiB + 4096, 2 * MiB],
      [16 * MiB - 65536, 65536],
    ]);
    expect((await api("/v1/images", { name: "vm1", size: 16 * MiB })).status).toBe(201);
    await runOk(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, `${nbd}/vm1`]);
    const want = await readFile(src);
    const range = [1_000_000, 10_000_000] as const; // inclusive bytes
    const wantRange = want.subarray(range[0], range[1] + 1);

    const client = sdk();
    const listed = await client.send(new ListObjectsV2Command({ Bucket: "images" }));
    const entry = listed.Contents?.find((c) => c.Key === "vm1");
    expect(entry?.Size).toBe(16 * MiB);
    const head = await client.send(new HeadObjectCommand({ Bucket: "images", Key: "vm1" }));
    expect(head.ETag).toBe(entry!.ETag!);
    expect(head.ContentLength).toBe(16 * MiB);
    const full = await client.send(new GetObjectCommand({ Bucket: "images", Key: "vm1" }));
    expect(Buffer.compare(Buffer.from(await full.Body!.transformToByteArray()), want)).toBe(0);
    const part = await client.send(
      new GetObjectCommand({ Bucket: "images", Key: "vm1", Range: `bytes=${range[0]}-${range[1]}` }),
    );
    expect(Buffer.compare(Buffer.from(await part.Body!.transformToByteArray()), wantRange)).toBe(0);

    const mc = minio();
    const keys: { name: string; size: number; etag: string }[] = [];
    for await (const o of mc.listObjectsV2("images", "", true))
      keys.push(o as { name: string; size: number; etag: string });
    expect(keys.find((k) => k.name === "vm1")?.size).toBe(16 * MiB);
    const stat = await mc.statObject("images", "vm1");
    expect(`"${stat.etag}"`).toBe(head.ETag!);
    expect(Buffer.compare(await streamBytes(await mc.getObject("images", "vm1")), want)).toBe(0);
    const partial = await mc.getPartialObject("images", "vm1", range[0], range[1] - range[0] + 1);
    expect(Buffer.compare(await streamBytes(partial), wantRange)).toBe(0);

    const awsList = JSON.parse(
      (await aws(["s3api", "list-objects-v2", "--bucket", "images", "--output", "json"])).out,
    );
    expect(awsList.Contents.find((c: { Key: string }) => c.Key === "vm1").Size).toBe(16 * MiB);
    const awsHead = JSON.parse(
      (await aws(["s3api", "head-object", "--bucket", "images", "--key", "vm1", "--output", "json"])).out,
    );
    expect(awsHead.ETag).toBe(head.ETag);
    const awsFull = join(dir, "aws-full.raw");
    const cp = await aws(["s3", "cp", "s3://images/vm1", awsFull]);
    expect(cp.code).toBe(0);
    expect(Buffer.compare(await readFile(awsFull), want)).toBe(0);
    const awsPart = join(dir, "aws-part.raw");
    expect(
      (
        await aws([
          "s3api",
          "get-object",
          "--bucket",
          "images",
          "--key",
          "vm1",
          "--range",
          `bytes=${range[0]}-${range[1]}`,
          awsPart,
        ])
      ).code,
    ).toBe(0);
    expect(Buffer.compare(await readFile(awsPart), wantRange)).toBe(0);

    const rcList = JSON.parse((await rclone(["lsjson", "bm:images"])).out) as {
      Path: string;
      Size: number;
    }[];
    expect(rcList.find((o) => o.Path === "vm1")?.Size).toBe(16 * MiB);
    const rcFull = join(dir, "rclone-full.raw");
    expect((await rclone(["copyto", "bm:images/vm1", rcFull])).code).toBe(0);
    expect(Buffer.compare(await readFile(rcFull), want)).toBe(0);
    const rcPartFile = join(dir, "rclone-part.raw");
    await shOk(
      [
        "sh",
        "-c",
        `rclone cat --offset ${range[0]} --count ${range[1] - range[0] + 1} bm:images/vm1 > ${rcPartFile}`,
      ],
      rcloneEnv(),
    );
    expect(Buffer.compare(await readFile(rcPartFile), wantRange)).toBe(0);
  }, 180_000);

  test("presigned GETs work with curl until they expire; forged signatures and wrong secrets are refused by every client", async () => {
    const want = await readFile(join(dir, "vm1.raw"));
    const url = await getSignedUrl(sdk(), new GetObjectCommand({ Bucket: "images", Key: "vm1" }), {
      expiresIn: 300,
    });
    const outFile = join(dir, "curl.raw");
    expect((await shOk(["curl", "-sS", "-o", outFile, "-w", "%{http_code}", url])).trim()).toBe("200");
    expect(Buffer.compare(await readFile(outFile), want)).toBe(0);
    const awsUrl = (await aws(["s3", "presign", "s3://images/vm1", "--expires-in", "300"])).out.trim();
    expect((await shOk(["curl", "-sS", "-o", outFile, "-w", "%{http_code}", awsUrl])).trim()).toBe("200");
    expect(Buffer.compare(await readFile(outFile), want)).toBe(0);

    const forged = url.replace(
      /X-Amz-Signature=([0-9a-f])/,
      (_, c: string) => `X-Amz-Signature=${c === "0" ? "1" : "0"}`,
    );
    const f = await shOk(["curl", "-sS", "-w", "\n%{http_code}", forged]);
    expect(f).toContain("<Code>SignatureDoesNotMatch</Code>");
    expect(f.trim().endsWith("403")).toBe(true);
    const shortUrl = (await aws(["s3", "presign", "s3://images/vm1", "--expires-in", "1"])).out.trim();
    await Bun.sleep(2100);
    const expired = await shOk(["curl", "-sS", "-w", "\n%{http_code}", shortUrl]);
    expect(expired).toContain("<Code>AccessDenied</Code>");
    expect(expired).toContain("Request has expired");
    const unsigned = await shOk(["curl", "-sS", "-w", "\n%{http_code}", `${s3url}/images/vm1`]);
    expect(unsigned).toContain("<Code>AccessDenied</Code>");

    const wrong = "WRONGwrongWRONGwrongWRONGwrong";
    const awsWrong = await aws(["s3api", "list-objects-v2", "--bucket", "images"], wrong);
    expect(awsWrong.code).not.toBe(0);
    expect(awsWrong.err).toContain("SignatureDoesNotMatch");
    const rcWrong = await rclone(["lsjson", "bm:images"], wrong);
    expect(rcWrong.code).not.toBe(0);
    expect(rcWrong.err).toContain("SignatureDoesNotMatch");
    // A GET: the error of a HEAD has no body, so minio could only say AccessDenied.
    const mcWrong = await minio(wrong)
      .getObject("images", "vm1")
      .then(
        () => null,
        (e: { code?: string }) => e.code,
      );
    expect(mcWrong).toBe("SignatureDoesNotMatch");
    const sdkWrong = await sdk(wrong)
      .send(new ListObjectsV2Command({ Bucket: "images" }))
      .then(
        () => null,
        (e: { name: string }) => e.name,
      );
    expect(sdkWrong).toBe("SignatureDoesNotMatch");
  }, 120_000);

  test("a 1 GiB sparse file uploaded as a new image by the SDK, aws-cli, rclone and minio reads back identical through NBD", async () => {
    const src = join(dir, "big.raw");
    await sparseFile(src, GiB, [
      [0, 3 * MiB + 517],
      [20 * MiB + 4096, 8 * MiB],
      [300 * MiB + 12345, 65536],
      [700 * MiB, 5 * MiB],
      [GiB - 2 * MiB, 2 * MiB],
    ]);
    const upload = new Upload({
      client: sdk(),
      params: { Bucket: "images", Key: "up-sdk", Body: createReadStream(src) },
      partSize: 8 * MiB,
      queueSize: 4,
    });
    await upload.done();
    expect((await aws(["s3", "cp", src, "s3://images/up-aws"])).code).toBe(0);
    const rc = await rclone(["copyto", src, "bm:images/up-rclone"]);
    expect(rc.err).not.toContain("ERROR");
    expect(rc.code).toBe(0);
    await minio().fPutObject("images", "up-minio", src);
    for (const name of ["up-sdk", "up-aws", "up-rclone", "up-minio"]) {
      const out = await runOk(["qemu-img", "compare", "-f", "raw", "-F", "raw", src, `${nbd}/${name}`], {
        timeoutMs: 300_000,
      });
      expect(out).toContain("Images are identical");
    }
  }, 900_000);

  test("a download while qemu-io writes and flushes is the old or the new version in full, never a mix; If-Match across ranged GETs answers 412 after a change", async () => {
    const size = 32 * MiB;
    expect((await api("/v1/images", { name: "live", size })).status).toBe(201);
    const uri = `${nbd}/live`;
    await runOk(["qemu-io", "-f", "raw", "-c", `write -P 0x11 0 ${size}`, "-c", "flush", uri]);
    const client = sdk();
    const e1 = (await client.send(new HeadObjectCommand({ Bucket: "images", Key: "live" }))).ETag!;
    const first = await client.send(
      new GetObjectCommand({ Bucket: "images", Key: "live", IfMatch: e1, Range: `bytes=0-${size / 2 - 1}` }),
    );
    expect((await first.Body!.transformToByteArray()).every((b) => b === 0x11)).toBe(true);

    // A GET that started before a write and flush still delivers the old version, whole.
    const slow = await client.send(new GetObjectCommand({ Bucket: "images", Key: "live" }));
    const chunks: Uint8Array[] = [];
    const it = (slow.Body as unknown as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    const firstPiece = await it.next();
    chunks.push(firstPiece.value as Uint8Array);
    await runOk(["qemu-io", "-f", "raw", "-c", `write -P 0x22 0 ${size}`, "-c", "flush", uri]);
    for (let r = await it.next(); !r.done; r = await it.next()) chunks.push(r.value);
    const old = Buffer.concat(chunks);
    expect(old.byteLength).toBe(size);
    expect(old.every((b) => b === 0x11)).toBe(true);

    const second = await client
      .send(new GetObjectCommand({ Bucket: "images", Key: "live", IfMatch: e1, Range: `bytes=${size / 2}-` }))
      .then(
        () => 200,
        (e: { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode,
      );
    expect(second).toBe(412);

    // Downloads racing a stream of writes and flushes: each body is one version, whole.
    const commands = Array.from({ length: 12 }, (_, i) => [
      `write -P 0x${(0x30 + i).toString(16)} 0 ${size}`,
      "flush",
    ]).flat();
    const writer = Bun.spawn(["qemu-io", "-f", "raw", ...commands.flatMap((c) => ["-c", c]), uri], {
      stdout: "pipe",
      stderr: "pipe",
    });
    children.add(writer);
    let downloads = 0;
    const seen = new Set<number>();
    while (writer.exitCode === null || downloads < 2) {
      const got = await client.send(new GetObjectCommand({ Bucket: "images", Key: "live" }));
      const bytes = await got.Body!.transformToByteArray();
      expect(bytes.byteLength).toBe(size);
      const v = bytes[0]!;
      expect(bytes.every((b) => b === v)).toBe(true);
      seen.add(v);
      downloads++;
    }
    expect(await writer.exited).toBe(0);
    children.delete(writer);
    expect(downloads).toBeGreaterThanOrEqual(2);
  }, 300_000);

  test("replacing or deleting an image a client has attached answers 409 through aws-cli; once detached it works", async () => {
    await runOk(["qemu-img", "create", "-f", "raw", join(dir, "small.raw"), "1M"]);
    const attached = Bun.spawn(["qemu-io", "-f", "raw", `${nbd}/vm1`], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    children.add(attached);
    try {
      // Wait until the NBD connection is up: a read through it answers.
      attached.stdin.write("read 0 512\n");
      attached.stdin.flush();
      const reader = attached.stdout.getReader();
      let text = "";
      while (!text.includes("read 512/512")) text += new TextDecoder().decode((await reader.read()).value);
      reader.releaseLock();
      const cp = await aws(["s3", "cp", join(dir, "small.raw"), "s3://images/vm1"]);
      expect(cp.code).not.toBe(0);
      expect(cp.err).toContain("ImageAttached");
      const del = await aws(["s3api", "delete-object", "--bucket", "images", "--key", "vm1"]);
      expect(del.code).not.toBe(0);
      expect(del.err).toContain("attached for writing");
    } finally {
      attached.stdin.write("quit\n");
      attached.stdin.end();
      await attached.exited;
      children.delete(attached);
    }
    expect((await api("/v1/images/vm1/snapshots", { name: "before" })).status).toBe(201);
    expect((await aws(["s3", "cp", join(dir, "small.raw"), "s3://images/vm1"])).code).toBe(0);
    const snap = await aws(["s3api", "head-object", "--bucket", "images", "--key", "vm1@before"]);
    expect(JSON.parse(snap.out).ContentLength).toBe(16 * MiB);
    const cur = await aws(["s3api", "head-object", "--bucket", "images", "--key", "vm1"]);
    expect(JSON.parse(cur.out).ContentLength).toBe(MiB);
    expect((await aws(["s3", "rm", "s3://images/vm1@before"])).code).toBe(0);
    expect((await aws(["s3", "rm", "s3://images/vm1"])).code).toBe(0);
    const ls = await aws(["s3", "ls", "s3://images/"]);
    expect(ls.out).not.toMatch(/ vm1(@before)?\n/);
  }, 120_000);

  test("--s3 on a non-loopback address without --s3-credentials is refused at startup with one line", async () => {
    const r = await sh(
      [
        process.execPath,
        "cli/main.ts",
        "up",
        "--data",
        join(dir, "refused"),
        "--nbd",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--s3",
        "0.0.0.0:0",
      ],
      {},
      30_000,
    );
    expect(r.code).toBe(2);
    expect(r.err.trim().split("\n")).toEqual([
      "blockmend up: --s3 0.0.0.0:0 is reachable from other machines: give --s3-credentials FILE (lines ACCESS_KEY_ID:SECRET_ACCESS_KEY), or listen on 127.0.0.1",
    ]);
  }, 60_000);
});
