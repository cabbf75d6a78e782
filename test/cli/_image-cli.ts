/** Test entry: `bun test/cli/_image-cli.ts <subcommand> ...` runs `blockmend image <subcommand> ...`. */
import { runMain } from "citty";
import image from "../../cli/image-command.ts";

await runMain(image);
