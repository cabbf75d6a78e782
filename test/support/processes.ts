/**
 * Child processes for tests: start the real `blockmend` CLI, wait for the line that
 * says where it listens, and make sure every process a test started is stopped.
 *
 * `BLOCKMEND_TEST_RUNTIME=deno` starts those processes under Deno instead of Bun (the
 * tests themselves still run on bun:test), so the same suites prove Deno-run stores and
 * gateways; scripts/test.sh runs the process-level suites a second time that way.
 */

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Subprocess } from "bun";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CLI = fileURLToPath(new URL("../../cli/main.ts", import.meta.url));
const running = new Set<Subprocess>();

/** The runtime that runs the blockmend processes tests start: "bun" (default) or "deno". */
export const TEST_RUNTIME = parseTestRuntime(process.env.BLOCKMEND_TEST_RUNTIME);

function parseTestRuntime(value: string | undefined): "bun" | "deno" {
  if (value === undefined || value === "" || value === "bun") return "bun";
  if (value === "deno") return "deno";
  throw new TypeError(`BLOCKMEND_TEST_RUNTIME "${value}" is neither "bun" nor "deno"`);
}

/** The command line that runs `blockmend <args>` under {@link TEST_RUNTIME}. */
export function blockmendCommand(args: readonly string[]): string[] {
  if (TEST_RUNTIME === "deno") return [`${ROOT}node_modules/.bin/deno`, "run", "-A", CLI, ...args];
  return [process.execPath, CLI, ...args];
}

/** A started blockmend process and the URL it printed. */
export interface StartedProcess {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  readonly url: string;
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
  /** SIGKILL (or another signal) and wait for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Runs `blockmend <args>` (under Bun, or Deno: {@link TEST_RUNTIME}) and resolves once it
 * prints `http://HOST:PORT`.
 * Rejects with its output if it exits or stays silent for `timeoutMs`.
 */
export async function startBlockmend(args: string[], timeoutMs = 20_000): Promise<StartedProcess> {
  const proc = Bun.spawn(blockmendCommand(args), { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  running.add(proc);
  let out = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    const reader = stream.getReader();
    for (let r = await reader.read(); !r.done; r = await reader.read())
      out += decoder.decode(r.value, { stream: true });
  };
  void pump(proc.stdout);
  void pump(proc.stderr);
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const m = /(https?:\/\/127\.0\.0\.1:\d+)/.exec(out);
    if (m) {
      return {
        proc,
        url: m[1]!,
        output: () => out,
        kill: async (signal = "SIGKILL") => {
          proc.kill(signal);
          await proc.exited;
          running.delete(proc);
        },
      };
    }
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill("SIGKILL");
      running.delete(proc);
      throw new Error(`blockmend ${args.join(" ")} did not start:\n${out}`);
    }
    await Bun.sleep(20);
  }
}

/** Kills every process started through this module (call from afterAll). */
export async function killAll(): Promise<void> {
  for (const p of running) {
    p.kill("SIGKILL");
    await p.exited;
  }
  running.clear();
}

/** A started gateway process: its HTTP API URL and its NBD URL (`nbd://127.0.0.1:PORT`). */
export interface StartedGateway extends StartedProcess {
  readonly nbd: string;
  readonly nbdPort: number;
}

/**
 * Starts `blockmend gateway` over the given stores (id -> URL) with 2 replicas, min 1,
 * NBD and HTTP on free loopback ports, and its own state directory (a new one unless
 * `stateDir` names one: a restarted gateway keeps its id).
 */
export async function startGatewayProcess(
  stores: Record<string, string>,
  options: { stateDir?: string; extra?: string[] } = {},
): Promise<StartedGateway & { stateDir: string }> {
  const stateDir = options.stateDir ?? mkdtempSync(join(tmpdir(), "blockmend-gw-"));
  const gw = await startBlockmend([
    "gateway",
    ...Object.entries(stores).flatMap(([id, url]) => ["--store", `${id}=${url}`]),
    ...["--replicas", "2", "--min-replicas", "1", "--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0"],
    ...["--state-dir", stateDir],
    ...(options.extra ?? []),
  ]);
  const nbd = /(nbd:\/\/127\.0\.0\.1:(\d+))/.exec(gw.output())!;
  return { ...gw, nbd: nbd[1]!, nbdPort: Number(nbd[2]), stateDir };
}

/** Starts `blockmend chunkstore` on `dir` (a witness if asked), on `port` or a free one. */
export function startStoreProcess(
  dir: string,
  options: { witness?: boolean; port?: string | number; reserveBytes?: number } = {},
): Promise<StartedProcess> {
  return startBlockmend([
    "chunkstore",
    "--dir",
    dir,
    "--listen",
    `127.0.0.1:${options.port ?? 0}`,
    ...(options.witness ? ["--witness"] : []),
    ...(options.reserveBytes !== undefined ? ["--reserve-bytes", String(options.reserveBytes)] : []),
  ]);
}
