/**
 * NBD over TLS (issue 9) with the stock clients: qemu-img and qemu-io (GnuTLS, qemu's
 * `tls-creds-x509` object) and nbdinfo/nbdcopy (libnbd, `nbds://` URIs with
 * `tls-certificates=`), against startNbdServer over MemoryDevices on 127.0.0.1.
 * Certificates are made with certtool in qemu's directory layout. Byte-level checks
 * (what a plaintext client gets, a stalled TLS handshake, injected bytes) use the raw
 * client. After every hostile case a normal client must still be served.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BlockDevice, ExportProvider } from "../../../gateway/nbd/block-device.ts";
import { NBD_OPT, NBD_REP } from "../../../gateway/nbd/constants.ts";
import { checkNbdListen, NbdConfigError } from "../../../gateway/nbd/listen-policy.ts";
import { MemoryDevice } from "../../../gateway/nbd/memory-device.ts";
import { type NbdServer, type NbdServerOptions, startNbdServer } from "../../../gateway/nbd/nbd-server.ts";
import { requireTools, run, runOk } from "../../support/tools.ts";
import { be32, concat, infoData, option, text } from "./_bytes.ts";
import { makeTestPki, type TestPki } from "./_pki.ts";
import { RawClient } from "./_raw-client.ts";

const MiB = 1024 * 1024;
const TIMEOUT_MS = 60_000;

class Exports implements ExportProvider {
  readonly devices = new Map<string, MemoryDevice>();
  opened = 0;
  async list() {
    return [...this.devices.keys()].map((name) => ({ name }));
  }
  async open(name: string): Promise<BlockDevice | null> {
    const device = this.devices.get(name) ?? null;
    if (device) this.opened++;
    return device;
  }
  async release() {}
}

let pki: TestPki;
let dir: string;
let exports: Exports;
const servers: NbdServer[] = [];
const clients: RawClient[] = [];

async function serve(options: NbdServerOptions): Promise<NbdServer> {
  const server = await startNbdServer(exports, { hostname: "127.0.0.1", port: 0, ...options });
  servers.push(server);
  return server;
}

async function raw(port: number): Promise<RawClient> {
  const client = await RawClient.connect(port);
  clients.push(client);
  return client;
}

function disk(name: string, size = 16 * MiB): MemoryDevice {
  const device = new MemoryDevice(size);
  exports.devices.set(name, device);
  return device;
}

/** qemu's client side: the credentials object and the image options naming it. */
function qemuTls(certDir: string, port: number, name: string): string[] {
  return [
    "--object",
    `tls-creds-x509,id=tls0,dir=${certDir},endpoint=client`,
    "--image-opts",
    `driver=nbd,host=127.0.0.1,port=${port},export=${name},tls-creds=tls0`,
  ];
}

/** libnbd's URI for a TLS export (nbd_connect_uri: `tls-certificates` is the client's x509 directory). */
function nbds(port: number, name: string, certDir: string): string {
  return `nbds://127.0.0.1:${port}/${name}?tls-certificates=${certDir}`;
}

async function qemuIo(args: string[], commands: string[]): Promise<string> {
  const out = await runOk(["qemu-io", ...commands.flatMap((c) => ["-c", c]), ...args], {
    timeoutMs: TIMEOUT_MS,
  });
  expect(out).not.toContain("failed");
  return out;
}

/** A normal TLS client still gets served: the server survived whatever came before. */
async function stillServes(server: NbdServer, certDir: string): Promise<void> {
  disk("canary");
  const out = await qemuIo(qemuTls(certDir, server.port, "canary"), [
    "write -P 0x11 0 64k",
    "read -P 0x11 0 64k",
  ]);
  expect(out).toContain("read 65536/65536");
}

function pattern(length: number, seed: number): Uint8Array {
  let x = seed;
  return Uint8Array.from({ length }, (_, i) => {
    if ((i >> 16) % 3 === 1) return 0; // zero runs, so sparse copies have holes to skip
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x >>> 24;
  });
}

beforeAll(async () => {
  requireTools("qemu-img", "qemu-io", "nbdinfo", "nbdcopy");
  pki = await makeTestPki();
  dir = await mkdtemp(join(tmpdir(), "blockmend-tls-"));
  exports = new Exports();
});

afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all(servers.map((s) => s.close()));
  await pki?.remove();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("NBD TLS with X.509, no client certificates", () => {
  let server: NbdServer;
  beforeAll(async () => {
    server = await serve({ tls: { certDir: pki.server } });
  });

  test("qemu-img info, then convert a raw image in and back out, over TLS", async () => {
    const device = disk("convert", 8 * MiB);
    const image = pattern(8 * MiB, 7);
    const source = join(dir, "in.raw");
    const back = join(dir, "out.raw");
    await writeFile(source, image);
    const info = await runOk(["qemu-img", "info", ...qemuTls(pki.clientWithoutCert, server.port, "convert")]);
    expect(info).toContain("virtual size: 8 MiB (8388608 bytes)");
    await runOk(
      [
        "qemu-img",
        "convert",
        "-n",
        "-f",
        "raw",
        source,
        "--object",
        `tls-creds-x509,id=tls0,dir=${pki.clientWithoutCert},endpoint=client`,
        "--target-image-opts",
        `driver=nbd,host=127.0.0.1,port=${server.port},export=convert,tls-creds=tls0`,
      ],
      { timeoutMs: TIMEOUT_MS },
    );
    expect(Buffer.from(await device.read(0, image.byteLength)).equals(image)).toBe(true);
    await runOk(
      ["qemu-img", "convert", ...qemuTls(pki.clientWithoutCert, server.port, "convert"), "-O", "raw", back],
      { timeoutMs: TIMEOUT_MS },
    );
    expect(Buffer.from(await readFile(back)).equals(image)).toBe(true);
  });

  test("qemu-io writes a pattern and reads it back over TLS; the device holds it", async () => {
    const device = disk("qemu-io");
    const out = await qemuIo(qemuTls(pki.clientWithoutCert, server.port, "qemu-io"), [
      "write -P 0xa5 1M 2M",
      "flush",
      "read -P 0xa5 1M 2M",
      "read -P 0 0 1M",
    ]);
    expect(out).toContain("read 2097152/2097152");
    expect((await device.read(MiB, 2 * MiB)).every((b) => b === 0xa5)).toBe(true);
  });

  test("nbdinfo reports TLS; nbdcopy copies in and out over nbds://", async () => {
    const device = disk("libnbd", 4 * MiB);
    const info = JSON.parse(
      await runOk(["nbdinfo", "--json", nbds(server.port, "libnbd", pki.clientWithoutCert)]),
    );
    expect(info.TLS).toBe(true);
    expect(info.exports[0]["export-size"]).toBe(4 * MiB);
    const image = pattern(4 * MiB, 99);
    const source = join(dir, "copy-in.raw");
    const back = join(dir, "copy-out.raw");
    await writeFile(source, image);
    await runOk(["nbdcopy", source, nbds(server.port, "libnbd", pki.clientWithoutCert)], {
      timeoutMs: TIMEOUT_MS,
    });
    expect(Buffer.from(await device.read(0, image.byteLength)).equals(image)).toBe(true);
    await runOk(["nbdcopy", nbds(server.port, "libnbd", pki.clientWithoutCert), back], {
      timeoutMs: TIMEOUT_MS,
    });
    expect(Buffer.from(await readFile(back)).equals(image)).toBe(true);
  });

  test("a client that does not trust the server's CA refuses to connect (qemu-img, nbdinfo)", async () => {
    disk("wrong-ca");
    const q = await run(["qemu-img", "info", ...qemuTls(pki.clientWrongCa, server.port, "wrong-ca")]);
    expect(q.code).not.toBe(0);
    expect(q.out).toMatch(/certificate|verif|TLS/i);
    const n = await run(["nbdinfo", nbds(server.port, "wrong-ca", pki.clientWrongCa)]);
    expect(n.code).not.toBe(0);
    await stillServes(server, pki.clientWithoutCert);
  });

  test("plaintext clients get ERR_TLS_REQD for every option; qemu-img and nbdinfo without TLS fail", async () => {
    const client = await raw(server.port);
    await client.read(18);
    client.write(be32(3));
    for (const opt of [
      option(NBD_OPT.LIST),
      option(NBD_OPT.STRUCTURED_REPLY),
      option(NBD_OPT.INFO, infoData("canary")),
      option(NBD_OPT.GO, infoData("canary")),
      option(99, text("junk")),
    ]) {
      client.write(opt);
      const [reply] = await client.optionReplies();
      expect(reply!.type).toBe(NBD_REP.ERR_TLS_REQD);
    }
    client.write(option(NBD_OPT.ABORT));
    expect((await client.optionReplies())[0]!.type).toBe(NBD_REP.ACK);
    await client.closed;

    disk("plain");
    const q = await run(["qemu-img", "info", `nbd://127.0.0.1:${server.port}/plain`]);
    expect(q.code).not.toBe(0);
    const n = await run(["nbdinfo", `nbd://127.0.0.1:${server.port}/plain`]);
    expect(n.code).not.toBe(0);
    await stillServes(server, pki.clientWithoutCert);
  });

  test("NBD_OPT_EXPORT_NAME before STARTTLS ends the session at once (spec: MUST terminate)", async () => {
    const client = await raw(server.port);
    await client.read(18);
    client.write(concat(be32(3), option(NBD_OPT.EXPORT_NAME, text("canary"))));
    await client.closed;
    expect(client.buffered).toBe(0); // not even export data: nothing was served
  });

  test("plaintext bytes right behind STARTTLS end the session before the ACK (no injection)", async () => {
    const client = await raw(server.port);
    await client.read(18);
    client.write(concat(be32(3), option(NBD_OPT.STARTTLS), option(NBD_OPT.GO, infoData("canary"))));
    await client.closed;
    expect(client.buffered).toBe(0);
    await stillServes(server, pki.clientWithoutCert);
  });
});

