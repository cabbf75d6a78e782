/**
 * `bin/blockmend.js` (what `npx blockmend` runs) with real processes: a signal to the
 * wrapper's PID stops the server behind it, the wrapper exits the way the server did, and
 * a wrapper killed with SIGKILL leaves no server running. Guards issue 15: `kill PID` of
 * the process a user sees used to leave node and bun running and still listening.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GATEWAY_PROCESS_ENV } from "../../runtime/process-env.ts";
import { NbdClient } from "../support/nbd-client.ts";

const ROOT = join(import.meta.dir, "../..");
const WRAPPER = join(ROOT, "bin/blockmend.js");
const dirs: string[] = [];
const pids = new Set<number>();

afterAll(async () => {
  for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** True while `pid` runs (a zombie waiting for its reaper does not count). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await Bun.sleep(25);
  }
}

async function portOpen(port: number): Promise<boolean> {
  try {
    const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
    socket.end();
    return true;
  } catch {
    return false;
  }
}

interface Wrapped {
  /** The process this test started: the wrapper, or the stand-in for npm. */
  readonly wrapper: Bun.Subprocess<"ignore", "pipe", "pipe">;
  /** The server's own PID, as it printed it. */
  readonly serverPid: number;
  readonly port: number;
  output(): string;
}

/**
 * Starts `node bin/blockmend.js <args>` and waits for the server's PID line and listening
 * URL. With `underNpm`, runs it the way `npx blockmend` does: npm (here a stand-in shell)
 * runs `sh -c`, which runs the wrapper, with npm_command set.
 */
async function startWrapped(args: string[], underNpm = false): Promise<Wrapped> {
  const cmd = underNpm
    ? ["sh", "-c", `sh -c 'node ${WRAPPER} "$@"; exit $?' sh "$@"; exit $?`, "npm", ...args]
    : ["node", WRAPPER, ...args];
  const env = underNpm ? { ...process.env, npm_command: "exec" } : { ...process.env, npm_command: "" };
  const wrapper = Bun.spawn(cmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe", env });
  pids.add(wrapper.pid);
  let out = "";
  for (const stream of [wrapper.stdout, wrapper.stderr]) {
    void (async () => {
      const decoder = new TextDecoder();
      const reader = stream.getReader();
      for (let r = await reader.read(); !r.done; r = await reader.read())
        out += decoder.decode(r.value, { stream: true });
    })();
  }
  await waitUntil(
    `the server started:\n${out}`,
    () => /running as pid \d+/.test(out) && /http:\/\/127\.0\.0\.1:\d+/.test(out),
    30_000,
  );
  const serverPid = Number(/running as pid (\d+)/.exec(out)![1]);
  pids.add(serverPid);
  const port = Number(/http:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
  return { wrapper, serverPid, port, output: () => out };
}

/** The parent PID of `pid`, from /proc. */
function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

async function storeDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "blockmend-wrapper-"));
  dirs.push(dir);
  return dir;
}

