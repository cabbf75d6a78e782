/**
 * The config file examples in docs/deployment.md mean what they say: each TOML block
 * names its command in its first line (`# blockmend chunkstore --config ...`), and every
 * key in it is a flag of that command (cli/config-file.ts refuses unknown keys).
 */
import { expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { argvWithConfigFile, type CommandShape } from "../../cli/config-file.ts";

const ROOT = join(import.meta.dir, "../..");

const commands: CommandShape = {
  meta: { name: "blockmend" },
  subCommands: {
    chunkstore: () => import("../../cli/chunkstore-command.ts").then((m) => m.default as CommandShape),
    gateway: () => import("../../cli/gateway-command.ts").then((m) => m.default as CommandShape),
  },
};

test("every TOML example in docs/deployment.md and deploy/systemd is valid for its command", async () => {
  const doc = await readFile(join(ROOT, "docs/deployment.md"), "utf8");
  const examples = [...doc.matchAll(/```toml\n([\s\S]*?)```/g)].map((m) => m[1]!);
  for (const name of ["chunkstore-a.toml", "gateway.toml"]) {
    examples.push(await readFile(join(ROOT, "deploy/systemd", name), "utf8"));
  }
  expect(examples.length).toBeGreaterThanOrEqual(4);
  for (const text of examples) {
    const command = /blockmend[ -](chunkstore|gateway)/.exec(text.split("\n")[0]!)?.[1];
    expect(command, `first line names the command: ${text.split("\n")[0]}`).toBeDefined();
    const argv = await argvWithConfigFile([command!, "--config", "example.toml"], commands, async () => text);
    expect(argv.length).toBeGreaterThan(1);
  }
});
