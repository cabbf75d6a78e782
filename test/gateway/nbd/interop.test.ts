/**
 * Interop with real NBD clients: qemu-img, qemu-io (qemu-utils) and nbdinfo,
 * nbdcopy (libnbd-bin), against startNbdServer over MemoryDevices on
 * 127.0.0.1, port 0. A missing tool fails the test with the install line: in
 * CI a missing tool must never look like a pass.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BlockDevice, ExportProvider } from "../../../gateway/nbd/block-device.ts";
import { MEMORY_BLOCK_SIZE, MemoryDevice } from "../../../gateway/nbd/memory-device.ts";
import { type NbdServer, startNbdServer } from "../../../gateway/nbd/nbd-server.ts";

const INSTALL = "apt-get update && apt-get install -y qemu-utils libnbd-bin";
const TOOLS = ["qemu-img", "qemu-io", "nbdinfo", "nbdcopy"] as const;
const MiB = 1024 * 1024;
const COMMAND_TIMEOUT_MS = 30_000;

function requireTools(...names: (typeof TOOLS)[number][]): void {
  const missing = names.filter((name) => Bun.which(name) === null);
  if (missing.length > 0) {
    throw new Error(`NBD interop tools missing: ${missing.join(", ")}. Install them with: ${INSTALL}`);
  }
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const running = new Set<Bun.Subprocess>();

/** Runs a command to completion (killed after a timeout), capturing its output. */
async function run(cmd: string[]): Promise<RunResult> {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  running.add(proc);
  const timer = setTimeout(() => proc.kill("SIGKILL"), COMMAND_TIMEOUT_MS);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
    running.delete(proc);
  }
}

