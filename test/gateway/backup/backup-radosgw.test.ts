/**
 * Backups end to end against a real S3 server (Ceph radosgw, started by scripts/test.sh)
 * with real processes: gateways and chunk stores (TestCluster), the `blockmend backup`
 * CLI, data written through NBD and compared with `qemu-img compare` over NBD. Without
 * S3_ENDPOINT the file fails; it never skips.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  CreateBucketCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { parseBackupTarget } from "../../../gateway/backup/backup-target.ts";
import { BlobReader } from "../../../gateway/backup/blob-reader.ts";
import { Repository } from "../../../gateway/backup/repository.ts";
import { S3ObjectStore } from "../../../gateway/backup/s3-object-store.ts";
import { walkTree } from "../../../gateway/backup/tree-walk.ts";
import { levelsFor } from "../../../gateway/image/block-map.ts";
import {
  api,
  nbd,
  randomBytes,
  send,
  TestCluster,
  type TestGateway,
  waitFor,
  waitInSync,
} from "../../support/test-cluster.ts";
import { requireTools, runOk } from "../../support/tools.ts";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const ENDPOINT = process.env.S3_ENDPOINT;
const BUCKET = `bm-backup-${Date.now().toString(36)}`;

let s3: S3Client;
let a: TestCluster;
let b: TestCluster;
let gwA: TestGateway;
let gwB: TestGateway;
let dir: string;

/** `s3://BUCKET/PREFIX?endpoint=...` */
function target(prefix: string): string {
  return `s3://${BUCKET}/${prefix}?endpoint=${encodeURIComponent(ENDPOINT!)}&region=us-east-1`;
}

/** Runs `blockmend backup ARGS` against gateway `gw`; resolves with exit code and output. */
async function cli(gw: { url: string }, args: string[], env: Record<string, string> = {}) {
  const api = args[0] === "keygen" ? [] : ["--api", gw.url];
  const proc = Bun.spawn([process.execPath, "cli/main.ts", "backup", ...args, ...api], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, out, err };
}

/** Runs the CLI with --json and parses its answer; throws with its output on failure. */
async function cliJson<T = Record<string, unknown>>(gw: { url: string }, args: string[]): Promise<T> {
  const r = await cli(gw, [...args, "--json"]);
  if (r.code !== 0) throw new Error(`backup ${args.join(" ")} exited ${r.code}: ${r.err}${r.out}`);
  return JSON.parse(r.out) as T;
}

/** Every key under `prefix/` of the bucket. */
async function keys(prefix: string): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({
        Bucket: BUCKET,
        Prefix: `${prefix}/`,
        ...(token && { ContinuationToken: token }),
      }),
    );
    for (const o of page.Contents ?? []) out.push(o.Key!);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

function openRepo(prefix: string, key?: Uint8Array): Promise<Repository> {
  return Repository.open(new S3ObjectStore(parseBackupTarget(target(prefix))), { key });
}

/** Fills image `name` (created here) with `bytes` of random data through NBD with qemu-img. */
async function fillThroughNbd(gw: TestGateway, name: string, bytes: number): Promise<void> {
  await send(gw, "POST", "/v1/images", { name, size: bytes });
  const file = join(dir, `${name}.raw`);
  const f = Bun.file(file).writer();
  for (let at = 0; at < bytes; at += 64 * MiB) f.write(randomBytes(Math.min(64 * MiB, bytes - at)));
  await f.end();
  await runOk(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", file, `${gw.nbd}/${name}`], {
    timeoutMs: 300_000,
  });
  await rm(file);
}

/** `qemu-img compare` of two NBD exports: resolves when identical. */
async function compare(left: string, right: string): Promise<void> {
  const out = await runOk(["qemu-img", "compare", "-f", "raw", "-F", "raw", left, right], {
    timeoutMs: 300_000,
  });
  expect(out).toContain("Images are identical");
}

beforeAll(async () => {
  requireTools("qemu-img", "qemu-io");
  if (!ENDPOINT)
    throw new Error(
      "S3_ENDPOINT is not set: run through scripts/test.sh, or start radosgw with scripts/s3-test-server/start.sh DIR PORT and source DIR/s3.env",
    );
  s3 = new S3Client({ endpoint: ENDPOINT, region: "us-east-1", forcePathStyle: true });
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  dir = await mkdtemp(join(tmpdir(), "blockmend-backup-test-"));
  [a, b] = await Promise.all([TestCluster.start(["a", "b", "w"]), TestCluster.start(["a", "b", "w"])]);
  [gwA, gwB] = await Promise.all([a.startGateway(), b.startGateway()]);
}, 120_000);

