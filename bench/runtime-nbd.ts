/**
 * Runtime benchmark: `qemu-img convert` of a random image into and out of `blockmend up`
 * (three file stores, 2 replicas) run under Bun and under Deno, interleaved round by
 * round (a fresh server and data directory each time, so no run deduplicates against an
 * earlier one), medians per runtime and the Deno / Bun ratio. The read-back is compared
 * with the source once per runtime.
 *
 *   bun bench/runtime-nbd.ts [--size-mib 1024] [--rounds 3]
 */
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GATEWAY_PROCESS_ENV } from "../runtime/process-env.ts";
import { machine, table } from "./_report.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SIZE_MIB = arg("--size-mib", 1024);
const ROUNDS = arg("--rounds", 3);
const ROOT = new URL("..", import.meta.url).pathname;
const DENO = join(ROOT, "node_modules/.bin/deno");

type Runtime = "bun" | "deno";

async function sh(cmd: string[]): Promise<string> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed (${code}): ${(out + err).slice(0, 2000)}`);
  return out;
}

/** Starts `blockmend up` under `runtime` on free ports; resolves with its API and NBD URLs. */
async function startUp(runtime: Runtime, data: string) {
  const args = ["cli/main.ts", "up", "--data", data, "--nbd", "127.0.0.1:0", "--http", "127.0.0.1:0"];
  const proc = Bun.spawn(runtime === "bun" ? [process.execPath, ...args] : [DENO, "run", "-A", ...args], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "inherit",
    // Bun runs as `npx blockmend` runs it, with its allocator settings (no effect on Deno's V8).
    env: { ...process.env, ...GATEWAY_PROCESS_ENV },
  });
  const reader = proc.stdout.getReader();
  let out = "";
  const deadline = Date.now() + 60_000;
  while (!/HTTP API:\s+(http:\/\/[\d.:]+)/.test(out) || !/nbd:\/\/[\d.:]+/.test(out)) {
    const r = await reader.read();
    if (r.done || Date.now() > deadline) throw new Error(`${runtime} blockmend up did not start:\n${out}`);
    out += new TextDecoder().decode(r.value);
  }
  void (async () => {
    while (!(await reader.read()).done) {}
  })();
  return {
    proc,
    api: /HTTP API:\s+(http:\/\/[\d.:]+)/.exec(out)![1]!,
    nbd: /(nbd:\/\/[\d.:]+)/.exec(out)![1]!,
  };
}

async function writeRandomFile(path: string, bytes: number): Promise<void> {
  const f = await open(path, "w");
  const block = new Uint8Array(1024 * 1024);
  for (let o = 0; o < bytes; o += block.length) {
    for (let i = 0; i < block.length; i += 65536) crypto.getRandomValues(block.subarray(i, i + 65536));
    await f.write(block);
  }
  await f.close();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = await mkdtemp(join(tmpdir(), "blockmend-bench-runtime-"));
try {
  const bytes = SIZE_MIB * 1024 * 1024;
  console.log(`# Bun vs Deno over NBD: ${machine()}, Deno ${(await sh([DENO, "--version"])).split("\n")[0]}`);
  console.log(`qemu-img convert of ${SIZE_MIB} MiB of random data, ${ROUNDS} interleaved rounds\n`);
  const src = join(dir, "src.raw");
  await writeRandomFile(src, bytes);
  const results: Record<Runtime, { write: number[]; read: number[] }> = {
    bun: { write: [], read: [] },
    deno: { write: [], read: [] },
  };
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate which runtime goes first, so neither always meets a warm page cache.
    const order: Runtime[] = round % 2 === 0 ? ["bun", "deno"] : ["deno", "bun"];
    for (const runtime of order) {
      const data = join(dir, `data-${runtime}-${round}`);
      const up = await startUp(runtime, data);
      try {
        const res = await fetch(`${up.api}/v1/images`, {
          method: "POST",
          body: JSON.stringify({ name: "bench", size: bytes }),
          headers: { "content-type": "application/json" },
        });
        if (res.status !== 201) throw new Error(`create failed: ${await res.text()}`);
        const url = `${up.nbd}/bench`;
        let t = performance.now();
        await sh(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, url]);
        const write = (performance.now() - t) / 1000;
        const out = join(dir, "out.raw");
        t = performance.now();
        await sh(["qemu-img", "convert", "-f", "raw", "-O", "raw", url, out]);
        const read = (performance.now() - t) / 1000;
        if (round < 2) await sh(["cmp", src, out]);
        await rm(out, { force: true });
        results[runtime].write.push(bytes / 1e6 / write);
        results[runtime].read.push(bytes / 1e6 / read);
        console.error(
          `round ${round + 1} ${runtime}: in ${(bytes / 1e6 / write).toFixed(1)} MB/s, out ${(bytes / 1e6 / read).toFixed(1)} MB/s`,
        );
      } finally {
        up.proc.kill("SIGTERM");
        await up.proc.exited;
        await rm(data, { recursive: true, force: true });
      }
    }
  }
  const rows = (["write", "read"] as const).map((k) => {
    const b = median(results.bun[k]);
    const d = median(results.deno[k]);
    return [
      k === "write" ? "qemu-img convert into blockmend" : "qemu-img convert out of blockmend",
      b,
      d,
      d / b,
      results.bun[k].map((v) => v.toFixed(0)).join(", "),
      results.deno[k].map((v) => v.toFixed(0)).join(", "),
    ];
  });
  table(["direction", "Bun MB/s", "Deno MB/s", "Deno / Bun", "Bun rounds", "Deno rounds"], rows);
} finally {
  await rm(dir, { recursive: true, force: true });
}
