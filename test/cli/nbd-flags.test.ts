/**
 * The NBD flags of `blockmend up` and `blockmend gateway` (issue 9): parsing, refusals
 * as one line with the right exit status, and the real `blockmend up` process serving
 * qemu-io over TLS with verified client certificates (and, under Deno, without them).
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NBD_LISTEN_DESCRIPTION, NBD_TLS_ARGS, nbdServerOptions, nbdUsage } from "../../cli/nbd-flags.ts";
import { rejectUnknownFlags, UsageError } from "../../cli/strict-flags.ts";
import { NbdConfigError } from "../../gateway/nbd/listen-policy.ts";
import { fetchTrusting } from "../../runtime/tls-fetch.ts";
import { makeTestPki, type TestPki } from "../gateway/nbd/_pki.ts";
import { killAll, startBlockmend } from "../support/processes.ts";
import { requireTools, run, runOk } from "../support/tools.ts";

const ROOT = join(import.meta.dir, "../..");
const CLI = join(ROOT, "cli/main.ts");
const UP_ARGS = {
  data: { type: "string" },
  nbd: { type: "string", description: NBD_LISTEN_DESCRIPTION },
  http: { type: "string" },
  ...NBD_TLS_ARGS,
} as const;

let pki: TestPki;
let dir: string;

beforeAll(async () => {
  pki = await makeTestPki();
  dir = await mkdtemp(join(tmpdir(), "blockmend-nbd-flags-"));
});
afterAll(async () => {
  await killAll();
  await pki?.remove();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("rejectUnknownFlags", () => {
  test.each([
    [["--tls-dri", "certs"], /unknown flag --tls-dri/],
    [["--nbd", "127.0.0.1:1", "-x"], /unknown flag -x/],
    [["--no-data"], /unknown flag --no-data/], // --no- only negates booleans
    [["web01"], /unexpected argument "web01"/],
    [["--tls-verify-peer", "true"], /unexpected argument "true"/], // a boolean takes no value
  ])("%j is refused", (args, message) => {
    expect(() => rejectUnknownFlags(args, UP_ARGS)).toThrow(message);
    expect(() => rejectUnknownFlags(args, UP_ARGS)).toThrow(UsageError);
  });

  test.each([
    [["--tls-dir", "--weird-dir-name", "--nbd=unix:/x"]], // a value is not a flag
    [["--tls-verify-peer", "--no-tls-verify-peer", "--data", "d"]],
    [["--", "--anything", "goes"]],
  ])("%j is accepted", (args) => {
    expect(() => rejectUnknownFlags(args, UP_ARGS)).not.toThrow();
  });
});

describe("nbdServerOptions", () => {
  test("HOST:PORT, unix:PATH (made absolute) and the socket mode", () => {
    expect(nbdServerOptions({ nbd: "127.0.0.1:10809" })).toEqual({ hostname: "127.0.0.1", port: 10809 });
    expect(nbdServerOptions({ nbd: "unix:rel/nbd.sock", "nbd-socket-mode": "0660" })).toEqual({
      path: join(process.cwd(), "rel/nbd.sock"),
      socketMode: 0o660,
    });
  });

  test("TLS flags become tls options; verify-peer without a directory is a usage error", () => {
    expect(
      nbdServerOptions({ nbd: "127.0.0.1:0", "tls-dir": "/etc/pki/x", "tls-verify-peer": true }),
    ).toEqual({
      hostname: "127.0.0.1",
      port: 0,
      tls: { certDir: "/etc/pki/x", verifyPeer: true },
    });
    expect(() => nbdServerOptions({ nbd: "127.0.0.1:0", "tls-verify-peer": true })).toThrow(UsageError);
    expect(() => nbdServerOptions({ nbd: "127.0.0.1:0", "nbd-socket-mode": "0660" })).toThrow(UsageError);
    expect(() => nbdServerOptions({ nbd: "unix:/x", "nbd-socket-mode": "rw" })).toThrow(UsageError);
    expect(() => nbdServerOptions({ nbd: "nbd.example:port" })).toThrow(UsageError);
  });

  test("a reachable address without client authentication and --tls-psk are refused before anything starts", () => {
    expect(() => nbdServerOptions({ nbd: "0.0.0.0:10809" })).toThrow(NbdConfigError);
    expect(() => nbdServerOptions({ nbd: "0.0.0.0:10809", "tls-dir": "/d" })).toThrow(
      /client authentication/,
    );
    expect(() => nbdServerOptions({ nbd: "127.0.0.1:0", "tls-psk": "keys.psk" })).toThrow(/TLS-PSK/);
    expect(
      nbdServerOptions({ nbd: "0.0.0.0:10809", "tls-dir": "/d", "tls-verify-peer": true }).hostname,
    ).toBe("0.0.0.0");
  });

  test("nbdUsage spells the listener as qemu and libnbd want it", () => {
    expect(nbdUsage({ hostname: "127.0.0.1", port: 0 }, 10809).where).toBe("nbd://127.0.0.1:10809");
    expect(nbdUsage({ path: "/run/b/nbd.sock" }, 0).exportUri("web01")).toBe(
      "nbd+unix:///web01?socket=/run/b/nbd.sock",
    );
    // In the lines to paste, quoted: `?` is a shell glob.
    expect(nbdUsage({ path: "/run/b/nbd.sock" }, 0).tryLines("web01")[1]).toStartWith(
      "nbdinfo 'nbd+unix:///web01?socket=/run/b/nbd.sock'",
    );
    const tls = nbdUsage({ hostname: "127.0.0.1", tls: { certDir: "/pki" } }, 10809);
    expect(tls.where).toBe("nbds://127.0.0.1:10809");
    expect(tls.tryLines("web01").join("\n")).toContain(
      "--image-opts driver=nbd,host=127.0.0.1,port=10809,export=web01,tls-creds=tls0",
    );
    expect(tls.tryLines("web01").join("\n")).toContain("nbds://127.0.0.1:10809/web01?tls-certificates=/pki");
  });
});

describe("blockmend up and gateway: refusals are one line", () => {
  test.each([
    [["up", "--tls-dri", "x"], 2, "blockmend up: unknown flag --tls-dri"],
    [["up", "--nbd", "0.0.0.0:0"], 1, "blockmend up: Refusing to serve NBD on 0.0.0.0 without TLS"],
    [["up", "--tls-verify-peer"], 2, "blockmend up: --tls-verify-peer needs --tls-dir DIR"],
    [
      ["up", "--tls-dir", "/nonexistent", "--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0"],
      1,
      "server-cert.pem: ENOENT",
    ],
    [
      ["gateway", "--store", "a=file:/tmp/x", "--tls-dri", "x"],
      2,
      "blockmend gateway: unknown flag --tls-dri",
    ],
    [
      ["gateway", "--store", "a=file:/tmp/x", "--nbd", "10.1.2.3:10809"],
      1,
      "blockmend gateway: Refusing to serve NBD",
    ],
  ])("%j exits %d", async (args, code, message) => {
    const data = ["--data", join(dir, "refused")];
    const r = await run([process.execPath, CLI, ...args, ...(args[0] === "up" ? data : [])]);
    expect(r.code).toBe(code);
    expect(r.out).toContain(message);
    expect(r.out.trim().split("\n")).toHaveLength(1); // one line, no stack trace
  });

  test("--tls-psk is refused at startup naming the runtime's limit", async () => {
    const r = await run([
      process.execPath,
      CLI,
      "up",
      "--data",
      join(dir, "psk"),
      "--tls-dir",
      pki.server,
      "--tls-psk",
      "k",
    ]);
    expect(r.code).toBe(1);
    expect(r.out.trim()).toMatch(
      /^blockmend up: TLS-PSK \(--tls-psk\) is not available: Bun \S+'s node:tls has no TLS-PSK/,
    );
  });
});

describe("blockmend up with TLS, end to end", () => {
  test("up --tls-dir --tls-verify-peer: qemu-io with a client certificate reads back what it wrote; without one it is refused", async () => {
    requireTools("qemu-io");
    const up = await startBlockmend([
      "up",
      ...["--data", join(dir, "up-tls"), "--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0"],
      ...["--tls-dir", pki.server, "--tls-verify-peer"],
    ]);
    const port = Number(/nbds:\/\/127\.0\.0\.1:(\d+)/.exec(up.output())?.[1]);
    expect(port).toBeGreaterThan(0);
    // --tls-dir makes the HTTP API HTTPS too, with the same certificate.
    expect(up.url).toStartWith("https://");
    const created = await fetchTrusting(await Bun.file(join(pki.server, "ca-cert.pem")).text())(
      `${up.url}/v1/images`,
      {
        method: "POST",
        body: JSON.stringify({ name: "web01", size: 16 * 1024 * 1024 }),
        headers: { "content-type": "application/json" },
      },
    );
    expect(created.status).toBe(201);
    const qemu = (certDir: string) => [
      "qemu-io",
      "--object",
      `tls-creds-x509,id=tls0,dir=${certDir},endpoint=client`,
      "--image-opts",
      `driver=nbd,host=127.0.0.1,port=${port},export=web01,tls-creds=tls0`,
    ];
    const out = await runOk([
      ...qemu(pki.client),
      "-c",
      "write -P 0x5a 4096 1M",
      "-c",
      "flush",
      "-c",
      "read -P 0x5a 4096 1M",
    ]);
    expect(out).not.toContain("failed");
    expect(out).toContain("read 1048576/1048576");
    const refused = await run([...qemu(pki.clientWithoutCert), "-c", "read 0 4k"]);
    expect(refused.code).not.toBe(0);
    const plain = await run(["qemu-io", "-f", "raw", "-c", "read 0 4k", `nbd://127.0.0.1:${port}/web01`]);
    expect(plain.code).not.toBe(0);
    // Still serving after the refusals.
    expect(await runOk([...qemu(pki.client), "-c", "read -P 0x5a 4096 4k"])).not.toContain("failed");
    await up.kill("SIGTERM");
  }, 60_000);

  test("up under Deno serves TLS to qemu-io, and refuses --tls-verify-peer with the runtime's reason", async () => {
    requireTools("qemu-io");
    const deno = join(ROOT, "node_modules/.bin/deno");
    const refused = await run([
      deno,
      "run",
      "-A",
      CLI,
      "up",
      "--data",
      join(dir, "deno-v"),
      "--tls-dir",
      pki.server,
      "--tls-verify-peer",
    ]);
    expect(refused.code).toBe(1);
    expect(refused.out.trim()).toMatch(
      /^blockmend up: Client certificate verification .* Deno \S+'s node:tls does not check/,
    );

    const socket = join(dir, "deno.sock");
    const proc = Bun.spawn(
      [deno, "run", "-A", CLI, "up", "--data", join(dir, "deno-up"), "--http", "127.0.0.1:0"].concat([
        "--nbd",
        `unix:${socket}`,
        "--tls-dir",
        pki.server,
      ]),
      { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
    );
    try {
      const reader = proc.stdout.getReader();
      let out = "";
      const deadline = Date.now() + 30_000;
      while (!/HTTP API:\s+(https:\/\/127\.0\.0\.1:\d+)/.test(out)) {
        if (Date.now() > deadline) throw new Error(`deno up did not start:\n${out}`);
        const r = await reader.read();
        if (r.done) throw new Error(`deno up exited:\n${out}${await new Response(proc.stderr).text()}`);
        out += new TextDecoder().decode(r.value);
      }
      expect(out).toContain(`nbds+unix:///<image>?socket=${socket}`);
      expect(((await stat(socket)).mode & 0o777).toString(8)).toBe("600");
      const api = /HTTP API:\s+(https:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
      const res = await fetchTrusting(await Bun.file(join(pki.server, "ca-cert.pem")).text())(
        `${api}/v1/images`,
        {
          method: "POST",
          body: JSON.stringify({ name: "d", size: 8 << 20 }),
          headers: { "content-type": "application/json" },
        },
      );
      expect(res.status).toBe(201);
      const io = await runOk([
        "qemu-io",
        "--object",
        `tls-creds-x509,id=tls0,dir=${pki.clientWithoutCert},endpoint=client`,
        "--image-opts",
        `driver=nbd,server.type=unix,server.path=${socket},export=d,tls-creds=tls0,tls-hostname=localhost`,
        ...["-c", "write -P 0x33 0 1M", "-c", "read -P 0x33 0 1M"],
      ]);
      expect(io).not.toContain("failed");
      expect(io).toContain("read 1048576/1048576");
    } finally {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  }, 90_000);
});
