/** `blockmend chunkstore`: a chunk store server over one local directory. */
import { resolve } from "node:path";
import { defineCommand } from "citty";
import { readTokenFile } from "../access/token-file.ts";
import { FileStore } from "../chunkstore/file-store.ts";
import { createChunkStoreApp, STORE_SCOPES, type StoreScope } from "../chunkstore/server.ts";
import { serveHttp } from "../runtime/serve-http.ts";
import { loadHttpsCredentials } from "../runtime/tls-files.ts";
import { repeatedFlag } from "./api-security-flags.ts";
import { isLoopback, parseListenAddress } from "./listen-address.ts";
import { onShutdown } from "./shutdown.ts";
import { strictCommand, UsageError } from "./strict-flags.ts";

/** Starts the server and resolves with its URL once it listens. */
export async function runChunkStoreServer(opts: {
  dir: string;
  listen: string;
  tokenFile?: string;
  witness?: boolean;
  reserveBytes?: number;
  /** `--tls-dir`: serve HTTPS with DIR/server-cert.pem and DIR/server-key.pem. */
  tlsDir?: string;
  /** `--public-name`s, accepted in Host. */
  publicNames?: readonly string[];
}): Promise<{ url: string; close(): Promise<void> }> {
  const address = parseListenAddress(opts.listen, "--listen");
  const tokens = opts.tokenFile
    ? await readTokenFile<StoreScope>(opts.tokenFile, "--token-file", {
        scopes: STORE_SCOPES,
        defaultScope: "write",
      })
    : [];
  if (tokens.length === 0 && !isLoopback(address.hostname)) {
    throw new UsageError(
      `Refusing to listen on ${address.hostname} without a token: anyone who can reach it could read and delete chunks. Pass --token-file FILE, or listen on 127.0.0.1`,
    );
  }
  const tls = opts.tlsDir ? await loadHttpsCredentials(resolve(opts.tlsDir)) : undefined;
  const store = await FileStore.open(opts.dir, { reserveBytes: opts.reserveBytes });
  const app = createChunkStoreApp(store, {
    tokens,
    witness: opts.witness,
    guard: { hostname: address.hostname, publicNames: opts.publicNames },
  });
  const server = await serveHttp(app.fetch, { ...address, tls });
  return {
    url: server.url,
    close: async () => {
      await server.close();
      await store.close();
    },
  };
}

const command = defineCommand({
  meta: { name: "chunkstore", description: "Serve a chunk store over HTTP from a local directory" },
  args: {
    dir: { type: "string", description: "Directory holding the store", required: true },
    listen: { type: "string", description: "HOST:PORT to listen on", default: "127.0.0.1:9400" },
    "token-file": {
      type: "string",
      description:
        "Tokens every request must carry, one a line: TOKEN, TOKEN read or TOKEN write (the default)",
    },
    "tls-dir": {
      type: "string",
      valueHint: "DIR",
      description: "Serve HTTPS with DIR/server-cert.pem and DIR/server-key.pem (qemu's x509 layout)",
    },
    "public-name": {
      type: "string",
      valueHint: "NAME",
      description: "A name clients reach this store by, accepted in Host (repeat for each)",
    },
    witness: { type: "boolean", description: "Keep refs (heads) only; refuse chunk writes", default: false },
    "reserve-bytes": { type: "string", description: "Free space to keep on the disk, in bytes" },
  },
  async run({ args, rawArgs }) {
    const server = await runChunkStoreServer({
      dir: args.dir,
      listen: args.listen,
      tokenFile: args["token-file"],
      witness: args.witness,
      reserveBytes: args["reserve-bytes"] ? Number(args["reserve-bytes"]) : undefined,
      tlsDir: args["tls-dir"],
      publicNames: repeatedFlag("--public-name", rawArgs),
    });
    console.log(
      `blockmend chunkstore: serving file:${args.dir}${args.witness ? " (witness)" : ""} on ${server.url}`,
    );
    onShutdown(() => server.close());
  },
});

export default strictCommand(command);
