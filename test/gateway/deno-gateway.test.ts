/** The whole gateway (`blockmend up`) runs unbuilt on Deno too, and QEMU's client can use it. */
import { expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireTools, runOk } from "../support/tools.ts";

const ROOT = join(import.meta.dir, "../..");

test("blockmend up under Deno serves NBD and the HTTP API", async () => {
  requireTools("qemu-io");
  const dir = await mkdtemp(join(tmpdir(), "blockmend-deno-"));
  const proc = Bun.spawn(
    [
      join(ROOT, "node_modules/.bin/deno"),
      "run",
      "-A",
      "cli/main.ts",
      "up",
      "--data",
      dir,
      "--nbd",
      "127.0.0.1:0",
      "--http",
      "127.0.0.1:0",
    ],
    { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
  );
  try {
    const reader = proc.stdout.getReader();
    let out = "";
    const deadline = Date.now() + 30_000;
    while (!/HTTP API:\s+(http:\/\/127\.0\.0\.1:\d+)/.test(out) || !/nbd:\/\/127\.0\.0\.1:\d+/.test(out)) {
      if (Date.now() > deadline) throw new Error(`deno gateway did not start:\n${out}`);
      const r = await reader.read();
      if (r.done) throw new Error(`deno gateway exited:\n${out}${await new Response(proc.stderr).text()}`);
      out += new TextDecoder().decode(r.value);
    }
    const api = /HTTP API:\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
    const nbd = /(nbd:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
    const res = await fetch(`${api}/v1/images`, {
      method: "POST",
      body: JSON.stringify({ name: "d", size: 16 * 1024 * 1024 }),
      headers: { "content-type": "application/json" },
    });
    expect(res.status).toBe(201);
    const io = await runOk([
      "qemu-io",
      "-f",
      "raw",
      "-c",
      "write -P 0x5a 4096 1M",
      "-c",
      "flush",
      "-c",
      "read -P 0x5a 4096 1M",
      `${nbd}/d`,
    ]);
    expect(io).not.toContain("Pattern verification failed");
    expect(io).toContain("read 1048576/1048576");
  } finally {
    proc.kill("SIGKILL");
    await proc.exited;
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);
