/**
 * Stops this process when the `bin/blockmend.js` wrapper that started it is gone. The
 * wrapper forwards SIGINT, SIGTERM and SIGHUP, but a wrapper killed with SIGKILL forwards
 * nothing; without this check the server would keep running and listening, orphaned.
 */
import { setInterval } from "node:timers";

/** The environment variable through which the wrapper passes its own PID. */
export const WRAPPER_PID_ENV = "BLOCKMEND_WRAPPER_PID";

/** How often the parent is checked: a killed wrapper's server stops within about this long. */
const CHECK_INTERVAL_MS = 250;

/**
 * If the wrapper started this process (its PID in {@link WRAPPER_PID_ENV}), sends this
 * process SIGTERM (the graceful stop of every server, the default exit of any other
 * command) as soon as the parent is no longer that PID (the kernel re-parents an
 * orphan). The check never keeps the process alive by itself.
 */
export function stopWhenWrapperDies(env: Record<string, string | undefined> = process.env): void {
  const wrapper = Number(env[WRAPPER_PID_ENV]);
  if (!Number.isInteger(wrapper) || wrapper <= 0) return;
  // Not inherited by processes this one starts: their parent is this process, not the wrapper.
  delete env[WRAPPER_PID_ENV];
  const timer = setInterval(() => {
    if (process.ppid === wrapper) return;
    clearInterval(timer);
    process.kill(process.pid, "SIGTERM");
  }, CHECK_INTERVAL_MS);
  timer.unref();
}
