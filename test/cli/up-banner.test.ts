/**
 * `blockmend up`'s banner, acted upon: every line under "Try, in another terminal:" is run
 * as printed (with `npx blockmend` as this checkout's CLI); after a restart on the same
 * data directory the banner lists the images there and suggests a name not taken, and
 * its lines work again. `GET /v1` answers with an index of the API.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blockmendCommand, killAll, startBlockmend } from "../support/processes.ts";
import { requireTools } from "../support/tools.ts";

const dirs: string[] = [];
afterAll(async () => {
  await killAll();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** The banner's suggested commands, once the banner is complete. */
async function suggestions(output: () => string): Promise<string[]> {
  for (let i = 0; i < 100 && !/Try, in another terminal:\n(?: {2}.*\n){3}/.test(output()); i++)
    await Bun.sleep(100);
  const after = output().split("Try, in another terminal:\n")[1] ?? "";
  return after
    .split("\n")
    .filter((l) => l.startsWith("  "))
    .map((l) => l.trim().replace(/\s+#.*$/, ""));
}

/** Runs one suggested line through a shell, `npx blockmend` being this checkout's CLI. */
async function runLine(line: string): Promise<{ code: number; out: string }> {
  const cli = blockmendCommand([])
    .map((a) => `'${a}'`)
    .join(" ");
  const proc = Bun.spawn(["bash", "-c", line.replace(/^npx blockmend/, cli)], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, out: out + err };
}

test("every suggestion of the banner runs as printed, on a fresh data directory and after a restart", async () => {
  requireTools("qemu-io", "nbdinfo");
  const data = await mkdtemp(join(tmpdir(), "blockmend-banner-"));
  dirs.push(data);
  const args = ["up", "--data", data, "--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0"];
  for (const [round, name] of [
    [1, "web01"],
    [2, "web02"],
  ] as const) {
    const up = await startBlockmend(args, 60_000);
    const lines = await suggestions(() => up.output());
    expect(lines[0]).toStartWith(`npx blockmend image create ${name} 1G --api ${up.url}`);
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (const line of lines) {
      const r = await runLine(line);
      expect(`${line}\n=> exit ${r.code}\n${r.out}`).toContain("=> exit 0");
    }
    if (round === 2) expect(up.output()).toContain("Images:    web01");
    const index = (await (await fetch(`${up.url}/v1`)).json()) as {
      name: string;
      links: Record<string, string>;
    };
    expect(index.name).toBe("blockmend");
    expect(index.links.openapi).toBe("/v1/openapi.json");
    expect((await fetch(`${up.url}${index.links.images}`)).status).toBe(200);
    await up.kill("SIGTERM");
  }
}, 120_000);
