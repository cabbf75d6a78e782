/** `blockmend store ls|safe-to-remove ID`: store states, and whether one can be taken down. */
import { defineCommand } from "citty";
import { apiUrl, GatewayClient } from "./gateway-client.ts";

const apiArg = {
  api: {
    type: "string",
    description: "Gateway HTTP API URL (default: $BLOCKMEND_API or http://127.0.0.1:8080)",
  },
} as const;

const ls = defineCommand({
  meta: { name: "ls", description: "List stores with their state" },
  args: { ...apiArg },
  async run({ args }) {
    const { stores } = await new GatewayClient(apiUrl(args.api)).stores();
    for (const s of stores)
      console.log(
        `${s.id}\t${s.state}\tsince ${s.since}${s.reason ? `\t${s.reason}` : ""}${s.lag.length ? `\t${s.lag.length} image(s) behind` : ""}`,
      );
  },
});

const safeToRemove = defineCommand({
  meta: {
    name: "safe-to-remove",
    description: "Exit 0 if store ID can be taken down now, 1 (with the reasons) if not",
  },
  args: { ...apiArg, id: { type: "positional", description: "Store id", required: true } },
  async run({ args }) {
    const r = await new GatewayClient(apiUrl(args.api)).safeToRemove(args.id);
    if (r.safe) {
      console.log(`store ${r.store} is safe to remove: every image keeps enough current copies`);
      process.exit(0);
    }
    console.log(`store ${r.store} is NOT safe to remove:`);
    for (const reason of r.reasons) console.log(`  - ${reason}`);
    process.exit(1);
  },
});

export default defineCommand({
  meta: { name: "store", description: "Store states and safe maintenance" },
  subCommands: { ls, "safe-to-remove": safeToRemove },
});
