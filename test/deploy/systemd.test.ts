/**
 * The systemd units in deploy/systemd/: `systemd-analyze verify` accepts them (with the
 * install prefix pointed at this checkout, since verify checks that ExecStart exists),
 * `systemd-analyze security --offline` rates them OK (exposure at most 2.0), and their
 * ExecStart lines, with systemd's specifiers filled in by hand and the example config
 * files, start working servers. No systemd runs as PID 1 here, so the units are not
 * started by systemd itself (docs/deployment.md says what that leaves unchecked).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GATEWAY_PROCESS_ENV } from "../../runtime/process-env.ts";
import { killAll, startBlockmend } from "../support/processes.ts";
import { requireTools, run, runOk } from "../support/tools.ts";

const ROOT = join(import.meta.dir, "../..");
const UNITS = join(ROOT, "deploy/systemd");
const PREFIX = "/opt/blockmend";
const dirs: string[] = [];

afterAll(async () => {
  await killAll();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "blockmend-systemd-"));
  dirs.push(dir);
  return dir;
}

/** The units, with the install prefix replaced by this checkout, written to a temporary directory. */
async function unitsHere(): Promise<string> {
  const dir = await tempDir();
  for (const name of ["blockmend-chunkstore@.service", "blockmend-gateway.service"]) {
    const text = await readFile(join(UNITS, name), "utf8");
    await writeFile(join(dir, name), text.replaceAll(PREFIX, ROOT));
  }
  return dir;
}

/** The words of the unit's ExecStart= (continuation lines joined), with specifiers filled in. */
async function execStart(unit: string, specifiers: Record<string, string>): Promise<string[]> {
  const text = (await readFile(join(UNITS, unit), "utf8")).replace(/\\\n/g, " ");
  const line = /^ExecStart=(.*)$/m.exec(text)![1]!;
  return line
    .trim()
    .split(/\s+/)
    .map((w) => w.replace(/%([a-zA-Z%])/g, (_, s: string) => specifiers[s] ?? `%${s}`))
    .map((w) => w.replaceAll(PREFIX, ROOT));
}

describe("deploy/systemd", () => {
  test("the units and the Dockerfile set the process settings of runtime/process-env.ts", async () => {
    const env = (text: string, directive: RegExp) =>
      [...text.matchAll(directive)].flatMap((m) => m[1]!.trim().split(/\s+/));
    const gateway = await readFile(join(UNITS, "blockmend-gateway.service"), "utf8");
    const store = await readFile(join(UNITS, "blockmend-chunkstore@.service"), "utf8");
    const dockerfile = await readFile(join(ROOT, "deploy/Dockerfile"), "utf8");
    for (const [key, value] of Object.entries(GATEWAY_PROCESS_ENV)) {
      expect(env(gateway, /^Environment=(.*)$/gm)).toContain(`${key}=${value}`);
      expect(env(dockerfile, /^ENV (.*)$/gm)).toContain(`${key}=${value}`);
    }
    // The chunk store's reads must not queue behind its synced appends either.
    expect(env(store, /^Environment=(.*)$/gm)).toContain(
      `UV_THREADPOOL_SIZE=${GATEWAY_PROCESS_ENV.UV_THREADPOOL_SIZE}`,
    );
  });

  test("systemd-analyze verify accepts both units without a warning", async () => {
    requireTools("systemd-analyze");
    const dir = await unitsHere();
    const r = await run([
      "sh",
      "-c",
      `cd ${dir} && systemd-analyze verify ./blockmend-chunkstore@a.service ./blockmend-gateway.service`,
    ]);
    expect(r.out).toBe("");
    expect(r.code).toBe(0);
  });

  test("systemd-analyze security rates both units OK (exposure at most 2.0 of 10)", async () => {
    requireTools("systemd-analyze");
    const dir = await unitsHere();
    for (const unit of ["blockmend-chunkstore@a.service", "blockmend-gateway.service"]) {
      // --threshold counts in tenths of the printed level: 20 is 2.0.
      const r = await run([
        "sh",
        "-c",
        `cd ${dir} && systemd-analyze security --offline=yes --threshold=20 --no-pager ./${unit}`,
      ]);
      const level = Number(/Overall exposure level for [^:]+: ([\d.]+)/.exec(r.out)?.[1]);
      expect(level).toBeLessThanOrEqual(2);
      expect(r.code).toBe(0);
    }
  });

  test("the ExecStart lines with the example configs start a chunk store and a gateway over it", async () => {
    const dir = await tempDir();
    const credentials = join(dir, "credentials");
    await mkdir(credentials);
    await runOk(["bash", join(ROOT, "scripts/make-secrets.sh"), credentials]);
    const etc = join(dir, "etc");
    await mkdir(etc);
    await writeFile(join(etc, "chunkstore-a.toml"), await readFile(join(UNITS, "chunkstore-a.toml")));
    await writeFile(join(etc, "gateway.toml"), await readFile(join(UNITS, "gateway.toml")));
    const fill = async (unit: string, instance = "") =>
      (await execStart(unit, { i: instance, S: join(dir, "state"), d: credentials, "%": "%" }))
        // The config files' /etc/blockmend is this test's directory; the first two words run the CLI.
        .map((w) => w.replace("/etc/blockmend", etc))
        .slice(2);

    // The example listens on 0.0.0.0; tests listen on loopback only (a flag overrides the file).
    const store = await startBlockmend([
      ...(await fill("blockmend-chunkstore@.service", "a")),
      "--listen",
      "127.0.0.1:0",
    ]);
    expect(store.output()).toContain(`serving file:${join(dir, "state/blockmend/chunkstore-a")}`);
    const token = (await readFile(join(credentials, "store-token"), "utf8")).trim();
    expect((await fetch(`${store.url}/v1/health`)).status).toBe(401);
    expect(
      (await fetch(`${store.url}/v1/health`, { headers: { authorization: `Bearer ${token}` } })).status,
    ).toBe(200);

    const gw = await startBlockmend([
      ...(await fill("blockmend-gateway.service")),
      // The example's stores are other machines; here, the one store above.
      ...["--store", `a=${store.url}`, "--replicas", "1", "--min-replicas", "1"],
      ...["--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0"],
    ]);
    const stores = (await (await fetch(`${gw.url}/v1/stores`)).json()) as { stores: { state: string }[] };
    expect(stores.stores.map((s) => s.state)).toEqual(["in-sync"]);
  }, 60_000);
});
