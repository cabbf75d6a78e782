/**
 * `blockmend up`: the embedded default, everything on one machine. For now it serves
 * one chunk store on `./blockmend-data`; the gateway (NBD, HTTP API) joins it later.
 */
import { join } from "node:path";
import { defineCommand } from "citty";
import { runChunkStoreServer } from "./chunkstore-command.ts";
import { onShutdown } from "./shutdown.ts";

export default defineCommand({
  meta: { name: "up", description: "Run blockmend on this machine with its embedded defaults" },
  args: {
    data: { type: "string", description: "Data directory", default: "./blockmend-data" },
    http: { type: "string", description: "HOST:PORT for the chunk store server", default: "127.0.0.1:8080" },
  },
  async run({ args }) {
    const dir = join(args.data, "store-a");
    const server = await runChunkStoreServer({ dir, listen: args.http });
    console.log(`blockmend up: chunk store file:${dir} on ${server.url}`);
    console.log(`  try: curl ${server.url}/v1/health`);
    console.log(`       curl ${server.url}/v1/stats`);
    onShutdown(() => server.close());
  },
});
