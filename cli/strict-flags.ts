/**
 * Commands that refuse what they do not understand. citty ignores unknown flags, so
 * `blockmend up --tls-dri certs` would start a gateway without TLS and say nothing;
 * {@link strictCommand} makes that a one-line error with exit status 2, and prints
 * startup refusals ({@link NbdConfigError}) as one line with exit status 1.
 *
 * @module
 */
import process from "node:process";
import type { ArgsDef, CommandDef } from "citty";
import { NbdConfigError } from "../gateway/nbd/listen-policy.ts";

/** A command line that cannot be right: printed as one line, exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/**
 * Throws {@link UsageError} for the first argument of `rawArgs` that `args` does not
 * define: an unknown `--flag`, `--no-flag` of a non-boolean, a short flag, or a
 * positional argument where none is defined. Everything after `--` is left alone.
 *
 * @example
 * rejectUnknownFlags(["--tls-dri", "x"], { "tls-dir": { type: "string" } }); // throws: unknown flag --tls-dri
 */
export function rejectUnknownFlags(rawArgs: readonly string[], args: ArgsDef): void {
  const positional = Object.values(args).some((a) => a.type === "positional");
  const byName = new Map<string, ArgsDef[string]>();
  for (const [name, def] of Object.entries(args)) {
    byName.set(name, def);
    const aliases = "alias" in def && def.alias !== undefined ? def.alias : [];
    for (const alias of Array.isArray(aliases) ? aliases : [aliases]) byName.set(alias, def);
  }
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i]!;
    if (arg === "--") return;
    if (!arg.startsWith("-") || arg === "-") {
      if (positional) continue;
      throw new UsageError(`unexpected argument "${arg}"`);
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq < 0 ? body : body.slice(0, eq);
    let def = byName.get(name);
    if (def === undefined && name.startsWith("no-")) {
      const negated = byName.get(name.slice(3));
      if (negated?.type === "boolean") def = negated;
    }
    if (def === undefined) throw new UsageError(`unknown flag ${arg.startsWith("--") ? "--" : "-"}${name}`);
    // A string or enum flag without "=VALUE" takes the next argument as its value.
    if (eq < 0 && def.type !== "boolean" && def.type !== "positional") i++;
  }
}

/**
 * Wraps a citty command (`parent`: the command it is a subcommand of, for messages): unknown flags are refused before `run`, and usage errors and
 * NBD startup refusals thrown by `run` become one line on stderr (exit 2 and 1).
 * Other errors propagate as before (citty prints them with their stack).
 */
export function strictCommand<T extends ArgsDef>(command: CommandDef<T>, parent?: string): CommandDef<T> {
  const run = command.run;
  return {
    ...command,
    async run(context) {
      const own = (command.meta as { name?: string } | undefined)?.name ?? "";
      const name = ["blockmend", parent, own].filter(Boolean).join(" ");
      try {
        rejectUnknownFlags(context.rawArgs, (await resolve(command.args)) ?? {});
        return await run?.(context);
      } catch (error) {
        if (error instanceof UsageError) {
          console.error(`${name}: ${error.message} (${name} --help lists the flags)`);
          process.exit(2);
        }
        if (error instanceof NbdConfigError) {
          console.error(`${name}: ${error.message}`);
          process.exit(1);
        }
        throw error;
      }
    },
  };
}

async function resolve<V>(
  value: V | Promise<V> | (() => V) | (() => Promise<V>) | undefined,
): Promise<V | undefined> {
  return typeof value === "function" ? await (value as () => V | Promise<V>)() : await value;
}
