/**
 * A secured deployment as real processes (issue 9): `blockmend up` with HTTPS, full and
 * status tokens, driven by curl and by the CLI; a reachable `--http` without tokens
 * refused at startup; and a gateway over HTTPS chunk store servers with per-store tokens
 * and `--store-ca`, refused when it trusts another CA.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeTestPki, type TestPki } from "../gateway/nbd/_pki.ts";
import {
  blockmendCommand,
  killAll,
  type StartedProcess,
  startBlockmend,
  startGatewayProcess,
} from "../support/processes.ts";
import { requireTools, run } from "../support/tools.ts";

const FULL = "full-token-0123456789abcdef0123";
const STATUS = "status-token-0123456789abcdef0123";

let pki: TestPki;
let dir: string;
let ca: string;

beforeAll(async () => {
  requireTools("curl");
  pki = await makeTestPki();
  dir = await mkdtemp(join(tmpdir(), "blockmend-secure-"));
  ca = join(pki.server, "ca-cert.pem");
  await writeFile(join(dir, "full"), `# operators\n${FULL}\n`);
  await writeFile(join(dir, "status"), `${STATUS}\n`);
}, 60_000);

afterAll(async () => {
  await killAll();
  await pki?.remove();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** `blockmend ARGS` as the CLI, to completion (under the test runtime). */
function cli(args: string[], env: Record<string, string> = {}) {
  return runEnv(blockmendCommand(args), env);
}

async function runEnv(cmd: string[], env: Record<string, string>) {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, out: out + err };
}

