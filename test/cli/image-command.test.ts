/**
 * `blockmend image ...` as a user runs it: the real CLI in a child process against a
 * gateway HTTP API served on 127.0.0.1 over memory stores.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createGatewayApp } from "../../gateway/http/http-api.ts";
import type { ImageInfo } from "../../gateway/http/http-wire.ts";
import type { ImageService } from "../../gateway/image/image-service.ts";
import { type HttpServer, serveHttp } from "../../runtime/serve-http.ts";
import { imageService } from "../gateway/image/_image-fixture.ts";

const MiB = 1024 * 1024;
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const ENTRY = fileURLToPath(new URL("./_image-cli.ts", import.meta.url));

let service: ImageService;
let server: HttpServer;
let dir: string;

beforeAll(async () => {
  service = (await imageService()).service;
  server = await serveHttp(createGatewayApp(service).fetch, { hostname: "127.0.0.1", port: 0 });
  dir = await mkdtemp(join(tmpdir(), "blockmend-image-cli-"));
});

afterAll(async () => {
  await server?.close();
  await service?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs `blockmend image ...args` with BLOCKMEND_API pointing at the test gateway. */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([process.execPath, ENTRY, ...args], {
    cwd: ROOT,
    env: { ...process.env, BLOCKMEND_API: server.url },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** Like {@link cli}, failing the test with the output when the command fails. */
async function ok(...args: string[]): Promise<string> {
  const r = await cli(...args);
  if (r.code !== 0)
    throw new Error(`blockmend image ${args.join(" ")} exited ${r.code}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** A file's bytes. */
async function readBytes(path: string): Promise<Uint8Array> {
  return new Uint8Array(await readFile(path));
}

/** Random bytes (getRandomValues fills at most 64 KiB at a time). */
function random(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += 65536)
    crypto.getRandomValues(out.subarray(i, Math.min(length, i + 65536)));
  return out;
}

/**
 * 20 MiB in five 4 MiB pieces: random, zero, half a MiB of random then zero, zero, zero
 * but for the last 100 KiB. Import sends three pieces and skips two.
 */
function diskImage(): Uint8Array {
  const disk = new Uint8Array(20 * MiB);
  disk.set(random(4 * MiB), 0);
  disk.set(random(MiB / 2), 8 * MiB);
  disk.set(random(100 * 1024), 20 * MiB - 100 * 1024);
  return disk;
}

/** `N bytes sent, M bytes skipped` from an import or export summary line. */
function counts(line: string): { sent: number; skipped: number } {
  const m = /(\d+) bytes (?:sent|downloaded), (\d+) bytes skipped/.exec(line);
  if (!m) throw new Error(`No byte counts in: ${line}`);
  return { sent: Number(m[1]), skipped: Number(m[2]) };
}

describe("blockmend image", () => {
  test("import, export (sparse), snapshot, clone, ls, info and rm round-trip a 20 MiB disk", async () => {
    const disk = diskImage();
    const src = join(dir, "disk.raw");
    await writeFile(src, disk);

    // import creates the image with the file's size and skips the all-zero pieces
    const imported = await ok("import", src, "web01");
    expect(imported).toContain("imported");
    expect(imported).toContain("(created)");
    expect(counts(imported)).toEqual({ sent: 12 * MiB, skipped: 8 * MiB });

    // export downloads only data extents (64 KiB chunks) and writes a sparse file
    const out = join(dir, "out.raw");
    const exported = await ok("export", "web01", out);
    const dataBytes = 4 * MiB + MiB / 2 + 2 * 65536; // the last 100 KiB touch two chunks
    expect(counts(exported)).toEqual({ sent: dataBytes, skipped: 20 * MiB - dataBytes });
    expect(await readBytes(out)).toEqual(disk);
    const st = await stat(out);
    expect(st.size).toBe(20 * MiB);
    expect(st.blocks * 512).toBeLessThan(st.size / 2);

    // ls and info
    const list = await ok("ls");
    expect(list.split("\n")[0]).toMatch(/^NAME\s+SIZE\s+CHUNK\s+GENERATION\s+IN SYNC\s+SNAPSHOTS$/);
    expect(list).toMatch(/^web01\s+20\.0 MiB\s+64\.0 KiB\s+\d+\s+3\/3\s+-$/m);
    expect(await ok("info", "web01")).toContain(`size:        20.0 MiB (${20 * MiB} bytes)`);

    // snapshot, then overwrite the image with another disk: the snapshot keeps the first
    expect(await ok("snapshot", "web01", "s1")).toContain("created snapshot web01@s1");
    const disk2 = new Uint8Array(20 * MiB);
    disk2.set(random(MiB), 12 * MiB);
    const src2 = join(dir, "disk2.raw");
    await writeFile(src2, disk2);
    const reimported = await ok("import", src2, "web01");
    expect(reimported).not.toContain("(created)");
    expect(counts(reimported)).toEqual({ sent: 4 * MiB, skipped: 16 * MiB });
    await ok("export", "web01", out);
    expect(await readBytes(out)).toEqual(disk2);
    await ok("export", "web01@s1", out);
    expect(await readBytes(out)).toEqual(disk);

    // clone the snapshot
    expect(await ok("clone", "web01@s1", "web02")).toContain("cloned web01@s1 to web02");
    await ok("export", "web02", out);
    expect(await readBytes(out)).toEqual(disk);
    const infos = JSON.parse(await ok("ls", "--json")) as ImageInfo[];
    expect(infos.map((i) => i.name)).toEqual(["web01", "web02"]);
    expect(infos[0]!.snapshots.map((s) => s.name)).toEqual(["s1"]);

    // rm a snapshot, then images
    expect(await ok("rm", "web01@s1")).toContain("removed snapshot web01@s1");
    expect((JSON.parse(await ok("info", "web01", "--json")) as ImageInfo).snapshots).toEqual([]);
    expect(await ok("rm", "web02")).toContain("removed image web02");
    expect(await ok("rm", "web01")).toContain("removed image web01");
    expect((await ok("ls")).trim()).toMatch(/^NAME/);
    expect((await ok("ls")).trim().split("\n")).toHaveLength(1);
  }, 60_000);

  test("create takes size suffixes and --chunk-size; an odd-sized import rounds the image up to 512", async () => {
    expect(await ok("create", "small", "512M", "--chunk-size", "4K")).toContain(
      "created image small: 512.0 MiB",
    );
    const info = JSON.parse(await ok("info", "small", "--json")) as ImageInfo;
    expect(info).toMatchObject({ size: 512 * MiB, chunkSize: 4096 });

    const odd = random(1000);
    const src = join(dir, "odd.raw");
    await writeFile(src, odd);
    expect(await ok("import", src, "odd")).toContain(
      "is 1000 bytes, not a whole number of 512-byte sectors: image odd is 1024 bytes, its last 24 bytes read as zeros",
    );
    expect((JSON.parse(await ok("info", "odd", "--json")) as ImageInfo).size).toBe(1024);
    const out = join(dir, "odd.out");
    await ok("export", "odd", out);
    const back = await readBytes(out);
    expect(back.subarray(0, 1000)).toEqual(odd);
    expect(back.subarray(1000)).toEqual(new Uint8Array(24));
    await ok("rm", "small");
    await ok("rm", "odd");
  }, 30_000);

  test("info NAME@SNAP shows the snapshot, as text and --json; an unknown snapshot is one line and exit 1", async () => {
    await ok("create", "snapped", "4M");
    await ok("snapshot", "snapped", "s1");
    await ok("create", "grown", "8GiB"); // GiB means what G means
    expect((JSON.parse(await ok("info", "grown", "--json")) as ImageInfo).size).toBe(8 * 1024 * MiB);
    const text = await ok("info", "snapped@s1");
    expect(text).toContain("name:        snapped@s1");
    expect(text).toContain("size:        4.0 MiB (4194304 bytes)");
    const json = JSON.parse(await ok("info", "snapped@s1", "--json")) as {
      image: string;
      name: string;
      size: number;
    };
    expect(json).toMatchObject({ image: "snapped", name: "s1", size: 4 * MiB });
    const missing = await cli("info", "snapped@nope");
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toBe(
      "blockmend image info: Image snapped has no snapshot nope (it has s1)",
    );
    await ok("rm", "snapped@s1");
    await ok("rm", "snapped");
    await ok("rm", "grown");
  }, 30_000);

  test("failures print one line naming the API and the server's message, and exit 1", async () => {
    const missing = await cli("info", "nope");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(server.url);
    expect(missing.stderr).toContain("image_not_found");
    expect(missing.stderr).toContain('Image "nope" does not exist');
    expect(missing.stderr.trim().split("\n")).toHaveLength(1);

    await ok("create", "dup", "1M");
    const dup = await cli("create", "dup", "1M");
    expect(dup.code).toBe(1);
    expect(dup.stderr).toContain("409 image_exists");
    await ok("rm", "dup");

    const badSize = await cli("create", "x", "12Q");
    expect(badSize.code).toBe(1);
    expect(badSize.stderr).toContain(
      'Invalid size "12Q" is not a size: use bytes, or a number with K, M, G, T or P',
    );
    const decimal = await cli("create", "x", "10GB");
    expect(decimal.code).toBe(1);
    expect(decimal.stderr).toContain('"10GB" is ambiguous: write 10G or 10GiB');
    expect(decimal.stderr.trim().split("\n")).toHaveLength(1);
    for (const size of ["0", "-1"]) {
      const refused = await cli("create", "x", size);
      expect(refused.code).toBe(1);
      // citty reads "-1" as a flag, so the size is missing: still one line, not the help text.
      expect(refused.stderr).toMatch(/must be more than 0|Missing required positional argument: SIZE/);
      expect(refused.stderr).not.toContain("USAGE"); // a message, not the help text
    }
    expect((await cli("info", "x")).code).toBe(1); // nothing was created

    const down = await cli("ls", "--api", "http://127.0.0.1:9");
    expect(down.code).toBe(1);
    expect(down.stderr).toContain("Cannot reach the blockmend API at http://127.0.0.1:9");
  }, 30_000);
});
