/**
 * How the client commands (`image`, `heal`, `store`) reach a gateway: `--api URL`
 * (`$BLOCKMEND_API`), `--ca FILE` (`$BLOCKMEND_CA`) for an `https://` gateway whose
 * certificate a private CA signed, and `--token-file FILE` (`$BLOCKMEND_TOKEN`, the token
 * itself) for a gateway started with `--token-file`.
 *
 * @module
 */
import type { ArgsDef } from "citty";
import { readClientToken } from "../access/token-file.ts";
import { loadCaFile } from "../runtime/tls-files.ts";
import { apiUrl, GatewayClient } from "./gateway-client.ts";

/** citty definitions; spread into each client command's `args`. */
export const API_CLIENT_ARGS = {
  api: {
    type: "string",
    description: "Gateway HTTP API URL (default: $BLOCKMEND_API or http://127.0.0.1:8080)",
  },
  ca: {
    type: "string",
    valueHint: "FILE",
    description:
      "CA certificate (PEM) of an https:// gateway (default: $BLOCKMEND_CA, else the system's CAs)",
  },
  "token-file": {
    type: "string",
    valueHint: "FILE",
    description: "File holding the API token (default: the token in $BLOCKMEND_TOKEN)",
  },
} as const satisfies ArgsDef;

/** A client from the parsed flags and the environment. */
export async function gatewayClientOf(args: {
  api?: string;
  ca?: string;
  "token-file"?: string;
}): Promise<GatewayClient> {
  const caFile = args.ca || process.env.BLOCKMEND_CA || undefined;
  const tokenFile = args["token-file"];
  const token = tokenFile
    ? await readClientToken(tokenFile, "--token-file")
    : process.env.BLOCKMEND_TOKEN?.trim() || undefined;
  return new GatewayClient(apiUrl(args.api), {
    ...(token ? { token } : {}),
    ...(caFile ? { ca: await loadCaFile(caFile, args.ca ? "--ca" : "$BLOCKMEND_CA") } : {}),
  });
}