describe("blockmend up with HTTPS and tokens", () => {
  let up: StartedProcess;
  beforeAll(async () => {
    up = await startBlockmend(
      [
        "up",
        ...["--data", join(dir, "up"), "--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        ...[
          "--tls-dir",
          pki.server,
          "--token-file",
          join(dir, "full"),
          "--status-token-file",
          join(dir, "status"),
        ],
      ],
      60_000,
    );
  }, 90_000);

  test("curl over HTTPS: the full token creates and reads; no token is 401; the status token reads status only", async () => {
    expect(up.url).toStartWith("https://127.0.0.1:");
    const curl = (...args: string[]) => run(["curl", "-sS", "--cacert", ca, "-w", "\n%{http_code}", ...args]);
    const created = await curl(
      ...["-X", "POST", "-H", `authorization: Bearer ${FULL}`, "-H", "content-type: application/json"],
      ...["-d", '{"name":"web01","size":16777216}', `${up.url}/v1/images`],
    );
    expect(created.out.trim().split("\n").at(-1)).toBe("201");
    const none = await curl(`${up.url}/v1/images`);
    expect(none.out).toContain('"code":"unauthorized"');
    expect(none.out.trim().split("\n").at(-1)).toBe("401");
    const status = await curl("-H", `authorization: Bearer ${STATUS}`, `${up.url}/v1/heal`);
    expect(status.out.trim().split("\n").at(-1)).toBe("200");
    const statusWrite = await curl(
      ...["-X", "PUT", "-H", `authorization: Bearer ${STATUS}`, "-H", "content-type: application/json"],
      ...["-d", '{"concurrency":2}', `${up.url}/v1/heal/limits`],
    );
    expect(statusWrite.out).toContain('"code":"forbidden_scope"');
    // curl without the CA refuses the gateway's certificate (exit 60: peer certificate cannot be authenticated).
    const noCa = await run(["curl", "-sS", `${up.url}/v1/health`]);
    expect(noCa.code).toBe(60);
  });

  test("with tokens the dashboard's page and files stay public; its event stream and GET /v1/gc take a status token, POST /v1/gc a full one", async () => {
    const curl = (...args: string[]) => run(["curl", "-sS", "--cacert", ca, "-w", "\n%{http_code}", ...args]);
    const code = (r: { out: string }) => r.out.trim().split("\n").at(-1);
    const bearer = (t: string) => ["-H", `authorization: Bearer ${t}`];
    const page = await curl(`${up.url}/`);
    expect(code(page)).toBe("200");
    expect(page.out).toContain("<html");
    const script = (page.out.match(/src="(\/dashboard\/[^"]+\.js)"/) ?? [])[1];
    expect(script).toBeDefined();
    expect(code(await curl(`${up.url}${script}`))).toBe("200");
    expect(code(await curl(`${up.url}/v1/events`))).toBe("401");
    // The stream never ends: read its first event (the snapshot) and stop after 3 s.
    const events = await curl("-N", "--max-time", "3", ...bearer(STATUS), `${up.url}/v1/events`);
    expect(events.out).toContain("event: snapshot");
    expect(code(await curl(...bearer(STATUS), `${up.url}/v1/gc`))).toBe("200");
    const gc = ["-X", "POST", "-H", "content-type: application/json", "-d", '{"graceSeconds":0}'];
    const refused = await curl(...gc, ...bearer(STATUS), `${up.url}/v1/gc`);
    expect(refused.out).toContain('"code":"forbidden_scope"');
    expect(code(await curl(...gc, ...bearer(FULL), `${up.url}/v1/gc?wait=1`))).toBe("200");
  });

  test("the CLI over HTTPS with --ca and --token-file (or $BLOCKMEND_TOKEN); a status token may list stores, not create images", async () => {
    const api = ["--api", up.url, "--ca", ca];
    const created = await cli(["image", "create", "db01", "8M", ...api, "--token-file", join(dir, "full")]);
    expect(created.out).toContain("created image db01");
    expect(created.code).toBe(0);
    const ls = await cli(["image", "ls", ...api], { BLOCKMEND_TOKEN: FULL });
    expect(ls.code).toBe(0);
    expect(ls.out).toContain("db01");
    const stores = await cli(["store", "ls", ...api, "--token-file", join(dir, "status")]);
    expect(stores.code).toBe(0);
    expect(stores.out).toMatch(/^a\tdata\t/m);
    const refused = await cli(["image", "create", "nope", "8M", ...api, "--token-file", join(dir, "status")]);
    expect(refused.code).toBe(1);
    expect(refused.out).toContain("403 forbidden_scope");
    const noToken = await cli(["heal", "status", ...api]);
    expect(noToken.code).toBe(1);
    expect(noToken.out).toContain("401 unauthorized");
    expect(noToken.out).toContain("--token-file FILE or $BLOCKMEND_TOKEN");
    const jobs = await cli(["backup", "jobs", ...api, "--token-file", join(dir, "full")]);
    expect(jobs.out).toContain("no backup jobs");
    expect(jobs.code).toBe(0);
    const jobsNoToken = await cli(["backup", "jobs", ...api]);
    expect(jobsNoToken.code).toBe(1);
    expect(jobsNoToken.out).toContain("401 unauthorized");
    const gc = await cli(["gc", "status", ...api, "--token-file", join(dir, "status")]);
    expect(gc.code).toBe(0);
    expect(gc.out).toContain("no pass running here");
    const noCa = await cli(["image", "ls", "--api", up.url], { BLOCKMEND_TOKEN: FULL });
    expect(noCa.code).toBe(1);
    expect(noCa.out).toMatch(/certificate|TLS|verify/i);
  }, 60_000);
});