describe("bin/blockmend.js", () => {
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    test(`${signal} to the wrapper stops the chunk store gracefully; the wrapper exits 0 after it`, async () => {
      const s = await startWrapped(["chunkstore", "--dir", await storeDir(), "--listen", "127.0.0.1:0"]);
      expect(s.serverPid).not.toBe(s.wrapper.pid);
      expect(await portOpen(s.port)).toBe(true);
      process.kill(s.wrapper.pid, signal);
      expect(await s.wrapper.exited).toBe(0);
      expect(alive(s.serverPid)).toBe(false);
      expect(await portOpen(s.port)).toBe(false);
      await waitUntil("the stop line is printed", () => s.output().includes(`stopped (${signal})`));
    }, 60_000);
  }

  test("the server runs with the process settings of runtime/process-env.ts (allocator, file I/O threads)", async () => {
    const s = await startWrapped(["chunkstore", "--dir", await storeDir(), "--listen", "127.0.0.1:0"]);
    const environ = readFileSync(`/proc/${s.serverPid}/environ`, "utf8").split("\0");
    for (const [key, value] of Object.entries(GATEWAY_PROCESS_ENV))
      expect(environ).toContain(`${key}=${value}`);
    process.kill(s.wrapper.pid, "SIGTERM");
    expect(await s.wrapper.exited).toBe(0);
  }, 60_000);

  test("SIGKILL of the wrapper: the orphaned server notices and stops by itself, port closed", async () => {
    const s = await startWrapped(["chunkstore", "--dir", await storeDir(), "--listen", "127.0.0.1:0"]);
    process.kill(s.wrapper.pid, "SIGKILL");
    await s.wrapper.exited;
    await waitUntil("the server is gone", () => !alive(s.serverPid), 10_000);
    expect(await portOpen(s.port)).toBe(false);
  }, 60_000);

  test("a server killed by a signal makes the wrapper die of the same signal", async () => {
    const s = await startWrapped(["chunkstore", "--dir", await storeDir(), "--listen", "127.0.0.1:0"]);
    process.kill(s.serverPid, "SIGKILL");
    await s.wrapper.exited;
    expect(s.wrapper.signalCode).toBe("SIGKILL");
  }, 60_000);

  test("a command that fails passes its exit code through the wrapper", async () => {
    const proc = Bun.spawn(
      ["node", WRAPPER, "chunkstore", "--dir", await storeDir(), "--listen", "nonsense"],
      {
        cwd: ROOT,
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    pids.add(proc.pid);
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    expect(code).toBe(1);
    expect(out + err).toContain('--listen "nonsense" is not HOST:PORT');
  }, 60_000);

  test("under npm: npm killed with SIGTERM kills its sh -c only; the server stops all the same", async () => {
    const s = await startWrapped(["chunkstore", "--dir", await storeDir(), "--listen", "127.0.0.1:0"], true);
    const wrapperPid = parentOf(s.serverPid);
    const npmShell = parentOf(wrapperPid);
    expect(parentOf(npmShell)).toBe(s.wrapper.pid);
    pids.add(wrapperPid);
    pids.add(npmShell);
    process.kill(npmShell, "SIGTERM"); // what npm does to its child when it gets SIGTERM
    await waitUntil("the server is gone", () => !alive(s.serverPid));
    await waitUntil("the wrapper is gone", () => !alive(wrapperPid));
    expect(await portOpen(s.port)).toBe(false);
    await waitUntil("the stop line is printed", () => s.output().includes("stopped (SIGTERM)"));
  }, 60_000);

  test("under npm: npm killed with SIGKILL leaves its sh -c; the server stops all the same", async () => {
    const s = await startWrapped(["chunkstore", "--dir", await storeDir(), "--listen", "127.0.0.1:0"], true);
    const wrapperPid = parentOf(s.serverPid);
    pids.add(wrapperPid);
    pids.add(parentOf(wrapperPid));
    process.kill(s.wrapper.pid, "SIGKILL");
    await waitUntil("the server is gone", () => !alive(s.serverPid));
    await waitUntil("the wrapper is gone", () => !alive(wrapperPid));
    expect(await portOpen(s.port)).toBe(false);
  }, 60_000);

  test("outside npm, a wrapper whose parent exits keeps serving (a script may start it in the background)", async () => {
    const dir = await storeDir();
    const log = join(dir, "out.log");
    // The shell starts the wrapper in the background and exits at once.
    const sh = Bun.spawn(
      [
        "sh",
        "-c",
        `node ${WRAPPER} chunkstore --dir ${join(dir, "s")} --listen 127.0.0.1:0 >${log} 2>&1 & echo $!`,
      ],
      { cwd: ROOT, stdout: "pipe", env: { ...process.env, npm_command: "" } },
    );
    const wrapperPid = Number((await new Response(sh.stdout).text()).trim());
    pids.add(wrapperPid);
    await sh.exited;
    let out = "";
    await waitUntil("the server started", () => {
      out = readFileSync(log, "utf8");
      return /running as pid \d+/.test(out) && /http:\/\/127\.0\.0\.1:\d+/.test(out);
    });
    const serverPid = Number(/running as pid (\d+)/.exec(out)![1]);
    pids.add(serverPid);
    await Bun.sleep(1000); // four times the wrappers' check interval
    expect(alive(serverPid)).toBe(true);
    expect(await portOpen(Number(/127\.0\.0\.1:(\d+)/.exec(out)![1]))).toBe(true);
    process.kill(wrapperPid, "SIGTERM");
    await waitUntil("the server is gone", () => !alive(serverPid));
  }, 60_000);

  test("blockmend up behind the wrapper: SIGTERM closes NBD and HTTP and leaves no process", async () => {
    const dir = await storeDir();
    const s = await startWrapped(["up", "--data", dir, "--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
    const nbdPort = Number(/nbd:\/\/127\.0\.0\.1:(\d+)/.exec(s.output())![1]);
    expect(await portOpen(nbdPort)).toBe(true);
    process.kill(s.wrapper.pid, "SIGTERM");
    expect(await s.wrapper.exited).toBe(0);
    expect(alive(s.serverPid)).toBe(false);
    expect(await portOpen(nbdPort)).toBe(false);
    expect(await portOpen(s.port)).toBe(false);
    await waitUntil("the stop line is printed", () => s.output().includes("blockmend up: stopped (SIGTERM)"));
  }, 60_000);

  test("blockmend up stopped with writes not yet flushed says what it flushed, and a restart reads them back", async () => {
    const dir = await storeDir();
    const args = ["up", "--data", dir, "--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0"];
    const s = await startWrapped(args);
    const created = await fetch(`http://127.0.0.1:${s.port}/v1/images`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "vm", size: 1024 * 1024 }),
    });
    expect(created.status).toBe(201);
    const nbdPort = Number(/nbd:\/\/127\.0\.0\.1:(\d+)/.exec(s.output())![1]);
    const nbd = await NbdClient.connect(nbdPort, "vm");
    const data = crypto.getRandomValues(new Uint8Array(65536));
    await nbd.write(0, data); // acknowledged, not flushed: the background commit waits 1 s
    process.kill(s.wrapper.pid, "SIGTERM");
    expect(await s.wrapper.exited).toBe(0);
    expect(s.output()).toContain(
      "blockmend up: flushed 65536 bytes of unflushed writes in 1 image(s) to the stores",
    );
    nbd.close();
    const again = await startWrapped(args);
    const port2 = Number(/nbd:\/\/127\.0\.0\.1:(\d+)/.exec(again.output())![1]);
    const reader = await NbdClient.connect(port2, "vm");
    expect(await reader.read(0, 65536)).toEqual(data);
    reader.close();
    process.kill(again.wrapper.pid, "SIGTERM");
    expect(await again.wrapper.exited).toBe(0);
    expect(again.output()).toContain("nothing to flush");
  }, 60_000);
});
