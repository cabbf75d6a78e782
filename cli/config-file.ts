/**
 * `--config FILE` for every command: a JSON (`.json`) or TOML (`.toml`) file whose keys
 * are the command's own flag names, turned into command-line defaults before citty
 * parses the command. A flag given on the command line overrides the file's key of the
 * same name (for a repeatable flag such as `--store`, the command line's values replace
 * the file's list). Unknown keys are an error naming the key, so a typo never silently
 * falls back to a default.
 *
 * ```toml
 * # blockmend chunkstore --config /etc/blockmend/store.toml
 * dir = "/var/lib/blockmend/store"
 * listen = "0.0.0.0:9400"
 * token-file = "/etc/blockmend/store-token"
 * ```
 *
 * Values: a string or a number for a string flag, true or false for a boolean flag
 * (false becomes `--no-NAME`), a list of strings or numbers for a repeatable string flag.
 * Paths are passed as written, so a relative one is relative to the working directory,
 * as on the command line.
 */
import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { parse as parseToml } from "smol-toml";

/** The flag that names the config file. */
export const CONFIG_FLAG = "--config";

type Resolvable<T> = T | Promise<T> | (() => T | Promise<T>);

/** The parts of a citty command definition this module reads. */
export interface CommandShape {
  readonly meta?: Resolvable<{ readonly name?: string } | undefined>;
  readonly args?: Resolvable<Record<string, ArgShape> | undefined>;
  readonly subCommands?: Resolvable<Record<string, Resolvable<CommandShape>> | undefined>;
}

/** The parts of a citty argument definition this module reads. */
export interface ArgShape {
  readonly type?: string;
  readonly alias?: string | readonly string[];
}

/** Reads a file as text; a parameter so tests need no files. */
export type ReadText = (path: string) => Promise<string>;

/**
 * Returns `argv` (the arguments after the program name) with `--config FILE` removed and
 * the file's keys inserted as flags right after the (sub)command they configure, except
 * keys whose flag `argv` already has. Returns `argv` unchanged when it has no `--config`.
 * Throws a TypeError naming the file and the key for anything the file cannot mean.
 *
 * @example
 * await argvWithConfigFile(["chunkstore", "--config", "store.toml", "--listen", "127.0.0.1:9401"], main)
 * // ["chunkstore", "--dir=/var/lib/blockmend/store", "--token-file=...", "--listen", "127.0.0.1:9401"]
 */
export async function argvWithConfigFile(
  argv: readonly string[],
  root: CommandShape,
  readText: ReadText = (path) => readFile(path, "utf8"),
): Promise<string[]> {
  const { file, rest } = takeConfigFlag(argv);
  if (file === undefined) return [...argv];
  const { command, name, depth } = await leafCommand(root, rest);
  const values = parseConfigText(file, await readText(file).catch(cannotRead(file)));
  const args = (await resolve(command.args)) ?? {};
  const given = flagsGiven(rest.slice(depth), args);
  const inserted: string[] = [];
  for (const [key, value] of Object.entries(values)) {
    const def = args[key];
    if (def === undefined || def.type === "positional") {
      const known = Object.entries(args)
        .filter(([, d]) => d.type !== "positional")
        .map(([k]) => k);
      const why = def ? "is a positional argument, not a flag" : "is not a flag of this command";
      throw new TypeError(
        `Config file "${file}": unknown key "${key}" (${why}; ${name} takes: ${known.join(", ") || "no flags"})`,
      );
    }
    if (given.has(key)) continue;
    inserted.push(...flagsFor(file, key, def, value));
  }
  return [...rest.slice(0, depth), ...inserted, ...rest.slice(depth)];
}

/** Parses a config file's text by its extension into a flat object of flag values. */
export function parseConfigText(file: string, text: string): Record<string, unknown> {
  const ext = extname(file).toLowerCase();
  let value: unknown;
  try {
    if (ext === ".json") value = JSON.parse(text);
    else if (ext === ".toml") value = parseToml(text);
    else throw new TypeError(`Config file "${file}": name it *.json or *.toml, so its format is known`);
  } catch (err) {
    if (err instanceof TypeError && err.message.startsWith("Config file")) throw err;
    throw new TypeError(`Config file "${file}" is not valid ${ext.slice(1).toUpperCase()}: ${message(err)}`, {
      cause: err,
    });
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError(`Config file "${file}" must hold an object of flag names and values`);
  }
  return value as Record<string, unknown>;
}

