/**
 * The whole gateway (`blockmend up`, a real process with three file stores) driven by
 * QEMU's and libnbd's own clients, as a hypervisor would.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAll, type StartedProcess, startBlockmend } from "../support/processes.ts";
import { requireTools, run, runOk } from "../support/tools.ts";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
let dir: string;
let gw: StartedProcess;
let nbd: string;

async function startGateway(): Promise<void> {
  gw = await startBlockmend([
    "up",
    "--data",
    join(dir, "data"),
    "--nbd",
    "127.0.0.1:0",
    "--http",
    "127.0.0.1:0",
  ]);
  nbd = /(nbd:\/\/127\.0\.0\.1:\d+)/.exec(gw.output())![1]!;
}

async function api(path: string, init?: RequestInit): Promise<Response> {
  return fetch(`${gw.url}${path}`, init);
}

async function createImage(name: string, size: number): Promise<void> {
  const res = await api("/v1/images", {
    method: "POST",
    body: JSON.stringify({ name, size }),
    headers: { "content-type": "application/json" },
  });
  expect(res.status).toBe(201);
}

beforeAll(async () => {
  requireTools("qemu-img", "qemu-io", "nbdinfo", "nbdcopy");
  dir = await mkdtemp(join(tmpdir(), "blockmend-gw-"));
  await startGateway();
});

afterAll(async () => {
  await killAll();
  await rm(dir, { recursive: true, force: true });
});

describe("gateway with real NBD clients", () => {
  test("a 1 GiB image with random and zero regions round-trips byte-identical and sparse through qemu-img", async () => {
    const src = join(dir, "src.raw");
    const out = join(dir, "out.raw");
    const fh = await open(src, "w");
    await fh.truncate(GiB);
    const regions = [
      [0, 3 * MiB + 517],
      [20 * MiB + 4096, 8 * MiB],
      [300 * MiB + 12345, 65536],
      [700 * MiB, 5 * MiB],
      [GiB - 2 * MiB, 2 * MiB],
    ] as const;
    for (const [off, len] of regions) {
      const buf = new Uint8Array(len);
      for (let o = 0; o < len; o += 65536) crypto.getRandomValues(buf.subarray(o, Math.min(len, o + 65536)));
      await fh.write(buf, 0, len, off);
    }
    await fh.close();
    await createImage("disk1g", GiB);
    await runOk(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, `${nbd}/disk1g`]);
    await runOk(["qemu-img", "convert", "-f", "raw", "-O", "raw", `${nbd}/disk1g`, out]);
    expect(await runOk(["qemu-img", "compare", "-f", "raw", "-F", "raw", src, out])).toContain(
      "Images are identical",
    );
    // Sparse: qemu-img skipped the holes blockmend reported, so the copy allocates ~the data only.
    const st = await stat(out);
    expect(st.size).toBe(GiB);
    expect(st.blocks * 512).toBeLessThan(64 * MiB);
    const map = await runOk(["nbdinfo", "--map", `${nbd}/disk1g`]);
    expect(map).toContain("hole,zero");
    const info = JSON.parse(await runOk(["qemu-img", "info", "--output=json", `${nbd}/disk1g`]));
    expect(info["virtual-size"]).toBe(GiB);
    const qmap = JSON.parse(
      await runOk(["qemu-img", "map", "--output=json", "-f", "raw", `${nbd}/disk1g`]),
    ) as { data: boolean; length: number }[];
    const dataBytes = qmap.filter((e) => e.data).reduce((a, e) => a + e.length, 0);
    expect(dataBytes).toBeLessThan(32 * MiB);
    expect(dataBytes).toBeGreaterThanOrEqual(18 * MiB);
  }, 240_000);

  test("qemu-io pattern writes and reads at unaligned offsets, discard, write -z, and requests in flight", async () => {
    await createImage("io", 64 * MiB);
    const cmds: string[] = [];
    const checks: string[] = [];
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    for (let i = 0; i < 12; i++) {
      const off = i * 5 * MiB + rnd(MiB) + 1;
      const len = 1 + rnd(300_000);
      const p = `0x${(0x10 + i).toString(16)}`;
      cmds.push("-c", `write -P ${p} ${off} ${len}`);
      checks.push("-c", `read -P ${p} ${off} ${len}`);
    }
    await runOk(["qemu-io", "-f", "raw", ...cmds, `${nbd}/io`]);
    const r = await runOk(["qemu-io", "-f", "raw", ...checks, `${nbd}/io`]);
    expect(r).not.toContain("Pattern verification failed");
    // discard and write -z read back as zeros, around data that stays.
    await runOk([
      "qemu-io",
      "-f",
      "raw",
      "-c",
      "write -P 0x77 0 1M",
      "-c",
      "discard 65536 131072",
      "-c",
      "write -z 300000 5000",
      `${nbd}/io`,
    ]);
    const z = await runOk([
      "qemu-io",
      "-f",
      "raw",
      "-c",
      "read -P 0 65536 131072",
      "-c",
      "read -P 0 300000 5000",
      "-c",
      "read -P 0x77 0 65536",
      "-c",
      "read -P 0x77 305000 100000",
      `${nbd}/io`,
    ]);
    expect(z).not.toContain("Pattern verification failed");
    // Several requests in flight on one connection.
    const aio = [
      "-c",
      "aio_write -P 0x31 0 65536",
      "-c",
      "aio_write -P 0x32 1048576 4096",
      "-c",
      "aio_write -P 0x33 2097152 1000",
      "-c",
      "aio_flush",
    ];
    await runOk(["qemu-io", "-f", "raw", ...aio, `${nbd}/io`]);
    const back = await runOk([
      "qemu-io",
      "-f",
      "raw",
      "-c",
      "read -P 0x31 0 65536",
      "-c",
      "read -P 0x32 1048576 4096",
      "-c",
      "read -P 0x33 2097152 1000",
      `${nbd}/io`,
    ]);
    expect(back).not.toContain("Pattern verification failed");
  }, 120_000);

  test("nbdinfo reports size and block sizes; nbdcopy copies in and out", async () => {
    await createImage("cp", 32 * MiB);
    const info = JSON.parse(await runOk(["nbdinfo", "--json", `${nbd}/cp`]));
    const exp = info.exports[0];
    expect(exp["export-size"]).toBe(32 * MiB);
    expect(exp.block_size_preferred).toBe(65536);
    expect(exp.can_multi_conn).toBe(true);
    const src = join(dir, "cp-src.raw");
    const fh = await open(src, "w");
    await fh.truncate(32 * MiB);
    const buf = new Uint8Array(3 * MiB);
    crypto.getRandomValues(buf.subarray(0, 65536));
    buf.copyWithin(65536, 0, 65536);
    await fh.write(buf, 0, buf.length, 5 * MiB + 333);
    await fh.close();
    await runOk(["nbdcopy", src, `${nbd}/cp`]);
    const out = join(dir, "cp-out.raw");
    await runOk(["nbdcopy", `${nbd}/cp`, out]);
    expect(await runOk(["qemu-img", "compare", "-f", "raw", "-F", "raw", src, out])).toContain("identical");
  }, 60_000);

  test("multi-conn: a write on one connection, a flush on another, read back on the first", async () => {
    await createImage("mc", 16 * MiB);
    // qemu-io's commands run in order on one connection; a second process opens another.
    // Connection 1 writes without flushing and stays open while connection 2 flushes.
    const first = Bun.spawn(["qemu-io", "-f", "raw", `${nbd}/mc`], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    const say = async (line: string) => {
      first.stdin.write(`${line}\n`);
      await first.stdin.flush();
    };
    await say("write -P 0x5a 4096 65536");
    await Bun.sleep(500);
    await runOk(["qemu-io", "-f", "raw", "-c", "flush", `${nbd}/mc`]);
    await say("read -P 0x5a 4096 65536");
    await say("quit");
    first.stdin.end();
    const out = await new Response(first.stdout).text();
    await first.exited;
    expect(out).toContain("wrote 65536/65536");
    expect(out).toContain("read 65536/65536");
    expect(out).not.toContain("Pattern verification failed");
    // The flush from connection 2 made connection 1's write durable: the head moved on.
    const head = (await (await api("/v1/images/mc")).json()) as { generation: number };
    expect(head.generation).toBeGreaterThan(2);
  }, 60_000);

  test("a snapshot exports read-only over NBD", async () => {
    await createImage("snapme", 8 * MiB);
    await runOk(["qemu-io", "-f", "raw", "-c", "write -P 0x42 0 1M", `${nbd}/snapme`]);
    const res = await api("/v1/images/snapme/snapshots", {
      method: "POST",
      body: JSON.stringify({ name: "s1" }),
      headers: { "content-type": "application/json" },
    });
    expect(res.status).toBe(201);
    await runOk(["qemu-io", "-f", "raw", "-c", "write -P 0x43 0 1M", `${nbd}/snapme`]);
    const info = JSON.parse(await runOk(["nbdinfo", "--json", `${nbd}/snapme@s1`]));
    expect(info.exports[0].is_read_only).toBe(true);
    expect(
      await runOk(["qemu-io", "-r", "-f", "raw", "-c", "read -P 0x42 0 1M", `${nbd}/snapme@s1`]),
    ).not.toContain("failed");
    const w = await run(["qemu-io", "-f", "raw", "-c", "write -P 1 0 4096", `${nbd}/snapme@s1`]);
    expect(w.out.toLowerCase()).toMatch(/read-only|permission|not permitted/);
  }, 60_000);

  test("flushed writes survive a SIGKILL of the gateway; the image is never corrupt", async () => {
    await createImage("crash", 16 * MiB);
    await runOk(["qemu-io", "-f", "raw", "-c", "write -P 0x61 0 2M", "-c", "flush", `${nbd}/crash`]);
    // Unflushed writes may be lost; they must not break anything.
    const unflushed = Bun.spawn(["qemu-io", "-f", "raw", "-c", "write -P 0x62 4M 4M", `${nbd}/crash`], {
      stdout: "ignore",
      stderr: "ignore",
    });
    await Bun.sleep(50);
    await gw.kill("SIGKILL");
    unflushed.kill("SIGKILL");
    await unflushed.exited;
    await startGateway();
    expect(await runOk(["qemu-io", "-f", "raw", "-c", "read -P 0x61 0 2M", `${nbd}/crash`])).not.toContain(
      "failed",
    );
    const tail = await runOk(["qemu-io", "-f", "raw", "-c", "read -v 4M 512", `${nbd}/crash`]);
    expect(tail).toMatch(/62 62 62|00 00 00/);
    // Earlier images are intact too.
    expect(
      await runOk(["qemu-io", "-r", "-f", "raw", "-c", "read -P 0x42 0 1M", `${nbd}/snapme@s1`]),
    ).not.toContain("failed");
  }, 60_000);
});