describe("NBD TLS with verified client certificates", () => {
  let server: NbdServer;
  beforeAll(async () => {
    server = await serve({ tls: { certDir: pki.server, verifyPeer: true } });
  });

  test("a client certificate signed by the CA is accepted (qemu-io, nbdinfo)", async () => {
    disk("verified");
    const out = await qemuIo(qemuTls(pki.client, server.port, "verified"), [
      "write -P 7 0 1M",
      "read -P 7 0 1M",
    ]);
    expect(out).toContain("read 1048576/1048576");
    const info = JSON.parse(await runOk(["nbdinfo", "--json", nbds(server.port, "verified", pki.client)]));
    expect(info.TLS).toBe(true);
  });

  test("a client without a certificate is refused (qemu-img, nbdinfo); the server keeps serving", async () => {
    disk("no-cert");
    const opened = exports.opened;
    const q = await run(["qemu-img", "info", ...qemuTls(pki.clientWithoutCert, server.port, "no-cert")]);
    expect(q.code).not.toBe(0);
    const n = await run(["nbdinfo", nbds(server.port, "no-cert", pki.clientWithoutCert)]);
    expect(n.code).not.toBe(0);
    expect(exports.opened).toBe(opened); // no export was even looked at
    await stillServes(server, pki.client);
  });

  test("a client certificate from another CA is refused (qemu-img, nbdinfo); the server keeps serving", async () => {
    disk("other-ca");
    const opened = exports.opened;
    const q = await run(["qemu-img", "info", ...qemuTls(pki.clientOtherCa, server.port, "other-ca")]);
    expect(q.code).not.toBe(0);
    const n = await run(["nbdinfo", nbds(server.port, "other-ca", pki.clientOtherCa)]);
    expect(n.code).not.toBe(0);
    expect(exports.opened).toBe(opened);
    await stillServes(server, pki.client);
  });
});