/** Removes the one `--config FILE` (or `--config=FILE`) before any `--`. */
function takeConfigFlag(argv: readonly string[]): { file?: string; rest: string[] } {
  const rest: string[] = [];
  let file: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      rest.push(...argv.slice(i));
      break;
    }
    let value: string | undefined;
    if (a === CONFIG_FLAG) {
      value = argv[++i];
      if (value === undefined || value.startsWith("-")) throw new TypeError(`${CONFIG_FLAG} needs a FILE`);
    } else if (a.startsWith(`${CONFIG_FLAG}=`)) {
      value = a.slice(CONFIG_FLAG.length + 1);
    } else {
      rest.push(a);
      continue;
    }
    if (file !== undefined) throw new TypeError(`${CONFIG_FLAG} is given twice ("${file}", "${value}")`);
    file = value;
  }
  return { file, rest };
}

/** Follows the subcommand names in `argv` from `root`, as citty does, to the command that runs. */
async function leafCommand(
  root: CommandShape,
  argv: readonly string[],
): Promise<{ command: CommandShape; name: string; depth: number }> {
  let command = root;
  let name = (await resolve(root.meta))?.name ?? "the command";
  let depth = 0;
  while (true) {
    const subs = await resolve(command.subCommands);
    if (!subs || Object.keys(subs).length === 0) return { command, name, depth };
    const args = (await resolve(command.args)) ?? {};
    let i = depth;
    while (i < argv.length && argv[i]!.startsWith("-")) {
      if (argv[i] === "--") return { command, name, depth };
      if (!argv[i]!.includes("=") && argTaking(argv[i]!, args)) i++;
      i++;
    }
    const sub = argv[i];
    if (sub === undefined || !(sub in subs)) return { command, name, depth };
    command = await resolve(subs[sub]!);
    name = `${name} ${sub}`;
    depth = i + 1;
  }
}

/** True if `flag` is a string flag of `args` (it takes the next argument as its value). */
function argTaking(flag: string, args: Record<string, ArgShape>): boolean {
  const bare = flag.replace(/^-{1,2}/, "");
  return Object.entries(args).some(
    ([key, def]) => (def.type === "string" || def.type === "enum") && namesOf(key, def).includes(bare),
  );
}

/** The flag names (keys of `args`) that `argv` sets, by any spelling citty accepts. */
function flagsGiven(argv: readonly string[], args: Record<string, ArgShape>): Set<string> {
  const given = new Set<string>();
  for (const a of argv) {
    if (a === "--") break;
    if (!a.startsWith("-")) continue;
    const bare = a.replace(/^-{1,2}/, "").split("=")[0]!;
    for (const [key, def] of Object.entries(args)) {
      const names = namesOf(key, def);
      if (names.includes(bare) || (bare.startsWith("no-") && names.includes(bare.slice(3)))) given.add(key);
    }
  }
  return given;
}

function namesOf(key: string, def: ArgShape): string[] {
  const alias = def.alias === undefined ? [] : typeof def.alias === "string" ? [def.alias] : [...def.alias];
  return [key, camel(key), ...alias];
}

/** The command-line flags for one key of the file. */
function flagsFor(file: string, key: string, def: ArgShape, value: unknown): string[] {
  const bad = (expected: string) =>
    new TypeError(`Config file "${file}": key "${key}" must be ${expected}, not ${JSON.stringify(value)}`);
  if (def.type === "boolean") {
    if (typeof value !== "boolean") throw bad("true or false");
    return [value ? `--${key}` : `--no-${key}`];
  }
  const scalar = (v: unknown): string => {
    if (typeof v === "string") return v;
    if ((typeof v === "number" && Number.isFinite(v)) || typeof v === "bigint") return String(v);
    throw bad("a string or a number (or a list of them, for a repeatable flag)");
  };
  const list = Array.isArray(value) ? value : [value];
  // `--key=value`: a value that starts with "-" is never taken for a flag.
  return list.map((v) => `--${key}=${scalar(v)}`);
}

function camel(key: string): string {
  return key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

async function resolve<T>(value: Resolvable<T>): Promise<T> {
  return typeof value === "function" ? await (value as () => T | Promise<T>)() : await value;
}

function cannotRead(file: string) {
  return (err: unknown): never => {
    throw new TypeError(`Cannot read config file "${file}": ${message(err)}`, { cause: err });
  };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