afterAll(async () => {
  await a?.close();
  await b?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  // Empty the bucket (radosgw frees the space later, by its own garbage collection).
  if (s3) {
    for (const prefix of ["main", "kill", "small", "enc"]) {
      const all = await keys(prefix).catch(() => []);
      for (let i = 0; i < all.length; i += 1000)
        await s3.send(
          new DeleteObjectsCommand({
            Bucket: BUCKET,
            Delete: { Objects: all.slice(i, i + 1000).map((Key) => ({ Key })) },
          }),
        );
    }
    s3.destroy();
  }
}, 120_000);

describe("backups of a 1 GiB image into radosgw", () => {
  const ids: string[] = [];
  const snaps: string[] = [];

  test("a second backup after changing 16 MiB through NBD uploads at most 1.1x the changed chunks and map pages", async () => {
    await fillThroughNbd(gwA, "disk", GiB);
    const first = await cliJson(gwA, ["create", "disk", "--to", target("main"), "--keep-snapshot"]);
    expect(first.totalBytes).toBe(GiB);
    expect(first.skippedBytes).toBe(0);
    expect(first.uploadedBytes as number).toBeGreaterThanOrEqual(GiB);
    expect(first.uploadedBytes as number).toBeLessThan(1.01 * GiB);
    ids.push(first.id as string);
    snaps.push(first.snapshot as string);
    expect(
      (await api<{ snapshots: { name: string }[] }>(gwA, "/v1/images/disk")).snapshots.map((s) => s.name),
    ).toEqual([first.snapshot as string]);

    // 16 MiB of new random data, one block-map leaf's worth, through NBD.
    const client = await nbd(gwA, "disk");
    await client.write(304 * MiB, randomBytes(16 * MiB));
    await client.flush();
    client.close();
    await send(gwA, "POST", "/v1/images/disk/snapshots", { name: "s2" });
    const second = await cliJson(gwA, ["create", "disk@s2", "--to", target("main")]);
    ids.push(second.id as string);
    snaps.push("s2");
    const changed = 16 * MiB + 2 * 8192; // the chunks, one leaf page and the root
    expect(second.uploadedChunks).toBe(256 + 2);
    expect(second.uploadedBytes as number).toBeLessThanOrEqual(1.1 * changed);
    expect(second.skippedBytes).toBe(GiB - 16 * MiB);
    expect(second.parent).toBe(first.id);
    expect(second.snapshotKept).toBe(true); // a snapshot named by the caller is never removed

    const listed = await cliJson<
      { id: string; image: string; snapshot: string; time: string; size: number }[]
    >(gwA, ["ls", "--from", target("main")]);
    expect(listed.map((l) => [l.id, l.image, l.snapshot, l.size])).toEqual([
      [ids[0]!, "disk", snaps[0]!, GiB],
      [ids[1]!, "disk", "s2", GiB],
    ]);
    expect(Date.parse(listed[0]!.time)).toBeGreaterThan(Date.now() - 3600_000);
  }, 600_000);

  test("both backups restore into a fresh cluster byte for byte; the second downloads only what the first left out", async () => {
    const r1 = await cliJson(gwB, ["restore", ids[0]!, "--from", target("main"), "--to", "disk-r1"]);
    expect(r1.downloadedChunks).toBe(r1.chunks);
    expect(r1.chunks).toBe(16384 + 64 + 1);
    // A store the gateway saw as down for a moment under load got some chunks late: the
    // heal puts them on every placement store, and only then is "left out" exact.
    await waitInSync(gwB, 300_000);
    const r2 = await cliJson(gwB, ["restore", ids[1]!, "--from", target("main"), "--to", "disk-r2"]);
    expect(r2.downloadedChunks).toBe(256 + 2);
    await compare(`${gwA.nbd}/disk@${snaps[0]}`, `${gwB.nbd}/disk-r1`);
    await compare(`${gwA.nbd}/disk@s2`, `${gwB.nbd}/disk-r2`);
  }, 600_000);

  test("verify counts every chunk of the 1 GiB backup", async () => {
    const v = await cliJson(gwA, ["verify", ids[1]!, "--from", target("main")]);
    expect(v).toMatchObject({
      ok: true,
      chunks: 16384 + 65,
      verifiedChunks: 16384 + 65,
      missingChunks: 0,
      corruptChunks: 0,
    });
  }, 300_000);
});

