/** `blockmend store ls|safe-to-remove|maintenance|add|drain|remove`: store states, safe maintenance, the store set. */
import { defineCommand } from "citty";
import { API_CLIENT_ARGS, gatewayClientOf } from "./api-client-flags.ts";
import { addCommand, drainCommand, removeCommand } from "./store-lifecycle-command.ts";
import { strictCommand } from "./strict-flags.ts";

const apiArg = API_CLIENT_ARGS;

const ls = defineCommand({
  meta: { name: "ls", description: "List stores with their role, state, identity and maintenance" },
  args: { ...apiArg, json: { type: "boolean", description: "Print the raw JSON", default: false } },
  async run({ args }) {
    const answer = await (await gatewayClientOf(args)).stores();
    if (args.json) {
      console.log(JSON.stringify(answer, null, 2));
      return;
    }
    for (const s of answer.stores) {
      const parts = [s.id, s.role, s.state, `identity ${s.identity.slice(0, 8)}`];
      if (s.maintenance) parts.push(`maintenance since ${s.maintenance.since}`);
      if (s.damagedChunks > 0) parts.push(`${s.damagedChunks} damaged chunk(s)`);
      if (s.lag.length) parts.push(`${s.lag.length} image(s) behind`);
      if (s.reasons.length) parts.push(s.reasons.join("; "));
      console.log(parts.join("\t"));
    }
  },
});

const maintenance = defineCommand({
  meta: {
    name: "maintenance",
    description:
      "Put store ID in maintenance (on: new writes stop counting it, so safe-to-remove can turn true and stays true) or take it out (off)",
  },
  args: {
    ...apiArg,
    id: { type: "positional", description: "Store id", required: true },
    mode: { type: "positional", description: "on or off", required: true },
  },
  async run({ args }) {
    if (args.mode !== "on" && args.mode !== "off") {
      console.error(`blockmend store maintenance: say on or off, not "${args.mode}"`);
      process.exit(2);
    }
    const r = await (await gatewayClientOf(args)).setMaintenance(args.id, args.mode === "on");
    console.log(
      r.maintenance
        ? `store ${r.store} is in maintenance: new writes do not count it (${r.headsStamped} image head(s) stamped); wait for "store safe-to-remove ${r.store}"`
        : `store ${r.store} is out of maintenance: it counts for new writes again`,
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
    const r = await (await gatewayClientOf(args)).safeToRemove(args.id);
    if (r.safe) {
      console.log(
        r.maintenance
          ? `store ${r.store} is safe to remove: every image keeps enough current copies, and leaving (in maintenance or drained) it stays so`
          : `store ${r.store} is safe to remove now: every image keeps enough current copies (not in maintenance: a commit after this answer may still count it; use "store maintenance ${r.store} on")`,
      );
      process.exit(0);
    }
    console.log(`store ${r.store} is NOT safe to remove:`);
    for (const reason of r.reasons) console.log(`  - ${reason}`);
    process.exit(1);
  },
});

export default defineCommand({
  meta: {
    name: "store",
    description: "Store states, safe maintenance, and adding, draining and removing stores",
  },
  subCommands: {
    ls: strictCommand(ls, "store"),
    "safe-to-remove": strictCommand(safeToRemove, "store"),
    maintenance: strictCommand(maintenance, "store"),
    add: strictCommand(addCommand, "store"),
    drain: strictCommand(drainCommand, "store"),
    remove: strictCommand(removeCommand, "store"),
  },
});
