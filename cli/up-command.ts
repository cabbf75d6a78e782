/**
 * `blockmend up`: the embedded default, everything in one process on this machine:
 * three `file:` stores under `./blockmend-data` with 2 replicas, NBD on 127.0.0.1:10809
 * and the HTTP API on 127.0.0.1:8080.
 */
import { resolve } from "node:path";
import { defineCommand } from "citty";
import { defaultMinReplicas, startGateway } from "../gateway/gateway.ts";
import { API_SECURITY_ARGS, readApiSecurityFlags } from "./api-security-flags.ts";
import { parseListenAddress } from "./listen-address.ts";
import { NBD_LISTEN_DESCRIPTION, NBD_TLS_ARGS, nbdServerOptions, nbdUsage } from "./nbd-flags.ts";
import { readS3Flags, S3_ARGS, s3Banner } from "./s3-flags.ts";
import { closeReporting, onShutdown } from "./shutdown.ts";
import { strictCommand } from "./strict-flags.ts";

const REPLICAS = 2;

const command = defineCommand({
  meta: { name: "up", description: "Run blockmend on this machine with its embedded defaults" },
  args: {
    data: { type: "string", description: "Data directory", default: "./blockmend-data" },
    nbd: { type: "string", description: NBD_LISTEN_DESCRIPTION, default: "127.0.0.1:10809" },
    ...NBD_TLS_ARGS,
    http: { type: "string", description: "HOST:PORT for the HTTP API", default: "127.0.0.1:8080" },
    ...API_SECURITY_ARGS,
    ...S3_ARGS,
  },
  async run({ args, rawArgs }) {
    const data = resolve(args.data);
    const stores = ["a", "b", "c"].map((id) => ({ id, url: `file:${data}/store-${id}` }));
    const nbd = nbdServerOptions(args);
    const http = parseListenAddress(args.http, "--http");
    const security = await readApiSecurityFlags(args, rawArgs, http);
    const s3 = await readS3Flags(args, { generatedCredentialsDir: data }).catch((err: Error) => {
      console.error(`blockmend up: ${err.message}`);
      process.exit(2);
    });
    const gw = await startGateway({
      s3: s3 ? { ...s3.config, publicNames: security.httpAccess.publicNames } : undefined,
      ...security,
      stores,
      replicas: REPLICAS,
      minReplicas: defaultMinReplicas(REPLICAS),
      nbd,
      http,
      stateDir: `${data}/gateway`,
    });
    const api = gw.httpUrl;
    const apiFlag = [
      api === "http://127.0.0.1:8080" ? "" : ` --api ${api}`,
      security.tls && args["tls-dir"] ? ` --ca ${resolve(args["tls-dir"], "ca-cert.pem")}` : "",
      args["token-file"] ? ` --token-file ${resolve(args["token-file"])}` : "",
    ].join("");
    const usage = nbdUsage(nbd, gw.nbdPort);
    console.log(`blockmend up: 3 file stores under ${data}, ${REPLICAS} replicas`);
    console.log(`  NBD:       ${usage.exportUri("<image>")}   (image@snapshot: read-only)`);
    console.log(`  HTTP API:  ${api}/v1   (OpenAPI: ${api}/v1/openapi.json)`);
    console.log(
      `  Dashboard: ${api}/   (stores, heals, I/O, safe-to-remove; docs/operations.md, "Dashboard")`,
    );
    if (s3 && gw.s3Url) console.log(`  S3:        ${s3Banner(gw.s3Url, s3)}`);
    // Suggestions that work as printed, on a fresh data directory and after a restart.
    const existing = await gw.images.list();
    const name = firstFreeName(existing);
    if (existing.length > 0) console.log(`  Images:    ${existing.join(", ")}`);
    console.log("Try, in another terminal:");
    console.log(`  npx blockmend image create ${name} 1G${apiFlag}`);
    for (const line of usage.tryLines(name)) console.log(`  ${line}`);
    if (!nbd.tls)
      console.log(
        `To boot a VM from it: qemu-system-x86_64 -m 1G -drive file=${usage.exportUri(name)},format=raw,cache=writeback (libvirt: docs/operations.md)`,
      );
    onShutdown(() => closeReporting(gw));
  },
});

/** `web01`, or the first of web02, web03, ... that is not taken. */
export function firstFreeName(taken: readonly string[]): string {
  for (let i = 1; ; i++) {
    const name = `web${String(i).padStart(2, "0")}`;
    if (!taken.includes(name)) return name;
  }
}

export default strictCommand(command);