describe("a gateway killed mid-backup", () => {
  test("the rerun on the restarted gateway skips the packs the killed run uploaded", async () => {
    await fillThroughNbd(gwA, "kill", 384 * MiB);
    await send(gwA, "POST", "/v1/images/kill/snapshots", { name: "k" });
    const start = await cli(gwA, ["create", "kill@k", "--to", target("kill"), "--detach", "--json"]);
    expect(start.code).toBe(0);
    const jobId = (JSON.parse(start.out) as { jobId: string }).jobId;
    await waitFor(
      "an index object in the repository",
      async () => (await keys("kill/index")).length >= 1,
      120_000,
    );
    const job = await api<{
      state: string;
      bytesDone: number;
      bytesTotal: number;
      rateBytesPerSecond: number;
    }>(gwA, `/v1/backups/jobs/${jobId}`);
    expect(job.state).toBe("running");
    await a.stopGateway(gwA, "SIGKILL");
    const indexed = (await (await openRepo("kill")).loadIndex()).packs;
    const uploaded = [...indexed.values()].reduce((s, p) => s + p.bytes, 0);
    expect(uploaded).toBeGreaterThan(0);
    expect(uploaded).toBeLessThan(384 * MiB);
    expect((await keys("kill/manifests")).length).toBe(0);

    gwA = await a.startGateway({ stateDir: gwA.stateDir });
    const rerun = await cliJson(gwA, ["create", "kill@k", "--to", target("kill")]);
    expect(rerun.skippedBytes as number).toBeGreaterThanOrEqual(uploaded);
    expect(rerun.uploadedBytes as number).toBeLessThan(384 * MiB - uploaded + 2 * MiB);
    const v = await cliJson(gwA, ["verify", rerun.id as string, "--from", target("kill")]);
    expect(v.ok).toBe(true);
    expect(v.chunks).toBe(6144 + 24 + 1);
  }, 600_000);
});

