/** The `blockmend` command line: one subcommand per file, loaded lazily. */
import { defineCommand } from "citty";
import { runCli } from "./run-cli.ts";

const main = defineCommand({
  meta: { name: "blockmend", version: "0.1.0", description: "Replicated chunk storage for VM disk images" },
  subCommands: {
    up: () => import("./up-command.ts").then((m) => m.default),
    gateway: () => import("./gateway-command.ts").then((m) => m.default),
    image: () => import("./image-command.ts").then((m) => m.default),
    heal: () => import("./heal-command.ts").then((m) => m.default),
    store: () => import("./store-command.ts").then((m) => m.default),
    chunkstore: () => import("./chunkstore-command.ts").then((m) => m.default),
  },
});

await runCli(main);
