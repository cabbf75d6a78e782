/**
 * Every expected failure of the CLI is one line on stderr and an exit code, never a stack
 * trace or a page of help: unknown commands, missing arguments, bad values, no gateway.
 */
import { expect, test } from "bun:test";
import { blockmendCommand } from "../support/processes.ts";

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(blockmendCommand(args), {
    env: { ...process.env, BLOCKMEND_API: "http://127.0.0.1:9" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

test.each([
  [["nosuch"], 2, "blockmend: unknown command nosuch (blockmend --help lists the commands)"],
  [
    ["image", "nosuch"],
    2,
    "blockmend image: unknown command nosuch (blockmend image --help lists the commands)",
  ],
  [["image", "create"], 2, "blockmend image create: Missing required positional argument: NAME"],
  [["image", "ls", "--colour"], 2, "blockmend image ls: unknown flag --colour"],
  [["image", "create", "x", "10GB"], 1, '"10GB" is ambiguous: write 10G or 10GiB'],
  [["heal", "wait", "--timeout", "soon"], 2, "--timeout must be a number of seconds above 0"],
  [
    ["gateway", "--store", "a=/tmp/x", "--fold-idle-ms", "soon"],
    2,
    'blockmend gateway: --fold-idle-ms must be a number of milliseconds or never; got "soon"',
  ],
  [["gc", "run", "--grace", "x"], 1, "--grace must be a number of seconds, 0 or more"],
  [["heal", "status"], 1, "Cannot reach the blockmend API at http://127.0.0.1:9"],
  [["store", "safe-to-remove", "d"], 1, "Cannot reach the blockmend API at http://127.0.0.1:9"],
] as const)("blockmend %p: exit %p, one line", async (args, code, line) => {
  const r = await run([...args]);
  expect(r.stderr).toContain(line);
  expect(r.stderr.trim().split("\n")).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at |\.ts:\d+/); // no stack trace, no source
  expect(r.stdout).toBe("");
  expect(r.code).toBe(code);
});
