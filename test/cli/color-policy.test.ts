/** Colour only on a terminal: `cli/color-policy.ts`, through the real CLI. */
import { expect, test } from "bun:test";
import { blockmendCommand } from "../support/processes.ts";
import { requireTools } from "../support/tools.ts";

async function help(env: Record<string, string>, viaTerminal = false): Promise<string> {
  const cmd = blockmendCommand(["image", "--help"]);
  // script(1) gives the CLI a pseudo-terminal, as a user's shell would.
  const argv = viaTerminal ? ["script", "-qc", cmd.map((a) => `'${a}'`).join(" "), "/dev/null"] : cmd;
  const clean: Record<string, string | undefined> = { ...process.env, TERM: "xterm-256color" };
  for (const name of ["NO_COLOR", "FORCE_COLOR", "CI", "TEST"]) delete clean[name];
  const proc = Bun.spawn(argv, { env: { ...clean, ...env }, stdout: "pipe", stderr: "pipe" });
  const [out] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  return out;
}

test("help is plain through a pipe, with any NO_COLOR or TERM=dumb; coloured on a terminal (CI or not) or with FORCE_COLOR", async () => {
  requireTools("script");
  const ESC = "\u001b[";
  expect(await help({})).toContain("USAGE blockmend image");
  expect(await help({})).not.toContain(ESC);
  expect(await help({}, true)).toContain(ESC);
  expect(await help({ NO_COLOR: "yes" }, true)).not.toContain(ESC);
  expect(await help({ TERM: "dumb" }, true)).not.toContain(ESC);
  expect(await help({ FORCE_COLOR: "1" })).toContain(ESC);
  // citty alone turns colour off for any CI or TEST variable; a CI machine's terminal is a terminal.
  expect(await help({ CI: "true", TEST: "1" }, true)).toContain(ESC);
  expect(await help({ CI: "true", TERM: "dumb", FORCE_COLOR: "1" })).toContain(ESC);
  expect(await help({ CI: "true" })).not.toContain(ESC);
}, 30_000);
