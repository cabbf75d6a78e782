/** `blockmend chunkstore` as a process: the loopback rule and the token file. */
import { afterAll, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAll, startBlockmend } from "../support/processes.ts";
import { run } from "../support/tools.ts";

const CLI = join(import.meta.dir, "../../cli/main.ts");
afterAll(killAll);

test("refuses a non-loopback address without a token, and says why", async () => {
  const dir = await mkdtemp(join(tmpdir(), "blockmend-cs-"));
  try {
    const r = await run([process.execPath, CLI, "chunkstore", "--dir", dir, "--listen", "0.0.0.0:0"]);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("without a token");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("with --token-file every request needs the bearer token", async () => {
  const dir = await mkdtemp(join(tmpdir(), "blockmend-cs-"));
  try {
    const tokenFile = join(dir, "token");
    await writeFile(tokenFile, "s3cret-token-0123456789\n");
    const withToken = await startBlockmend([
      "chunkstore",
      "--dir",
      join(dir, "store"),
      "--listen",
      "127.0.0.1:0",
      "--token-file",
      tokenFile,
    ]);
    expect((await fetch(`${withToken.url}/v1/health`)).status).toBe(401);
    const ok = await fetch(`${withToken.url}/v1/health`, {
      headers: { authorization: "Bearer s3cret-token-0123456789" },
    });
    expect(ok.status).toBe(200);
    await withToken.kill("SIGTERM");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
