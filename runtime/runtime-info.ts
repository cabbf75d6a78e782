/**
 * Which JavaScript runtime runs this process, for adapters that must work around what a
 * runtime's Node.js compatibility layer does not do (see `tls-server.ts`).
 * (`serve-http.ts` predates this file and still checks `globalThis.Bun`/`Deno` itself.)
 *
 * @module
 */
import process from "node:process";

/** Name and version of the running runtime. */
export interface RuntimeInfo {
  readonly name: "bun" | "deno" | "node";
  readonly version: string;
}

/**
 * The runtime this process runs on.
 *
 * @example
 * const { name, version } = currentRuntime(); // { name: "bun", version: "1.4.5" }
 */
export function currentRuntime(): RuntimeInfo {
  const g = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string } } };
  if (g.Bun) return { name: "bun", version: g.Bun.version };
  if (g.Deno) return { name: "deno", version: g.Deno.version.deno };
  return { name: "node", version: process.versions.node ?? "unknown" };
}

/** `Bun 1.4.5`, for messages. */
export function runtimeLabel(runtime: RuntimeInfo = currentRuntime()): string {
  const name = { bun: "Bun", deno: "Deno", node: "Node.js" }[runtime.name];
  return `${name} ${runtime.version}`;
}
