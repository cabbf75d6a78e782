/** `blockmend gc run|status`: reclaims the space of chunks no image version references. */
import { defineCommand } from "citty";
import { API_CLIENT_ARGS, gatewayClientOf } from "./api-client-flags.ts";
import type { GcReport } from "./gateway-client.ts";
import { formatBytes } from "./size.ts";
import { strictCommand } from "./strict-flags.ts";

const apiArg = API_CLIENT_ARGS;

/** A pass in a few lines. */
export function describeGc(r: GcReport): string {
  const lines = [
    `gc pass ${r.token.slice(0, 8)} on ${r.gateway}: ${r.phase}${r.error ? ` (${r.error})` : ""}, started ${r.startedAt}${r.finishedAt ? `, finished ${r.finishedAt}` : ""}`,
    `  ${r.referenced} chunks referenced; grace ${Math.round(r.graceMs / 1000)} s`,
  ];
  for (const s of r.stores) {
    if (s.skipped) lines.push(`  ${s.store}: skipped, ${s.skipped}`);
    else if (s.error) lines.push(`  ${s.store}: failed, ${s.error}`);
    else
      lines.push(
        `  ${s.store}: ${s.stored} chunks stored, ${s.condemned - (s.surplusCondemned ?? 0)} unreferenced, ${s.deleted} deleted (${formatBytes(s.bytesDeleted)})${s.kept ? `, ${s.kept} kept (used again meanwhile)` : ""}${s.surplusCondemned ? `; surplus copies (their chunks now placed on other stores): ${s.surplusCondemned}, ${s.surplusDeleted ?? 0} dropped` : ""}`,
      );
  }
  const t = r.tombstones;
  if (t && t.collected + t.left > 0)
    lines.push(
      `  deleted images' tombstones: ${t.collected} collected${t.left ? `, ${t.left} left (${t.reason ?? "see the next pass"})` : ""}`,
    );
  return lines.join("\n");
}

const run = defineCommand({
  meta: {
    name: "run",
    description: "Start a garbage collection pass (deletes only what no image version references)",
  },
  args: {
    ...apiArg,
    grace: {
      type: "string",
      description: "Seconds between the barrier and the sweep (default 300: followers move on meanwhile)",
    },
    wait: {
      type: "boolean",
      description: "Wait for the pass to finish and print what it deleted",
      default: false,
    },
    json: { type: "boolean", description: "Print the raw JSON", default: false },
  },
  async run({ args }) {
    const grace = args.grace === undefined ? undefined : Number(args.grace);
    if (grace !== undefined && (!Number.isFinite(grace) || grace < 0))
      throw new TypeError(`--grace must be a number of seconds, 0 or more (got "${args.grace}")`);
    const r = await (await gatewayClientOf(args)).startGc(grace, args.wait);
    console.log(args.json ? JSON.stringify(r, null, 2) : describeGc(r));
    if (r.phase === "failed") process.exitCode = 1;
  },
});

const status = defineCommand({
  meta: { name: "status", description: "Show the running pass and the last finished one" },
  args: { ...apiArg, json: { type: "boolean", description: "Print the raw JSON", default: false } },
  async run({ args }) {
    const s = await (await gatewayClientOf(args)).gcStatus();
    if (args.json) return console.log(JSON.stringify(s, null, 2));
    console.log(s.running ? describeGc(s.running) : "no pass running here");
    console.log(s.last ? `last:\n${describeGc(s.last)}` : "no pass has finished yet");
  },
});

export default defineCommand({
  meta: { name: "gc", description: "Garbage collection: reclaim space of overwritten and deleted data" },
  subCommands: { run: strictCommand(run, "gc"), status: strictCommand(status, "gc") },
});
