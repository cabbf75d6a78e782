/** Process helpers shared by the benchmarks that run real blockmend processes and tools. */
import { join } from "node:path";
import { GATEWAY_PROCESS_ENV } from "../runtime/process-env.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const CLI = join(ROOT, "cli/main.ts");

/** Started blockmend processes by name (a benchmark kills them all at the end). */
export const procs = new Map<string, Bun.Subprocess>();

/** Starts `blockmend <args>` as `npx blockmend` runs it; resolves with its output once it printed a URL. */
export async function startProc(name: string, args: string[]): Promise<string> {
  const p = Bun.spawn([process.execPath, CLI, ...args], {
    stdout: "pipe",
    stderr: "inherit",
    env: { ...process.env, ...GATEWAY_PROCESS_ENV },
  });
  procs.set(name, p);
  const reader = p.stdout.getReader();
  let out = "";
  while (!/http:\/\/127\.0\.0\.1:\d+/.test(out)) {
    const r = await reader.read();
    if (r.done) throw new Error(`${name} exited: ${out}`);
    out += new TextDecoder().decode(r.value);
  }
  reader.releaseLock();
  return out;
}

/** Runs a command; resolves with its stdout, throws with its stderr on failure. */
export async function sh(cmd: string[]): Promise<string> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed: ${err.slice(0, 2000)}`);
  return out;
}

/** The q-quantile of sorted numbers (0 for none). */
export const pct = (xs: number[], q: number) =>
  xs.length ? xs[Math.min(xs.length - 1, Math.floor(xs.length * q))]! : 0;

/** fio's latency log: [ms since start, latency ns, direction (0 read, 1 write), size, offset]. */
export function parseFioLog(raw: string): [number, number, number, number, number][] {
  return raw
    .trim()
    .split("\n")
    .map((l) => l.split(",").map((x) => Number(x.trim())) as [number, number, number, number, number]);
}

/** A fio command line against NBD export `uri` of `sizeMiB` MiB, fresh random data each run; `extra` is the job. */
export function fioOverNbd(uri: string, sizeMiB: number, extra: string[]): string[] {
  return [
    "fio",
    "--name=vm",
    "--ioengine=nbd",
    `--uri=${uri}`,
    `--size=${sizeMiB}M`,
    "--refill_buffers=1",
    "--randrepeat=0",
    ...extra,
  ];
}
