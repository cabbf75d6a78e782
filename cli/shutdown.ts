/**
 * Graceful shutdown of a server command: says its PID when it starts, runs the closer
 * once on SIGINT, SIGTERM or SIGHUP, says when it has stopped, then exits.
 */

/** The signals that stop a server gracefully (SIGHUP too: the terminal or the wrapper went away). */
export const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * Prints `<name>: running as pid N` and registers `close` to run on the first of
 * {@link STOP_SIGNALS}; prints `<name>: stopped (SIGTERM)` and exits 0 when it settles,
 * or exits 1 if it fails. Later signals while closing are ignored: one Ctrl-C reaches a
 * process started by `bin/blockmend.js` twice (from the terminal and forwarded).
 *
 * @param name how the server names itself; default `blockmend <subcommand>`.
 */
export function onShutdown(close: () => Promise<void>, name = defaultName()): void {
  let closing = false;
  const handler = (signal: string) => {
    if (closing) return;
    closing = true;
    console.log(`${name}: stopping (${signal})`);
    close().then(
      () => exitAfter(`${name}: stopped (${signal})`, 0),
      (err) => {
        console.error(`${name}: error while stopping on ${signal}:`, err);
        exitAfter(`${name}: stopped with an error (${signal})`, 1);
      },
    );
  };
  for (const signal of STOP_SIGNALS) process.on(signal, handler);
  console.log(`${name}: running as pid ${process.pid}`);
}

function defaultName(): string {
  const sub = process.argv.slice(2).find((a) => !a.startsWith("-"));
  return sub ? `blockmend ${sub}` : "blockmend";
}

/** Writes the last line and exits once it is written (stdout may be a pipe, where writes are asynchronous). */
function exitAfter(line: string, code: number): void {
  process.stdout.write(`${line}\n`, () => process.exit(code));
  setTimeout(() => process.exit(code), 1000).unref(); // a stdout nobody reads must not keep us running
}
