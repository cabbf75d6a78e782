/**
 * NBD on a unix socket (issue 9, like nbdkit -U): qemu-io and nbdinfo with
 * `nbd+unix:///EXPORT?socket=PATH`, the socket's file mode, TLS over it, and what
 * happens to socket files left behind.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ExportProvider } from "../../../gateway/nbd/block-device.ts";
import { NbdConfigError } from "../../../gateway/nbd/listen-policy.ts";
import { MemoryDevice } from "../../../gateway/nbd/memory-device.ts";
import { type NbdServer, startNbdServer } from "../../../gateway/nbd/nbd-server.ts";
import { requireTools, runOk } from "../../support/tools.ts";
import { makeTestPki, type TestPki } from "./_pki.ts";
import { RawClient } from "./_raw-client.ts";

const MiB = 1024 * 1024;
const device = new MemoryDevice(16 * MiB);
const provider: ExportProvider = {
  list: async () => [{ name: "disk" }],
  open: async (name) => (name === "disk" ? device : null),
  release: async () => {},
};

let dir: string;
let pki: TestPki;
const servers: NbdServer[] = [];

async function serveUnix(path: string, options: Parameters<typeof startNbdServer>[1] = {}) {
  const server = await startNbdServer(provider, { path, ...options });
  servers.push(server);
  return server;
}

function mode(bits: number): string {
  return (bits & 0o777).toString(8);
}

beforeAll(async () => {
  requireTools("qemu-io", "nbdinfo");
  dir = await mkdtemp(join(tmpdir(), "blockmend-unix-"));
  pki = await makeTestPki();
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await pki?.remove();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("NBD on a unix socket", () => {
  test("qemu-io and nbdinfo connect with nbd+unix://; the socket is mode 0600", async () => {
    const path = join(dir, "nbd.sock");
    const server = await serveUnix(path);
    expect(server.path).toBe(path);
    expect(server.port).toBe(0);
    const info = await stat(path);
    expect(info.isSocket()).toBe(true);
    expect(mode(info.mode)).toBe("600");
    const uri = `nbd+unix:///disk?socket=${path}`;
    const io = await runOk([
      "qemu-io",
      "-f",
      "raw",
      "-c",
      "write -P 0x3c 0 1M",
      "-c",
      "read -P 0x3c 0 1M",
      uri,
    ]);
    expect(io).not.toContain("failed");
    expect(io).toContain("read 1048576/1048576");
    const nbdinfo = JSON.parse(await runOk(["nbdinfo", "--json", uri]));
    expect(nbdinfo.exports[0]["export-size"]).toBe(16 * MiB);
    expect((await device.read(0, MiB)).every((b) => b === 0x3c)).toBe(true);
  });

  test("socketMode 0o660 lets the socket's group in", async () => {
    const path = join(dir, "group.sock");
    await serveUnix(path, { socketMode: 0o660 });
    expect(mode((await stat(path)).mode)).toBe("660");
  });

  test("TLS works over a unix socket too (nbdinfo nbds+unix://, qemu-io with tls-creds)", async () => {
    const path = join(dir, "tls.sock");
    await serveUnix(path, { tls: { certDir: pki.server, verifyPeer: true } });
    const info = JSON.parse(
      await runOk([
        "nbdinfo",
        "--json",
        `nbds+unix:///disk?socket=${path}&tls-certificates=${pki.client}&tls-hostname=localhost`,
      ]),
    );
    expect(info.TLS).toBe(true);
    const io = await runOk([
      "qemu-io",
      "--object",
      `tls-creds-x509,id=tls0,dir=${pki.client},endpoint=client`,
      "--image-opts",
      `driver=nbd,server.type=unix,server.path=${path},export=disk,tls-creds=tls0,tls-hostname=localhost`,
      "-c",
      "read -P 0x3c 0 64k",
    ]);
    expect(io).not.toContain("failed");
  });

  test("the socket file is removed on close", async () => {
    const path = join(dir, "gone.sock");
    const server = await serveUnix(path);
    await server.close();
    await expect(stat(path)).rejects.toThrow();
  });

  test("a socket file left by a server that is gone is replaced", async () => {
    const path = join(dir, "stale.sock");
    // A listener killed with SIGKILL leaves its socket file behind, as after a crash.
    const script = `require("node:net").createServer().listen(${JSON.stringify(path)}, () => console.log("up"))`;
    const child = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe" });
    await child.stdout.getReader().read();
    child.kill("SIGKILL");
    await child.exited;
    expect((await stat(path)).isSocket()).toBe(true);
    await serveUnix(path);
    const client = await RawClient.connect(path);
    expect((await client.read(18)).byteLength).toBe(18); // our greeting
    client.close();
  });

  test("a live server's socket and a file that is not a socket are refused, not replaced", async () => {
    const live = join(dir, "live.sock");
    await serveUnix(live);
    await expect(startNbdServer(provider, { path: live })).rejects.toThrow(/another server is listening/);
    const file = join(dir, "plain-file");
    await writeFile(file, "keep me");
    await expect(startNbdServer(provider, { path: file })).rejects.toBeInstanceOf(NbdConfigError);
    expect(await Bun.file(file).text()).toBe("keep me");
    await expect(startNbdServer(provider, { path: join(dir, "x".repeat(120)) })).rejects.toThrow(/1 to 107/);
  });
});
