#!/usr/bin/env node
// `npx blockmend`: runs the TypeScript CLI on the Bun that npm installed as a dependency,
// so a machine needs only Node and npm.
//
// Node cannot exec() another program, so this process stays, as a thin parent that must
// never outlive its server nor leave it running:
// - SIGINT, SIGTERM and SIGHUP sent to this process are forwarded to the child;
// - when the child ends, this process ends the same way: the same exit code, or the same
//   signal re-raised on itself (so `kill PID` of this process looks, to whoever started
//   it, exactly like killing the server);
// - if this process is killed with SIGKILL (nothing can be forwarded), the child notices
//   that its parent is gone (cli/wrapper-watch.ts, through BLOCKMEND_WRAPPER_PID) and stops
//   itself gracefully within a quarter of a second;
// - under npm (`npx blockmend`, `npm start`: npm_command is set) this process runs as
//   npm -> sh -c -> node. npm, killed with SIGTERM, kills that shell and sends this process
//   nothing; killed with SIGHUP or SIGKILL, it leaves the shell running. So under npm, when
//   this process's parent changes, or the parent shell's parent (npm) does, the child is sent
//   SIGTERM as if it had been forwarded. (Not outside npm: `node bin/blockmend.js up &` in a
//   script that then exits must keep running.)
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { constants } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"];
const require = createRequire(import.meta.url);
const bun = join(dirname(require.resolve("bun/package.json")), "bin", "bun.exe");
const main = fileURLToPath(new URL("../cli/main.ts", import.meta.url));
// Process settings, as runtime/process-env.ts explains (the allocator: ~15% more write
// throughput; the file I/O thread pool: reads never wait ~200 ms behind synced writes).
const env = {
  MIMALLOC_PURGE_DELAY: "-1",
  Malloc: "1",
  UV_THREADPOOL_SIZE: "16",
  ...process.env,
  BLOCKMEND_WRAPPER_PID: String(process.pid),
};
const child = spawn(bun, [main, ...process.argv.slice(2)], { stdio: "inherit", env });

const forward = (signal) => {
  if (child.exitCode === null && child.signalCode === null) child.kill(signal);
};
for (const signal of SIGNALS) process.on(signal, forward);

if (process.env.npm_command) {
  const parent = process.ppid;
  // npm's own PID, when the parent is the shell npm runs commands with (Linux: from /proc).
  const npm = /^(ba|da)?sh$/.test(readProc(parent, "comm")) ? parentOf(parent) : undefined;
  const watch = setInterval(() => {
    if (process.ppid === parent && (npm === undefined || parentOf(parent) === npm)) return;
    clearInterval(watch);
    forward("SIGTERM");
  }, 250);
  watch.unref();
}

/** The parent PID of `pid`, or undefined where /proc cannot tell. */
function parentOf(pid) {
  const stat = readProc(pid, "stat");
  const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  return Number.isInteger(ppid) && ppid > 0 ? ppid : undefined;
}

function readProc(pid, file) {
  try {
    return readFileSync(`/proc/${pid}/${file}`, "utf8").trim();
  } catch {
    return "";
  }
}

child.on("error", (err) => {
  console.error(`blockmend: cannot start ${bun}: ${err.message}`);
  process.exit(127);
});
child.on("exit", (code, signal) => {
  if (signal === null) process.exit(code ?? 1);
  // Die of the same signal: drop our handlers so its default action applies.
  for (const s of SIGNALS) process.removeListener(s, forward);
  process.kill(process.pid, signal);
  // A signal whose default action does not end a process: exit as a shell reports a signal death.
  setTimeout(() => process.exit(128 + (constants.signals[signal] ?? 0)), 100);
});