describe("prune, verify and encryption on a small image", () => {
  const ids: string[] = [];

  test("prune keeps exactly what the remaining backups reference, and the kept one restores", async () => {
    await fillThroughNbd(gwA, "small", 64 * MiB);
    for (let i = 0; i < 3; i++) {
      if (i > 0) {
        const client = await nbd(gwA, "small");
        await client.write(i * 16 * MiB, randomBytes(12 * MiB));
        await client.flush();
        client.close();
      }
      ids.push((await cliJson(gwA, ["create", "small", "--to", target("small")])).id as string);
    }
    await send(gwA, "POST", "/v1/images/small/snapshots", { name: "last" });
    const pruned = await cliJson(gwA, ["prune", "--from", target("small"), "--keep-last", "1"]);
    expect(pruned.kept).toEqual([ids[2]!]);
    expect((pruned.removed as string[]).sort()).toEqual([ids[0]!, ids[1]!].sort());
    expect(pruned.deletedPacks as number).toBeGreaterThan(0);

    const repo = await openRepo("small");
    const index = await repo.loadIndex();
    const indexed = new Set<string>();
    for (const p of index.packs.values()) for (const [h] of p.blobs) indexed.add(h);
    const needed = new Set<string>();
    const reader = new BlobReader(repo, index);
    const m = await repo.readManifest(ids[2]!);
    await walkTree((h) => reader.read(h), m.root, levelsFor(m.size / m.chunkSize), {
      page: (h) => needed.add(h),
      data: (h) => needed.add(h),
    });
    expect(indexed).toEqual(needed);
    expect((await keys("small/packs")).length).toBe(index.packs.size);
    expect((await keys("small/index")).length).toBe(1);
    expect((await keys("small/manifests")).length).toBe(1);

    await cliJson(gwB, ["restore", ids[2]!, "--from", target("small"), "--to", "small-r"]);
    await compare(`${gwA.nbd}/small@last`, `${gwB.nbd}/small-r`);
  }, 600_000);

  test("verify finds a deleted pack and a corrupted pack, and says how many chunks", async () => {
    const ok = await cliJson(gwA, ["verify", ids[2]!, "--from", target("small")]);
    expect(ok).toMatchObject({ ok: true, chunks: 1024 + 4 + 1, missingChunks: 0, corruptChunks: 0 });
    const packs = (await keys("small/packs")).sort();
    const repo = await openRepo("small");
    const index = await repo.loadIndex();
    const data = [...index.packs.values()].filter((p) => p.kind === "data");
    expect(data.length).toBeGreaterThanOrEqual(2);
    const [gone, bad] = [data[0]!, data[1]!];
    expect(packs).toContain(`small/${repo.packKey(gone.name)}`);
    await s3.send(
      new DeleteObjectsCommand({
        Bucket: BUCKET,
        Delete: { Objects: [{ Key: `small/${repo.packKey(gone.name)}` }] },
      }),
    );
    const obj = await s3.send(
      new GetObjectCommand({ Bucket: BUCKET, Key: `small/${repo.packKey(bad.name)}` }),
    );
    const bytes = await obj.Body!.transformToByteArray();
    bytes[bad.blobs[3]![1] + 10]! ^= 0x40;
    await s3.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: `small/${repo.packKey(bad.name)}`, Body: bytes }),
    );
    const r = await cli(gwA, ["verify", ids[2]!, "--from", target("small"), "--json"]);
    expect(r.code).toBe(1);
    const v = JSON.parse(r.out) as Record<string, unknown>;
    expect(v).toMatchObject({ ok: false, missingChunks: gone.blobs.length, corruptChunks: 1 });
    expect(v.missingPacks).toEqual([gone.name]);
    expect(v.damagedPacks).toEqual([bad.name]);
    const text = await cli(gwA, ["verify", ids[2]!, "--from", target("small")]);
    expect(text.out).toContain(
      `DAMAGED: ${1029 - gone.blobs.length - 1} of 1029 chunks verified, ${gone.blobs.length} missing, 1 corrupt`,
    );
  }, 300_000);

  test("an encrypted backup round-trips, and the bucket learns nothing from names or contents", async () => {
    const keyFile = join(dir, "backup.key");
    const gen = await cli(gwA, ["keygen", keyFile]);
    expect(gen.code).toBe(0);
    const r = await cliJson(gwA, ["create", "small@last", "--to", target("enc"), "--key-file", keyFile]);
    const all = await keys("enc");
    expect(all).toContain("enc/config");
    for (const k of all.filter((k) => k !== "enc/config")) {
      expect(k.slice(k.lastIndexOf("/") + 1)).toMatch(/^[0-9a-f]{64}$/);
      const body = await (
        await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: k }))
      ).Body!.transformToString("latin1");
      // Names as any plaintext of ours would hold them (a JSON string's quote beside them):
      // a bare 4-byte "last" turns up by chance in a 64 MiB pack about once in 60 runs.
      for (const secret of [`"small`, `last"`, r.id as string, `"image"`])
        expect(body.includes(secret)).toBe(false);
    }
    const listed = await cliJson<{ id: string }[]>(gwB, [
      "ls",
      "--from",
      target("enc"),
      "--key-file",
      keyFile,
    ]);
    expect(listed.map((l) => l.id)).toEqual([r.id as string]);
    await cliJson(gwB, [
      "restore",
      r.id as string,
      "--from",
      target("enc"),
      "--to",
      "small-enc",
      "--key-file",
      keyFile,
    ]);
    await compare(`${gwA.nbd}/small@last`, `${gwB.nbd}/small-enc`);

    const otherKey = join(dir, "other.key");
    await cli(gwA, ["keygen", otherKey]);
    const wrong = await cli(gwB, ["ls", "--from", target("enc"), "--key-file", otherKey]);
    expect(wrong.code).toBe(1);
    expect(wrong.err).toContain("wrong key");
    const none = await cli(gwB, ["ls", "--from", target("enc")]);
    expect(none.err).toContain("is encrypted: give its key file");
  }, 300_000);
});

describe("credentials", () => {
  test("wrong credentials are a clear error, and no secret shows in status or the gateway's output", async () => {
    const secret = "wrong-secret-0123456789-SHOULD-NEVER-SHOW";
    for (const args of [
      ["ls", "--from", target("main")],
      ["create", "small", "--to", target("other")],
    ]) {
      const r = await cli(gwA, args, { AWS_SECRET_ACCESS_KEY: secret });
      expect(r.code).toBe(1);
      expect(r.err).toContain("refused the credentials");
      expect(r.err).toMatch(/SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied/);
      expect(r.err).not.toContain(secret);
    }
    const unknown = await cli(gwA, ["ls", "--from", target("main")], {
      AWS_ACCESS_KEY_ID: "NOSUCHKEY0000000000",
    });
    expect(unknown.err).toContain("refused the credentials");
    const jobs = JSON.stringify(await api(gwA, "/v1/backups/jobs"));
    for (const s of [secret, process.env.AWS_SECRET_ACCESS_KEY!]) {
      expect(jobs).not.toContain(s);
      expect(gwA.output()).not.toContain(s);
    }
    expect(JSON.parse(jobs).jobs.length).toBeGreaterThan(0);
    const none = await cli(gwA, ["ls", "--from", target("main")], {
      AWS_ACCESS_KEY_ID: "",
      AWS_SECRET_ACCESS_KEY: "",
      AWS_PROFILE: "no-such-profile-here",
    });
    expect(none.code).toBe(1);
    expect(none.err).toContain("No credentials for the backup target");
  }, 120_000);
});
