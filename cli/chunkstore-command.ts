/** `blockmend chunkstore`: a chunk store server over one local directory. */
import { readFile } from "node:fs/promises";
import { defineCommand } from "citty";
import { FileStore } from "../chunkstore/file-store.ts";
import { createChunkStoreApp } from "../chunkstore/server.ts";
import { serveHttp } from "../runtime/serve-http.ts";
import { isLoopback, parseListenAddress } from "./listen-address.ts";
import { onShutdown } from "./shutdown.ts";

/** Starts the server and resolves with its URL once it listens. Exported for `up`. */
export async function runChunkStoreServer(opts: {
  dir: string;
  listen: string;
  tokenFile?: string;
  witness?: boolean;
  reserveBytes?: number;
}): Promise<{ url: string; close(): Promise<void> }> {
  const address = parseListenAddress(opts.listen, "--listen");
  const token = opts.tokenFile ? (await readFile(opts.tokenFile, "utf8")).trim() : undefined;
  if (opts.tokenFile && !token) throw new Error(`Token file "${opts.tokenFile}" is empty`);
  if (!token && !isLoopback(address.hostname)) {
    throw new Error(
      `Refusing to listen on ${address.hostname} without a token: anyone who can reach it could read and delete chunks. Pass --token-file FILE, or listen on 127.0.0.1`,
    );
  }
  const store = await FileStore.open(opts.dir, { reserveBytes: opts.reserveBytes });
  const app = createChunkStoreApp(store, { token, witness: opts.witness });
  const server = await serveHttp(app.fetch, address);
  return {
    url: server.url,
    close: async () => {
      await server.close();
      await store.close();
    },
  };
}

export default defineCommand({
  meta: { name: "chunkstore", description: "Serve a chunk store over HTTP from a local directory" },
  args: {
    dir: { type: "string", description: "Directory holding the store", required: true },
    listen: { type: "string", description: "HOST:PORT to listen on", default: "127.0.0.1:9400" },
    "token-file": { type: "string", description: "File holding the bearer token every request must carry" },
    witness: { type: "boolean", description: "Keep refs (heads) only; refuse chunk writes", default: false },
    "reserve-bytes": { type: "string", description: "Free space to keep on the disk, in bytes" },
  },
  async run({ args }) {
    const server = await runChunkStoreServer({
      dir: args.dir,
      listen: args.listen,
      tokenFile: args["token-file"],
      witness: args.witness,
      reserveBytes: args["reserve-bytes"] ? Number(args["reserve-bytes"]) : undefined,
    });
    console.log(
      `blockmend chunkstore: serving file:${args.dir}${args.witness ? " (witness)" : ""} on ${server.url}`,
    );
    onShutdown(() => server.close());
  },
});
