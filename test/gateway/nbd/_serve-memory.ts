/**
 * A separate process serving MemoryDevices over NBD, for tests that must measure or
 * kill the server itself (RSS under load). Usage:
 *
 *   bun test/gateway/nbd/_serve-memory.ts '{"exports":{"disk":67108864},"options":{"port":0}}'
 *
 * `options` are startNbdServer options. Prints one line `listening PORT` (or
 * `listening unix:PATH`) once ready, then serves until SIGTERM or SIGINT.
 */
import process from "node:process";
import { MemoryDevice } from "../../../gateway/nbd/memory-device.ts";
import { type NbdServerOptions, startNbdServer } from "../../../gateway/nbd/nbd-server.ts";

const config = JSON.parse(process.argv[2] ?? "{}") as {
  exports?: Record<string, number>;
  options?: NbdServerOptions;
};
const devices = new Map(
  Object.entries(config.exports ?? { disk: 64 << 20 }).map(([n, s]) => [n, new MemoryDevice(s)]),
);
const server = await startNbdServer(
  {
    list: async () => [...devices.keys()].map((name) => ({ name })),
    open: async (name) => devices.get(name) ?? null,
    release: async () => {},
  },
  { port: 0, ...config.options },
);
console.log(server.path ? `listening unix:${server.path}` : `listening ${server.port}`);
const stop = () => server.close().then(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
