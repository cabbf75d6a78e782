/** `blockmend gateway`: serve images from chunk stores over NBD and HTTP. */
import { resolve } from "node:path";
import { defineCommand } from "citty";
import { defaultMinReplicas, parseStoreFlag, startGateway } from "../gateway/gateway.ts";
import {
  API_SECURITY_ARGS,
  readApiSecurityFlags,
  readStoreAccessFlags,
  STORE_ACCESS_ARGS,
} from "./api-security-flags.ts";
import { parseListenAddress } from "./listen-address.ts";
import { NBD_LISTEN_DESCRIPTION, NBD_TLS_ARGS, nbdServerOptions, nbdUsage } from "./nbd-flags.ts";
import { readS3Flags, S3_ARGS, s3Banner } from "./s3-flags.ts";
import { closeReporting, onShutdown } from "./shutdown.ts";
import { strictCommand } from "./strict-flags.ts";

/** All values of a repeatable flag (citty keeps only the last one). */
function repeated(flag: string, argv: readonly string[]): string[] {
  const out: string[] = [];
  argv.forEach((a, i) => {
    if (a === flag && argv[i + 1] !== undefined) out.push(argv[i + 1]!);
    else if (a.startsWith(`${flag}=`)) out.push(a.slice(flag.length + 1));
  });
  return out;
}

const command = defineCommand({
  meta: { name: "gateway", description: "Serve images from chunk stores over NBD and an HTTP API" },
  args: {
    store: { type: "string", description: "ID=URL of a store (repeat for each store)", required: true },
    replicas: { type: "string", description: "Copies of each chunk", default: "2" },
    "min-replicas": {
      type: "string",
      description:
        "Copies that must be durable before a write is acknowledged (default: half the replicas, rounded up: 1 of 2, 2 of 3)",
    },
    nbd: { type: "string", description: NBD_LISTEN_DESCRIPTION, default: "127.0.0.1:10809" },
    ...NBD_TLS_ARGS,
    http: { type: "string", description: "HOST:PORT for the HTTP API", default: "127.0.0.1:8080" },
    ...API_SECURITY_ARGS,
    ...STORE_ACCESS_ARGS,
    "state-dir": {
      type: "string",
      description: "Directory for the gateway's id and lock (one gateway per directory)",
      default: "./blockmend-gateway",
    },
    ...S3_ARGS,
    "patch-writes": {
      type: "boolean",
      description:
        "Store a small write as a patch chunk beside its block (the write log) instead of rewriting the block; --no-patch-writes while gateways older than patch stacks still serve the same stores",
      default: true,
    },
    "fold-idle-ms": {
      type: "string",
      description:
        "Fold an image's patch stacks back into whole chunks once it had no write for this long (milliseconds); never: keep stacks until a block's fifth small write",
      default: "2000",
    },
  },
  async run({ args, rawArgs }) {
    const stores = repeated("--store", rawArgs).map(parseStoreFlag);
    const replicas = Number(args.replicas);
    const minReplicas = args["min-replicas"] ? Number(args["min-replicas"]) : defaultMinReplicas(replicas);
    const nbd = nbdServerOptions(args); // refuses a reachable NBD listener without TLS client auth
    const http = parseListenAddress(args.http, "--http");
    const security = await readApiSecurityFlags(args, rawArgs, http);
    const storeAccess = await readStoreAccessFlags(
      args,
      rawArgs,
      stores.map((s) => s.id),
    );
    const foldIdleMs = parseFoldIdle(args["fold-idle-ms"]);
    const s3 = await readS3Flags(args).catch((err: Error) => {
      console.error(`blockmend gateway: ${err.message}`);
      process.exit(2);
    });
    const gw = await startGateway({
      stores,
      replicas,
      minReplicas,
      nbd,
      http,
      ...security,
      ...storeAccess,
      stateDir: resolve(args["state-dir"]),
      cache: { patchWrites: args["patch-writes"], foldIdleMs },
      s3: s3 ? { ...s3.config, publicNames: security.httpAccess.publicNames } : undefined,
    });
    console.log(
      `blockmend gateway ${gw.id}: ${stores.length} stores, ${replicas} replicas (min ${minReplicas}); NBD on ${nbdUsage(nbd, gw.nbdPort).where}, HTTP API on ${gw.httpUrl}`,
    );
    if (s3 && gw.s3Url) console.log(`blockmend gateway: ${s3Banner(gw.s3Url, s3)}`);
    onShutdown(() => closeReporting(gw));
  },
});

/** `--fold-idle-ms`: milliseconds (an integer from 0), or never; anything else exits with a clear error. */
function parseFoldIdle(value: string): number {
  if (value === "never") return Number.POSITIVE_INFINITY;
  const ms = Number(value);
  if (/^\d+$/.test(value) && Number.isSafeInteger(ms)) return ms;
  console.error(
    `blockmend gateway: --fold-idle-ms must be a number of milliseconds or never; got "${value}"`,
  );
  process.exit(2);
}

export default strictCommand(command);
