/**
 * `blockmend store add ID URL | drain ID [--cancel] | remove ID`: change the cluster's store
 * set (every gateway follows). `--wait` returns once the moving is done (add: every
 * placement store holds every image in full; drain: the store is drained), with a progress
 * bar on a terminal; exit 0 when done, 1 on a refusal or a timeout.
 */
import { defineCommand } from "citty";
import cliProgress from "cli-progress";
import { API_CLIENT_ARGS, gatewayClientOf } from "./api-client-flags.ts";
import type { GatewayClient, LifecycleAnswer } from "./gateway-client.ts";
import { formatBytes } from "./size.ts";
import { UsageError } from "./strict-flags.ts";

const waitArgs = {
  wait: { type: "boolean", description: "Return only when the moving is done", default: false },
  timeout: { type: "string", description: "With --wait: give up after this many seconds", default: "86400" },
  json: {
    type: "boolean",
    description: "Print JSON (the change; with --wait, the stores at the end)",
    default: false,
  },
} as const;

/** Polls until `done` says so, with a heal progress bar on a terminal; false on timeout. */
async function waitUntil(
  client: GatewayClient,
  seconds: number,
  done: () => Promise<string | null>,
  quiet: boolean,
): Promise<boolean> {
  const deadline = Date.now() + seconds * 1000;
  const bar =
    process.stderr.isTTY && !quiet
      ? new cliProgress.SingleBar({
          stream: process.stderr,
          format: "moving [{bar}] {percentage}% | {copied} of {missing} | {what}",
          hideCursor: true,
        })
      : null;
  let started = false;
  try {
    for (;;) {
      const what = await done();
      if (what === null) {
        if (bar && started) bar.update(bar.getTotal());
        return true;
      }
      const heal = await client.healStatus();
      const running = heal.stores.filter((s) => s.running);
      const missing = running.reduce((a, s) => a + s.missingBytes, 0);
      const copied = running.reduce((a, s) => a + s.copiedBytes, 0);
      if (bar) {
        if (!started) bar.start(Math.max(1, missing), 0, {});
        started = true;
        bar.setTotal(Math.max(1, missing));
        bar.update(copied, { copied: formatBytes(copied), missing: formatBytes(missing), what });
      }
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    bar?.stop();
  }
}

function timeoutOf(value: string): number {
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0)
    throw new UsageError(`--timeout must be a number of seconds above 0 (got "${value}")`);
  return seconds;
}

/** Why the placement stores do not all hold every image yet, or null when they do. */
async function placementPending(client: GatewayClient): Promise<string | null> {
  const answer = await client.stores();
  const behind = answer.stores.filter((s) => s.placement && s.state !== "in-sync");
  return behind.length === 0 ? null : `waiting for ${behind.map((s) => `${s.id} (${s.state})`).join(", ")}`;
}

async function finish(
  client: GatewayClient,
  args: { wait: boolean; timeout: string; json: boolean },
  change: LifecycleAnswer,
  done: () => Promise<string | null>,
  doneLine: string,
): Promise<void> {
  if (!args.wait) {
    if (args.json) console.log(JSON.stringify(change, null, 2));
    return;
  }
  const ok = await waitUntil(client, timeoutOf(args.timeout), done, args.json);
  if (args.json) console.log(JSON.stringify(await client.stores(), null, 2));
  else console.log(ok ? doneLine : `timed out after ${args.timeout} s: ${(await done()) ?? "done"}`);
  process.exit(ok ? 0 : 1);
}

export const addCommand = defineCommand({
  meta: {
    name: "add",
    description:
      "Add the store at URL as data store ID: every gateway opens it, and heals move its share of the chunks to it",
  },
  args: {
    ...API_CLIENT_ARGS,
    id: { type: "positional", description: "Store id", required: true },
    url: { type: "positional", description: "Store URL, as reachable from every gateway", required: true },
    ...waitArgs,
  },
  async run({ args }) {
    const client = await gatewayClientOf(args);
    timeoutOf(args.timeout);
    const r = await client.addStore(args.id, args.url);
    if (!args.json)
      console.log(
        `store ${r.store} added (placement ${r.placementEpoch}: ${r.placement.join(", ")}); every image is walked to move its share to it`,
      );
    await finish(
      client,
      args,
      r,
      () => placementPending(client),
      `rebalanced: every store holds its share of every image`,
    );
  },
});

export const drainCommand = defineCommand({
  meta: {
    name: "drain",
    description:
      "Drain store ID: no new chunks are placed on it and its chunks are copied to the stores they now belong on (--cancel: stop)",
  },
  args: {
    ...API_CLIENT_ARGS,
    id: { type: "positional", description: "Store id", required: true },
    cancel: {
      type: "boolean",
      description: "Cancel the drain: the store takes its share again",
      default: false,
    },
    ...waitArgs,
  },
  async run({ args }) {
    const client = await gatewayClientOf(args);
    timeoutOf(args.timeout);
    const r = await client.drainStore(args.id, !args.cancel);
    if (!args.json)
      console.log(
        args.cancel
          ? `drain of store ${r.store} cancelled (placement ${r.placementEpoch}: ${r.placement.join(", ")})`
          : `store ${r.store} is draining (placement ${r.placementEpoch}: ${r.placement.join(", ")})`,
      );
    const done = args.cancel
      ? () => placementPending(client)
      : async () => {
          const s = (await client.stores()).stores.find((x) => x.id === args.id);
          if (!s) return null;
          return s.state === "drained" ? null : `store ${args.id} is ${s.state}`;
        };
    await finish(
      client,
      args,
      r,
      done,
      args.cancel
        ? "rebalanced: every store holds its share of every image"
        : `store ${args.id} is drained: the other stores hold every image in full; "store remove ${args.id}" takes it out`,
    );
  },
});

export const removeCommand = defineCommand({
  meta: {
    name: "remove",
    description: "Remove drained store ID from the cluster (refused until it is drained and safe to remove)",
  },
  args: {
    ...API_CLIENT_ARGS,
    id: { type: "positional", description: "Store id", required: true },
    json: { type: "boolean", description: "Print the raw JSON", default: false },
  },
  async run({ args }) {
    const r = await (await gatewayClientOf(args)).removeStore(args.id);
    if (args.json) console.log(JSON.stringify(r, null, 2));
    else
      console.log(
        `store ${r.store} removed from the cluster (${r.headsUpdated} image head(s) updated${r.registerKeysRewritten > 0 ? `; it left the register, ${r.registerKeysRewritten} key(s) rewritten on the other head holders` : ""}); stop it, and drop --store ${r.store}=... from every gateway's command line`,
      );
  },
});
