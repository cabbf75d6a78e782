/**
 * Which JavaScript runtime runs this process. This is the one place in blockmend that
 * looks for runtime globals; every runtime-specific choice (the HTTP server adapter, the
 * worker pool) asks here instead of testing `globalThis.Bun` or `Deno` itself.
 * (The same idea as hono's `getRuntimeKey()`.)
 */

/** The runtimes blockmend knows. `node` is detected so that errors can name it; it is not supported. */
export type RuntimeKey = "bun" | "deno" | "node" | "other";

/** The runtime of this process (workers included), from the globals each one defines. */
export function runtimeKey(): RuntimeKey {
  const g = globalThis as { Bun?: unknown; Deno?: unknown; process?: { versions?: { node?: string } } };
  if (g.Bun !== undefined) return "bun";
  if (g.Deno !== undefined) return "deno";
  if (g.process?.versions?.node !== undefined) return "node";
  return "other";
}

/**
 * The runtime's own global object (`Bun` or `Deno`), typed by the caller with the few
 * members it uses; undefined on any other runtime. Adapters in `runtime/` use this so
 * they type-check whichever runtime's types are loaded.
 */
export function runtimeGlobal<T>(key: "bun" | "deno"): T | undefined {
  const g = globalThis as { Bun?: unknown; Deno?: unknown };
  return (key === "bun" ? g.Bun : g.Deno) as T | undefined;
}
