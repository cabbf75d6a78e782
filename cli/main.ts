/** The `blockmend` command line: one subcommand per file, loaded lazily. */
import "./color-policy.ts"; // first: before citty reads the environment (a bare import stays first)
import { defineCommand } from "citty";
import { restoreHiddenVariables } from "./color-policy.ts";
import { argvWithConfigFile, type CommandShape } from "./config-file.ts";
import { runCli } from "./run-cli.ts";
import { stopWhenWrapperDies } from "./wrapper-watch.ts";

restoreHiddenVariables();

const main = defineCommand({
  meta: {
    name: "blockmend",
    version: "0.1.0",
    description: "Replicated chunk storage for VM disk images (every command takes --config FILE.toml|json)",
  },
  subCommands: {
    up: () => import("./up-command.ts").then((m) => m.default),
    gateway: () => import("./gateway-command.ts").then((m) => m.default),
    image: () => import("./image-command.ts").then((m) => m.default),
    heal: () => import("./heal-command.ts").then((m) => m.default),
    gc: () => import("./gc-command.ts").then((m) => m.default),
    store: () => import("./store-command.ts").then((m) => m.default),
    chunkstore: () => import("./chunkstore-command.ts").then((m) => m.default),
    backup: () => import("./backup-command.ts").then((m) => m.default),
  },
});

// A promise nobody awaited failed: a bug. A storage server must not stop serving VMs
// over it; it says so loudly (tests look for this line) and goes on.
process.on("unhandledRejection", (err) => {
  console.error("blockmend: BUG: unhandled rejection:", err);
});
stopWhenWrapperDies();
const rawArgs = await argvWithConfigFile(process.argv.slice(2), main as CommandShape).catch((err: Error) => {
  console.error(`blockmend: ${err.message}`);
  process.exit(1);
});
await runCli(main, rawArgs);