describe("startup refusals", () => {
  test("a reachable --http without --token-file is refused with one line and exit 2, for up and gateway", async () => {
    for (const args of [
      ["up", "--data", join(dir, "refused"), "--http", "0.0.0.0:0", "--nbd", "127.0.0.1:0"],
      [
        "gateway",
        "--store",
        "a=memory:",
        "--http",
        "0.0.0.0:0",
        "--nbd",
        "127.0.0.1:0",
        "--state-dir",
        join(dir, "r"),
      ],
    ]) {
      const r = await cli(args);
      expect(r.code).toBe(2);
      const lines = r.out.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain("--http 0.0.0.0 is reachable from other machines: give --token-file FILE");
    }
  });

  test("chunkstore, image, heal and store refuse unknown flags with exit 2", async () => {
    for (const args of [
      ["chunkstore", "--dir", join(dir, "cs"), "--tls-dri", "x"],
      ["image", "ls", "--apii", "http://127.0.0.1:1"],
      ["heal", "status", "--jsonn"],
      ["store", "safe-to-remove", "a", "--force"],
    ]) {
      const r = await cli(args);
      expect(`${args.join(" ")} ${r.code}`).toBe(`${args.join(" ")} 2`);
      expect(r.out).toContain("unknown flag");
    }
  });
});

describe("a gateway over HTTPS chunk store servers", () => {
  const stores: Record<string, string> = {};
  beforeAll(async () => {
    for (const id of ["a", "b", "w"]) {
      await writeFile(join(dir, `store-${id}`), `token-of-store-${id}-0123456789abcdef write\n`);
      const s = await startBlockmend([
        "chunkstore",
        ...["--dir", join(dir, `cs-${id}`), "--listen", "127.0.0.1:0", "--tls-dir", pki.server],
        ...["--token-file", join(dir, `store-${id}`), ...(id === "w" ? ["--witness"] : [])],
      ]);
      expect(s.url).toStartWith("https://");
      stores[id] = s.url.replace("127.0.0.1", "localhost");
    }
  }, 90_000);

  const tokenFlags = () =>
    ["a", "b", "w"].flatMap((id) => ["--store-token-file", `${id}=${join(dir, `store-${id}`)}`]);

  test("with --store-ca and a token per store it writes and reads an image", async () => {
    const gw = await startGatewayProcess(stores, { extra: ["--store-ca", ca, ...tokenFlags()] });
    const api = (path: string, init?: RequestInit) => fetch(`${gw.url}${path}`, init);
    const created = await api("/v1/images", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "t", size: 1024 * 1024 }),
    });
    expect(created.status).toBe(201);
    const data = new Uint8Array(65536).fill(0x5c);
    expect(
      (
        await api("/v1/images/t/data?offset=0", {
          method: "PUT",
          body: data,
          headers: { "content-type": "application/octet-stream" },
        })
      ).status,
    ).toBe(204);
    const back = await api("/v1/images/t/data", { headers: { range: "bytes=0-65535" } });
    expect(new Uint8Array(await back.arrayBuffer())).toEqual(data);
    await gw.kill("SIGTERM");
  }, 60_000);

  test("trusting another CA it refuses to start, naming TLS; with one store's token wrong, that store is down", async () => {
    const wrongCa = await run(
      blockmendCommand([
        "gateway",
        ...Object.entries(stores).flatMap(([id, url]) => ["--store", `${id}=${url}`]),
        ...["--store-ca", join(pki.clientWrongCa, "ca-cert.pem"), ...tokenFlags()],
        ...["--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0", "--state-dir", join(dir, "gw-wrong-ca")],
      ]),
      { timeoutMs: 60_000 },
    );
    expect(wrongCa.code).toBe(1);
    expect(wrongCa.out).toContain("TLS with the store failed");
    expect(wrongCa.out).toContain("--store-ca");

    await writeFile(join(dir, "bad-b"), "not-the-token-of-b-0123456789\n");
    const flags = tokenFlags();
    flags[3] = `b=${join(dir, "bad-b")}`;
    const wrongToken = await startGatewayProcess(stores, { extra: ["--store-ca", ca, ...flags] });
    const states = (await (await fetch(`${wrongToken.url}/v1/stores`)).json()) as {
      stores: { id: string; state: string }[];
    };
    expect(Object.fromEntries(states.stores.map((s) => [s.id, s.state]))).toMatchObject({
      a: "in-sync",
      b: "down",
    });
    await wrongToken.kill("SIGTERM");
  }, 90_000);
});