describe("NBD TLS: timeouts and refusals", () => {
  test("a TLS handshake that stalls after the STARTTLS ACK is cut by the handshake timeout", async () => {
    const server = await serve({ tls: { certDir: pki.server }, handshakeTimeoutMs: 1500 });
    const silent = await raw(server.port);
    const partial = await raw(server.port);
    for (const c of [silent, partial]) {
      await c.read(18);
      c.write(concat(be32(3), option(NBD_OPT.STARTTLS)));
      expect((await c.optionReplies())[0]!.type).toBe(NBD_REP.ACK);
    }
    // One says nothing more; the other sends the first bytes of a ClientHello record and stops.
    partial.write(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    const started = Date.now();
    await Promise.all([silent.closed, partial.closed]);
    const took = Date.now() - started;
    expect(took).toBeGreaterThan(1000);
    expect(took).toBeLessThan(20_000);
    expect(server.connections).toBe(0);
    await stillServes(server, pki.clientWithoutCert);
  });

  test("a TLS client against a server without TLS gets ERR_POLICY; qemu-img and nbdinfo refuse to go on", async () => {
    const server = await serve({});
    const client = await raw(server.port);
    await client.read(18);
    client.write(concat(be32(3), option(NBD_OPT.STARTTLS)));
    const [reply] = await client.optionReplies();
    expect(reply!.type).toBe(NBD_REP.ERR_POLICY);
    client.close();
    disk("plain-server");
    const q = await run(["qemu-img", "info", ...qemuTls(pki.clientWithoutCert, server.port, "plain-server")]);
    expect(q.code).not.toBe(0);
    const n = await run(["nbdinfo", nbds(server.port, "plain-server", pki.clientWithoutCert)]);
    expect(n.code).not.toBe(0);
    const ok = await qemuIo(["-f", "raw", `nbd://127.0.0.1:${server.port}/plain-server`], ["read 0 4k"]);
    expect(ok).toContain("read 4096/4096");
  });

  test("TLS-PSK is refused at startup with the runtime's reason (no Bun or Deno PSK server)", async () => {
    const keys = join(dir, "keys.psk");
    await writeFile(keys, `alice:${"ab".repeat(32)}\n`);
    const start = startNbdServer(exports, { port: 0, tls: { certDir: pki.server, psk: { file: keys } } });
    await expect(start).rejects.toBeInstanceOf(NbdConfigError);
    await expect(start).rejects.toThrow(/TLS-PSK .*not available: Bun \S+'s node:tls has no TLS-PSK/);
  });

  test("missing or unusable credentials are refused at startup, naming the file", async () => {
    await expect(startNbdServer(exports, { port: 0, tls: { certDir: join(dir, "nope") } })).rejects.toThrow(
      /server-cert\.pem: ENOENT/,
    );
    const broken = join(dir, "broken-pki");
    await runOk(["mkdir", "-p", broken]);
    await writeFile(join(broken, "server-cert.pem"), "not a certificate");
    await writeFile(join(broken, "server-key.pem"), "not a key");
    await expect(startNbdServer(exports, { port: 0, tls: { certDir: broken } })).rejects.toBeInstanceOf(
      NbdConfigError,
    );
    // verifyPeer needs the CA the client certificates must chain to.
    const noCa = join(dir, "no-ca");
    await runOk(["mkdir", "-p", noCa]);
    for (const f of ["server-cert.pem", "server-key.pem"]) {
      await writeFile(join(noCa, f), await readFile(join(pki.server, f)));
    }
    await expect(
      startNbdServer(exports, { port: 0, tls: { certDir: noCa, verifyPeer: true } }),
    ).rejects.toThrow(/ca-cert\.pem: ENOENT/);
  });

  test("a non-loopback address is refused without TLS, and with TLS but no client authentication", async () => {
    await expect(startNbdServer(exports, { hostname: "0.0.0.0", port: 0 })).rejects.toThrow(
      /Refusing to serve NBD on 0\.0\.0\.0 without TLS/,
    );
    await expect(
      startNbdServer(exports, { hostname: "0.0.0.0", port: 0, tls: { certDir: pki.server } }),
    ).rejects.toThrow(/TLS without client authentication/);
    // With verified client certificates it is allowed (checked without listening: tests stay on loopback).
    expect(() =>
      checkNbdListen({ hostname: "0.0.0.0", tls: { certDir: pki.server, verifyPeer: true } }),
    ).not.toThrow();
    expect(() => checkNbdListen({ hostname: "::1" })).not.toThrow();
    expect(() => checkNbdListen({ hostname: "192.168.1.10" })).toThrow(NbdConfigError);
  });
});
