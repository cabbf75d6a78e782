/** Small helpers shared by the benchmarks: timing, formatting, machine description. */
import { cpus, totalmem } from "node:os";

/** Runs `fn` and returns elapsed seconds. */
export async function timed(fn: () => Promise<void>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

/** MB/s (10^6 bytes per second). */
export function mbps(bytes: number, seconds: number): number {
  return bytes / 1e6 / seconds;
}

/** A one-line description of the machine the numbers came from. */
export function machine(): string {
  const c = cpus();
  const runtime =
    "Bun" in globalThis ? `Bun ${Bun.version}` : "Deno" in globalThis ? "Deno" : `Node ${process.version}`;
  return `${c.length} x ${c[0]?.model ?? "unknown CPU"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${runtime}, ${new Date().toISOString().slice(0, 10)}`;
}

/** Prints a markdown table. */
export function table(headers: string[], rows: (string | number)[][]): void {
  const fmt = (v: string | number) =>
    typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : v;
  console.log(`| ${headers.join(" | ")} |`);
  console.log(`|${headers.map(() => "---").join("|")}|`);
  for (const r of rows) console.log(`| ${r.map(fmt).join(" | ")} |`);
}
