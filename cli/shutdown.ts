/**
 * Graceful shutdown of a server command: says its PID when it starts, runs the closer
 * once on SIGINT, SIGTERM or SIGHUP, says when it has stopped, then exits.
 */

/** The signals that stop a server gracefully (SIGHUP too: the terminal or the wrapper went away). */
export const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * Prints `<name>: running as pid N` and registers `close` to run on the first of
 * {@link STOP_SIGNALS}; prints what `close` resolved with (what it flushed, say), then
 * `<name>: stopped (SIGTERM)`, and exits 0 when it settles,
 * or exits 1 if it fails. Later signals while closing are ignored: one Ctrl-C reaches a
 * process started by `bin/blockmend.js` twice (from the terminal and forwarded).
 *
 * @param name how the server names itself; default `blockmend <subcommand>`.
 */
export function onShutdown(close: () => Promise<string | undefined | void>, name = defaultName()): void {
  let closing = false;
  const handler = (signal: string) => {
    if (closing) return;
    closing = true;
    console.log(`${name}: stopping (${signal})`);
    close().then(
      (summary) => {
        if (summary) console.log(`${name}: ${summary}`);
        exitAfter(`${name}: stopped (${signal})`, 0);
      },
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

/**
 * Closes a gateway and says what that flushed: the writes acknowledged to clients but not
 * yet committed (a VM that did not flush loses nothing it wrote to a gateway that stopped
 * cleanly).
 */
export async function closeReporting(gw: {
  images: { unflushed(): { images: number; bytes: number } };
  close(): Promise<void>;
}): Promise<string> {
  const { images, bytes } = gw.images.unflushed();
  await gw.close();
  return images === 0
    ? "every acknowledged write was committed already; nothing to flush"
    : `flushed ${bytes} bytes of unflushed writes in ${images} image(s) to the stores`;
}
