import { expect, test } from "bun:test";
import { fileURLToPath } from "node:url";

const script = fileURLToPath(new URL("./pool-check.ts", import.meta.url));
const bin = (name: string) => fileURLToPath(new URL(`../../node_modules/.bin/${name}`, import.meta.url));

async function runCheck(cmd: string[]): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(cmd, {
    stdout: "pipe",
    stderr: "pipe",
    cwd: fileURLToPath(new URL("../..", import.meta.url)),
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, out: out + err };
}

test("the inline and piscina pools hash correctly, transfer buffers and propagate errors under Bun", async () => {
  const r = await runCheck([process.execPath, script]);
  expect(r.out).toContain("pool-check ok bun");
  expect(r.code).toBe(0);
});

test("the same checks pass under Deno", async () => {
  const r = await runCheck([bin("deno"), "run", "-A", script]);
  expect(r.out).toContain("pool-check ok deno");
  expect(r.code).toBe(0);
});