/** Runs a command that must succeed; the failure message shows its output. */
async function ok(cmd: string[]): Promise<string> {
  const r = await run(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** qemu-io on an NBD URI with the given commands; every command must succeed (qemu-io exits 1 otherwise). */
async function qemuIo(uri: string, commands: string[], extra: string[] = []): Promise<string> {
  const out = await ok(["qemu-io", "-f", "raw", ...extra, ...commands.flatMap((c) => ["-c", c]), uri]);
  expect(out).not.toContain("failed");
  return out;
}

class Exports implements ExportProvider {
  readonly devices = new Map<string, MemoryDevice>();
  readonly openedByName = new Map<string, number>();
  opened = 0;
  released = 0;
  async list() {
    return [...this.devices].map(([name, d]) => ({
      name,
      ...(d.description ? { description: d.description } : {}),
    }));
  }
  async open(name: string): Promise<BlockDevice | null> {
    const device = this.devices.get(name) ?? null;
    if (device) {
      this.opened++;
      this.openedByName.set(name, (this.openedByName.get(name) ?? 0) + 1);
    }
    return device;
  }
  async release() {
    this.released++;
  }
}

let exports: Exports;
let server: NbdServer;
let dir: string;
let base: string;

/** A fresh export for one test. */
function addExport(name: string, size: number, options: ConstructorParameters<typeof MemoryDevice>[1] = {}) {
  const device = new MemoryDevice(size, options);
  exports.devices.set(name, device);
  return { device, uri: `${base}/${name}` };
}

/** Deterministic test data with zero runs in it (so sparse copies have holes to skip). */
function testImage(size: number): Uint8Array {
  const data = new Uint8Array(size);
  let x = 12345;
  for (let i = 0; i < size; i += 4) {
    if (Math.floor(i / MEMORY_BLOCK_SIZE) % 3 === 1) continue; // every third 64 KiB block stays zero
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    data[i] = x & 0xff;
    data[i + 1] = (x >>> 8) & 0xff;
    data[i + 2] = (x >>> 16) & 0xff;
    data[i + 3] = x >>> 24;
  }
  return data;
}

beforeAll(async () => {
  exports = new Exports();
  server = await startNbdServer(exports, { hostname: "127.0.0.1", port: 0 });
  base = `nbd://127.0.0.1:${server.port}`;
  dir = await mkdtemp(join(tmpdir(), "blockmend-nbd-"));
});

afterAll(async () => {
  for (const proc of running) proc.kill("SIGKILL");
  await Promise.all([...running].map((p) => p.exited));
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  expect(exports.released).toBe(exports.opened);
});

describe("nbdinfo", () => {
  test("--json reports size, block sizes, flags, contexts and description", async () => {
    requireTools("nbdinfo");
    const { uri } = addExport("info-disk", 64 * MiB, { description: "a test disk" });
    const info = JSON.parse(await ok(["nbdinfo", "--json", uri]));
    expect(info.protocol).toBe("newstyle-fixed");
    expect(info.structured).toBe(true);
    expect(info.exports).toHaveLength(1);
    expect(info.exports[0]).toMatchObject({
      "export-name": "info-disk",
      description: "a test disk",
      "export-size": 64 * MiB,
      is_read_only: false,
      can_flush: true,
      can_fua: true,
      can_trim: true,
      can_zero: true,
      can_fast_zero: true,
      can_multi_conn: true,
      can_df: true,
      can_cache: false,
      is_rotational: false,
      block_size_minimum: 1,
      block_size_preferred: 4096,
      block_size_maximum: 32 * MiB,
    });
    expect(info.exports[0].contexts).toContain("base:allocation");
  });

  test("a read-only export advertises no write features", async () => {
    requireTools("nbdinfo");
    const { uri } = addExport("info-img@snap", 16 * MiB, {
      capabilities: { readOnly: true },
      blockSizes: { minimum: 512, preferred: 65536, maximum: 4 * MiB },
    });
    const info = JSON.parse(await ok(["nbdinfo", "--json", uri])).exports[0];
    expect(info).toMatchObject({
      "export-name": "info-img@snap",
      is_read_only: true,
      can_trim: false,
      can_zero: false,
      can_fua: false,
      block_size_minimum: 512,
      block_size_preferred: 65536,
      block_size_maximum: 4 * MiB,
    });
  });

  test("--list shows every export", async () => {
    requireTools("nbdinfo");
    addExport("list-a", MiB);
    addExport("list-b", MiB);
    const listed = JSON.parse(await ok(["nbdinfo", "--list", "--json", `${base}/`]));
    const names = listed.exports.map((e: { "export-name": string }) => e["export-name"]);
    expect(names).toContain("list-a");
    expect(names).toContain("list-b");
  });

  test("--map shows data and holes (base:allocation)", async () => {
    requireTools("nbdinfo");
    const { device, uri } = addExport("map-disk", 4 * MiB);
    await device.write(MiB, new Uint8Array(100_000).fill(1), { fua: false });
    const map = JSON.parse(await ok(["nbdinfo", "--map", "--json", uri]));
    expect(map).toEqual([
      { offset: 0, length: MiB, type: 3, description: "hole,zero" },
      { offset: MiB, length: 2 * MEMORY_BLOCK_SIZE, type: 0, description: "data" },
      {
        offset: MiB + 2 * MEMORY_BLOCK_SIZE,
        length: 3 * MiB - 2 * MEMORY_BLOCK_SIZE,
        type: 3,
        description: "hole,zero",
      },
    ]);
  });

  test("an unknown export name fails cleanly, and the server keeps serving", async () => {
    requireTools("nbdinfo");
    const r = await run(["nbdinfo", `${base}/no-such-export`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("no-such-export");
    const { uri } = addExport("after-unknown", MiB);
    expect(JSON.parse(await ok(["nbdinfo", "--json", uri])).exports[0]["export-size"]).toBe(MiB);
  });
});

describe("qemu-img", () => {
  test("info sees a raw disk of the right size", async () => {
    requireTools("qemu-img");
    const { uri } = addExport("qemu-info", 64 * MiB);
    const info = JSON.parse(await ok(["qemu-img", "info", "--output=json", uri]));
    expect(info["virtual-size"]).toBe(64 * MiB);
    expect(info.format).toBe("raw");
  });

  test("an unknown export is reported as not available", async () => {
    requireTools("qemu-img");
    const r = await run(["qemu-img", "info", `${base}/missing`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("Requested export not available");
  });

  test("convert in from a raw file and out again, compare says identical", async () => {
    requireTools("qemu-img");
    const size = 8 * MiB;
    const src = join(dir, "convert-src.raw");
    const out = join(dir, "convert-out.raw");
    const data = testImage(size);
    await writeFile(src, data);
    const { device, uri } = addExport("convert-dst", size);
    await ok(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, uri]);
    expect(Buffer.compare(await device.read(0, size), data)).toBe(0);
    // Zero blocks were not written as data: the target stayed sparse.
    expect(device.allocatedBlocks).toBeLessThan(size / MEMORY_BLOCK_SIZE);
    const compared = await ok(["qemu-img", "compare", "-f", "raw", "-F", "raw", src, uri]);
    expect(compared).toContain("Images are identical");
    await ok(["qemu-img", "convert", "-f", "raw", "-O", "raw", uri, out]);
    expect(Buffer.compare(new Uint8Array(await readFile(out)), data)).toBe(0);
  });

  test("compare notices a difference", async () => {
    requireTools("qemu-img");
    const size = MiB;
    const src = join(dir, "compare-src.raw");
    await writeFile(src, new Uint8Array(size).fill(3));
    const { device, uri } = addExport("compare-dst", size);
    await device.write(0, new Uint8Array(size).fill(3), { fua: false });
    await device.write(12345, new Uint8Array([4]), { fua: false });
    const r = await run(["qemu-img", "compare", "-f", "raw", "-F", "raw", src, uri]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("Content mismatch at offset 12288");
  });
});

describe("qemu-io", () => {
  test("unaligned writes and reads back, across a 64 KiB block boundary", async () => {
    requireTools("qemu-io");
    const { device, uri } = addExport("qio-unaligned", 16 * MiB);
    await qemuIo(uri, [
      "write -P 0xab 1000 5000",
      "read -P 0xab 1000 5000",
      "read -P 0 0 1000",
      "read -P 0 6000 1000",
      "write -P 0xcd 65530 100",
      "read -P 0xcd 65530 100",
      "read -P 0xab 1000 5000",
    ]);
    expect(await device.read(999, 2)).toEqual(new Uint8Array([0, 0xab]));
    expect(await device.read(65529, 102)).toEqual(new Uint8Array([0, ...new Array(100).fill(0xcd), 0]));
  });

  test("discard (TRIM) punches holes that read as zeroes", async () => {
    requireTools("qemu-io");
    const { device, uri } = addExport("qio-discard", 4 * MiB);
    await qemuIo(uri, ["write -P 0x11 0 2M", "discard 0 1M", "read -P 0 0 1M", "read -P 0x11 1M 1M"]);
    expect(device.allocatedBlocks).toBe(MiB / MEMORY_BLOCK_SIZE);
  });

  test("write -z sends WRITE_ZEROES: allocated zeroes, or holes with -u", async () => {
    requireTools("qemu-io");
    const { device, uri } = addExport("qio-zero", 4 * MiB);
    await qemuIo(uri, [
      "write -P 0x22 0 4M",
      "write -z 0 1M",
      "write -z -u 1M 1M",
      "read -P 0 0 2M",
      "read -P 0x22 2M 2M",
    ]);
    const status = await device.blockStatus(0, 4 * MiB);
    expect(status).toEqual([
      { length: MiB, hole: false, zero: false }, // NO_HOLE: still allocated
      { length: MiB, hole: true, zero: true }, // may unmap: punched
      { length: 2 * MiB, hole: false, zero: false },
    ]);
  });

  test("aio_write and aio_read keep several requests in flight", async () => {
    requireTools("qemu-io");
    const { device, uri } = addExport("qio-aio", 16 * MiB);
    const writes = Array.from(
      { length: 16 },
      (_, i) => `aio_write -P ${i + 1} ${i * 1024 * 1024 + 100} 300000`,
    );
    const reads = Array.from(
      { length: 16 },
      (_, i) => `aio_read -P ${i + 1} ${i * 1024 * 1024 + 100} 300000`,
    );
    await qemuIo(uri, [...writes, "aio_flush", ...reads, "aio_flush"]);
    expect(await device.read(15 * MiB + 100, 1)).toEqual(new Uint8Array([16]));
    expect(device.flushes).toBeGreaterThanOrEqual(1);
  });

  test("multi-conn: write on one connection, flush on another, read back on a third", async () => {
    requireTools("qemu-io", "nbdinfo");
    const { device, uri } = addExport("qio-multi", 8 * MiB);
    expect(JSON.parse(await ok(["nbdinfo", "--json", uri])).exports[0].can_multi_conn).toBe(true);
    // Two sessions at the same time: a slow writer and a second connection that flushes meanwhile.
    const writer = qemuIo(
      uri,
      Array.from({ length: 32 }, (_, i) => `write -P 0x5a ${i * 256 * 1024} 256k`),
    );
    const flusher = qemuIo(uri, ["flush", "flush", "flush"]);
    await Promise.all([writer, flusher]);
    const flushesBefore = device.flushes;
    await qemuIo(uri, ["flush"]);
    expect(device.flushes).toBeGreaterThan(flushesBefore);
    await qemuIo(uri, ["read -P 0x5a 0 8M"], ["-r"]);
  });

  test("a read-only export refuses writes", async () => {
    requireTools("qemu-io");
    const { device, uri } = addExport("qio-img@snap", MiB, { capabilities: { readOnly: true } });
    const rw = await run(["qemu-io", "-f", "raw", "-c", "write -P 1 0 4k", uri]);
    expect(rw.code).not.toBe(0);
    const ro = await run(["qemu-io", "-r", "-f", "raw", "-c", "write -P 1 0 4k", uri]);
    expect(ro.code).not.toBe(0);
    expect(ro.stdout + ro.stderr).toContain("read-only");
    await qemuIo(uri, ["read -P 0 0 4k"], ["-r"]);
    expect(device.allocatedBlocks).toBe(0);
  });

  test("a client sending garbage is disconnected while a concurrent qemu-io session is unaffected", async () => {
    requireTools("qemu-io");
    const { uri } = addExport("qio-garbage", 32 * MiB);
    const session = qemuIo(
      uri,
      Array.from({ length: 64 }, (_, i) => [
        `write -P 0x77 ${i * 512 * 1024} 512k`,
        `read -P 0x77 ${i * 512 * 1024} 512k`,
      ]).flat(),
    );
    const closedByServer = await new Promise<boolean>((resolve, reject) => {
      const socket = net.connect(server.port, "127.0.0.1");
      socket.on("error", reject);
      let greeted = false;
      socket.on("data", () => {
        if (greeted) return;
        greeted = true;
        socket.write(new Uint8Array([0, 0, 0, 3])); // client flags
        socket.write(new TextEncoder().encode("this is not an NBD option, nor a request ".repeat(20)));
      });
      socket.on("close", () => resolve(true));
      setTimeout(() => {
        socket.destroy();
        resolve(false);
      }, 10_000);
    });
    expect(closedByServer).toBe(true);
    await session;
  });
});

describe("nbdcopy", () => {
  test("copies a raw file in and back out (several connections, sparse-aware)", async () => {
    requireTools("nbdcopy");
    const size = 16 * MiB;
    const src = join(dir, "nbdcopy-src.raw");
    const out = join(dir, "nbdcopy-out.raw");
    const data = testImage(size);
    await writeFile(src, data);
    const { device, uri } = addExport("nbdcopy-dst", size);
    await ok(["nbdcopy", "--flush", src, uri]);
    // CAN_MULTI_CONN lets nbdcopy open several connections (4 by default).
    expect(exports.openedByName.get("nbdcopy-dst")).toBeGreaterThan(1);
    expect(Buffer.compare(await device.read(0, size), data)).toBe(0);
    expect(device.flushes).toBeGreaterThanOrEqual(1);
    await ok(["nbdcopy", uri, out]);
    expect(Buffer.compare(new Uint8Array(await readFile(out)), data)).toBe(0);
  });

  test("copies between two exports of the same server", async () => {
    requireTools("nbdcopy", "qemu-img");
    const size = 8 * MiB;
    const { device: a, uri: uriA } = addExport("nbdcopy-a", size);
    const { device: b, uri: uriB } = addExport("nbdcopy-b", size);
    await a.write(0, testImage(size), { fua: false });
    await ok(["nbdcopy", uriA, uriB]);
    expect(Buffer.compare(await b.read(0, size), await a.read(0, size))).toBe(0);
    expect(await ok(["qemu-img", "compare", "-f", "raw", "-F", "raw", uriA, uriB])).toContain(
      "Images are identical",
    );
  });
});
