/** Graceful shutdown on SIGINT/SIGTERM: run the closer once, then exit. */

/** Registers `close` to run on SIGINT or SIGTERM; the process exits when it settles. */
export function onShutdown(close: () => Promise<void>): void {
  let closing = false;
  const handler = (signal: string) => {
    if (closing) return;
    closing = true;
    close().then(
      () => process.exit(0),
      (err) => {
        console.error(`blockmend: error while stopping on ${signal}:`, err);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}
