/** `blockmend heal status|wait`: what is healing, how far, and waiting for it to finish. */
import { defineCommand } from "citty";
import cliProgress from "cli-progress";
import { API_CLIENT_ARGS, gatewayClientOf } from "./api-client-flags.ts";
import type { HealStatusBody } from "./gateway-client.ts";
import { formatBytes } from "./size.ts";
import { strictCommand, UsageError } from "./strict-flags.ts";

const apiArg = API_CLIENT_ARGS;

/** One line per store. */
function describe(h: HealStatusBody): string {
  const lines = [`healing: ${h.healing ? "yes" : "no"}`];
  for (const s of h.stores) {
    let line = `  ${s.id}: ${s.state}`;
    if (s.imagesBehind > 0) line += `, ${s.imagesBehind} image(s) behind`;
    if (s.running && s.missingBytes === 0) {
      line += ", finding what it lacks";
      if (s.gateway) line += ` (by ${s.gateway})`;
    } else if (s.running || s.missingBytes > 0) {
      line += `, ${formatBytes(s.copiedBytes)} of ${formatBytes(s.missingBytes)} copied`;
      if (s.running) line += `, ${formatBytes(s.rateBytesPerSecond)}/s, ETA ${s.etaSeconds ?? "?"} s`;
      if (s.gateway) line += ` (by ${s.gateway})`;
    }
    if (s.lostChunks > 0) line += `, ${s.lostChunks} chunk(s) with no good copy anywhere`;
    if (s.lastError) line += ` (last error: ${s.lastError})`;
    lines.push(line);
  }
  for (const w of h.witnesses ?? [])
    lines.push(
      `  ${w.id}: witness, ${w.state === "down" ? `down (${w.reasons.join("; ") || "unreachable"})` : "up"}: holds image heads only, nothing to heal`,
    );
  return lines.join("\n");
}

const status = defineCommand({
  meta: { name: "status", description: "Show heal progress per store" },
  args: { ...apiArg, json: { type: "boolean", description: "Print the raw JSON", default: false } },
  async run({ args }) {
    const h = await (await gatewayClientOf(args)).healStatus();
    console.log(args.json ? JSON.stringify(h, null, 2) : describe(h));
  },
});

const wait = defineCommand({
  meta: {
    name: "wait",
    description:
      "Wait until no store is healing or down; exit 0 when in sync, 1 on timeout, 2 if a store is down",
  },
  args: {
    ...apiArg,
    timeout: { type: "string", description: "Give up after this many seconds", default: "3600" },
  },
  async run({ args }) {
    const seconds = Number(args.timeout);
    if (!Number.isFinite(seconds) || seconds <= 0)
      throw new UsageError(`--timeout must be a number of seconds above 0 (got "${args.timeout}")`);
    const client = await gatewayClientOf(args);
    const deadline = Date.now() + seconds * 1000;
    const bar = process.stderr.isTTY
      ? new cliProgress.SingleBar({
          stream: process.stderr,
          format: "heal [{bar}] {percentage}% | {copied} of {missing} | ETA {eta}s",
          hideCursor: true,
        })
      : null;
    let started = false;
    let lastMissing = 0;
    try {
      for (;;) {
        const h = await client.healStatus();
        const down = h.stores.filter((s) => s.state === "down");
        // A full store that lacks something is not in sync: it catches up once it has room.
        const healing = h.stores.filter(
          (s) =>
            s.state === "healing" || s.state === "replaced" || (s.state === "full" && s.imagesBehind > 0),
        );
        if (healing.length === 0 && down.length === 0 && !h.healing) {
          if (bar && started) {
            // Done: the bar ends full, whatever the last poll saw.
            const total = bar.getTotal();
            bar.update(total, {
              copied: formatBytes(lastMissing),
              missing: formatBytes(lastMissing),
              eta: 0,
            });
          }
          bar?.stop();
          console.log("in sync: no store is healing or down");
          process.exit(0);
        }
        const missing = healing.reduce((a, s) => a + s.missingBytes, 0);
        const copied = healing.reduce((a, s) => a + s.copiedBytes, 0);
        lastMissing = Math.max(lastMissing, missing);
        const eta = Math.max(0, ...healing.map((s) => s.etaSeconds ?? 0));
        if (bar) {
          if (!started) bar.start(Math.max(1, missing), 0, {});
          started = true;
          bar.setTotal(Math.max(1, missing));
          bar.update(copied, { copied: formatBytes(copied), missing: formatBytes(missing), eta });
        }
        if (Date.now() > deadline) {
          bar?.stop();
          console.log(`timed out after ${args.timeout} s:\n${describe(h)}`);
          process.exit(down.length > 0 ? 2 : 1);
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    } finally {
      bar?.stop();
    }
  },
});

export default defineCommand({
  meta: { name: "heal", description: "Heal status, and waiting for heals to finish" },
  subCommands: { status: strictCommand(status, "heal"), wait: strictCommand(wait, "heal") },
});
