/**
 * Runs the CLI the way citty's runMain does (help, version, subcommands), but an expected
 * failure (a store unreachable, a directory in use, a refused request) is one line on
 * stderr and exit code 1, never a stack trace; only an unexpected error (a bug) prints one.
 */
import { type CommandDef, runCommand, showUsage } from "citty";

/** Error names that are the user's or the environment's, not a bug. */
const EXPECTED = new Set([
  "ClusterConfigError",
  "StoreLockedError",
  "StateDirLockedError",
  "StoreUnavailableError",
  "StoreIdentityError",
  "UnauthorizedError",
  "GatewayError",
  "RegisterUnavailableError",
  "NotEnoughReplicasError",
  "ImageNotFoundError",
  "ImageExistsError",
  "TypeError",
  "RangeError",
]);

/** Runs `main` with `argv` (default: the process's) and exits on failure. */
export async function runCli(main: CommandDef, argv: string[] = process.argv.slice(2)): Promise<void> {
  try {
    if (argv.includes("--help") || argv.includes("-h")) {
      await showUsage(...(await resolve(main, argv)));
      process.exit(0);
    }
    if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) {
      const meta = typeof main.meta === "function" ? await main.meta() : await main.meta;
      console.log(meta?.version ?? "unknown");
      return;
    }
    await runCommand(main, { rawArgs: argv });
  } catch (err) {
    const e = err as Error & { code?: string };
    if (e?.name === "CLIError" && e.code === "E_NO_COMMAND") {
      // `blockmend` or `blockmend image` alone: what there is to run.
      await showUsage(...(await resolve(main, argv)));
      process.exit(2);
    }
    if (e?.name === "CLIError") {
      // An unknown command, a missing argument: one line, and where the help is.
      const path = ["blockmend", ...(await commandPath(main, argv))].join(" ");
      const message =
        e.code === "E_UNKNOWN_COMMAND" ? e.message.replace(/^Unknown command/, "unknown command") : e.message;
      console.error(
        `${path}: ${message} (${path} --help lists ${e.code === "E_UNKNOWN_COMMAND" ? "the commands" : "the arguments"})`,
      );
      process.exit(2);
    }
    if (EXPECTED.has(e?.name) || (e as { code?: string })?.code === "EADDRINUSE") {
      console.error(`blockmend: ${e.message}`);
      process.exit(1);
    }
    console.error(err);
    process.exit(1);
  }
}

/** The (sub)command `argv` names, and its parent, for usage. */
async function resolve(main: CommandDef, argv: string[]): Promise<[CommandDef, CommandDef | undefined]> {
  let cmd: CommandDef = main;
  let parent: CommandDef | undefined;
  for (const arg of argv) {
    if (arg.startsWith("-")) break;
    const subs = typeof cmd.subCommands === "function" ? await cmd.subCommands() : await cmd.subCommands;
    const next = subs?.[arg];
    if (!next) break;
    parent = cmd;
    cmd = (typeof next === "function" ? await (next as () => Promise<CommandDef>)() : next) as CommandDef;
  }
  return [cmd, parent];
}

/** The names of the (sub)commands `argv` names, as far as they exist. */
async function commandPath(main: CommandDef, argv: string[]): Promise<string[]> {
  const names: string[] = [];
  let cmd: CommandDef = main;
  for (const arg of argv) {
    if (arg.startsWith("-")) break;
    const subs = typeof cmd.subCommands === "function" ? await cmd.subCommands() : await cmd.subCommands;
    const next = subs?.[arg];
    if (!next) break;
    names.push(arg);
    cmd = (typeof next === "function" ? await (next as () => Promise<CommandDef>)() : next) as CommandDef;
  }
  return names;
}
