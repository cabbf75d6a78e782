/**
 * Exclusive, non-blocking locks on a file, held for the life of the process: `flock(2)`
 * through the runtime's FFI (Bun's `bun:ffi`, Deno's `Deno.dlopen`). The kernel drops the
 * lock when the process dies, however it dies (SIGKILL included), so a lock is never left
 * stuck; a stale lock file's contents are only a description of its last holder.
 *
 * The lock file holds, while held, a line naming the holder (pid, host, boot id, start
 * time, command) so that the process refused can say who has it.
 */
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";
import { hostname } from "node:os";

const LOCK_EX = 2;
const LOCK_NB = 4;

type Flock = (fd: number, operation: number) => number;

let flockFn: Flock | undefined;

/** The libc `flock` of this runtime, loaded on first use. */
async function loadFlock(): Promise<Flock> {
  if (flockFn) return flockFn;
  const g = globalThis as { Bun?: unknown; Deno?: { dlopen: DenoDlopen } };
  if (g.Bun !== undefined) {
    const ffi = await import("bun:ffi");
    const lib = ffi.dlopen(libcPath(), {
      flock: { args: [ffi.FFIType.i32, ffi.FFIType.i32], returns: ffi.FFIType.i32 },
    });
    flockFn = (fd, op) => lib.symbols.flock(fd, op) as number;
  } else if (g.Deno !== undefined) {
    const lib = g.Deno.dlopen(libcPath(), { flock: { parameters: ["i32", "i32"], result: "i32" } });
    flockFn = (fd, op) => lib.symbols.flock(fd, op) as number;
  } else {
    throw new Error("File locks need Bun or Deno (flock through their FFI); Node.js is not supported");
  }
  return flockFn;
}

type DenoDlopen = (
  path: string,
  symbols: { flock: { parameters: string[]; result: string } },
) => { symbols: { flock: (fd: number, op: number) => number } };

function libcPath(): string {
  if (process.platform === "linux") return "libc.so.6";
  if (process.platform === "darwin") return "libSystem.B.dylib";
  throw new Error(`File locks are not implemented on ${process.platform}`);
}

/** A held lock; `release()` lets it go (closing the file). */
export interface FileLock {
  readonly path: string;
  release(): void;
}

/** The outcome of {@link tryLockFile}: the lock, or a description of who holds it. */
export type LockAttempt = { readonly lock: FileLock } | { readonly heldBy: string };

/**
 * Takes an exclusive lock on `path` (created if missing) without waiting. On success the
 * file is rewritten to describe this process (plus `what`).
 */
export async function tryLockFile(path: string, what = ""): Promise<LockAttempt> {
  const flock = await loadFlock();
  const fd = openSync(path, "a+");
  if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    closeSync(fd);
    const holder = readFileSync(path, "utf8").trim();
    return { heldBy: holder || "a process that has not written its name yet" };
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${describeProcess(what)}\n`);
  let released = false;
  return {
    lock: {
      path,
      release() {
        if (released) return;
        released = true;
        closeSync(fd); // closing the last descriptor drops a flock
      },
    },
  };
}

/** `pid 123 on host (boot 8c1..., started 2026-12-01T08:00:00Z): blockmend chunkstore ...`. */
function describeProcess(what: string): string {
  let boot = "unknown";
  try {
    boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {}
  const started = new Date(Date.now() - performance.now()).toISOString();
  return `pid ${process.pid} on ${hostname()} (boot ${boot}, started ${started})${what ? `: ${what}` : ""}`;
}
