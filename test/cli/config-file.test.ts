/**
 * `--config FILE` (cli/config-file.ts): file keys become flags of the command they
 * configure, command-line flags win, unknown keys and wrong types are errors naming the
 * key. The last test runs the real CLI with a config file.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { argvWithConfigFile, type CommandShape, parseConfigText } from "../../cli/config-file.ts";
import { killAll, startBlockmend } from "../support/processes.ts";

const chunkstore: CommandShape = {
  meta: { name: "chunkstore" },
  args: {
    dir: { type: "string" },
    listen: { type: "string" },
    "token-file": { type: "string" },
    witness: { type: "boolean" },
  },
};
const gateway: CommandShape = {
  args: { store: { type: "string" }, replicas: { type: "string" }, nbd: { type: "string" } },
};
const image: CommandShape = {
  args: { api: { type: "string" } },
  subCommands: {
    create: { args: { name: { type: "positional" }, size: { type: "positional" }, api: { type: "string" } } },
  },
};
const root: CommandShape = {
  meta: { name: "blockmend" },
  subCommands: { chunkstore: () => Promise.resolve(chunkstore), gateway: () => gateway, image },
};

/** Runs argvWithConfigFile with the file's text given inline. */
function withFile(argv: string[], text: string): Promise<string[]> {
  return argvWithConfigFile(argv, root, async () => text);
}

describe("argvWithConfigFile", () => {
  test("without --config the arguments are returned unchanged and no file is read", async () => {
    const argv = ["chunkstore", "--dir", "d"];
    expect(
      await argvWithConfigFile(argv, root, () => {
        throw new Error("read");
      }),
    ).toEqual(argv);
  });

  test("TOML keys become flags right after the subcommand, in --key=value form", async () => {
    const toml = 'dir = "/srv/a"\nlisten = "0.0.0.0:9400"\ntoken-file = "/etc/t"\nwitness = true\n';
    expect(await withFile(["chunkstore", "--config", "s.toml"], toml)).toEqual([
      "chunkstore",
      "--dir=/srv/a",
      "--listen=0.0.0.0:9400",
      "--token-file=/etc/t",
      "--witness",
    ]);
  });

  test("JSON works the same; --config=FILE is accepted; false becomes --no-NAME", async () => {
    expect(await withFile(["chunkstore", "--config=s.json"], '{"dir": "d", "witness": false}')).toEqual([
      "chunkstore",
      "--dir=d",
      "--no-witness",
    ]);
  });

  test("a flag on the command line overrides the file, in any spelling", async () => {
    const toml = 'dir = "file-dir"\nlisten = "1.2.3.4:1"\ntoken-file = "t"\nwitness = true\n';
    const out = await withFile(
      ["chunkstore", "--listen", "127.0.0.1:0", "--config", "s.toml", "--tokenFile=x", "--no-witness"],
      toml,
    );
    expect(out).toEqual([
      "chunkstore",
      "--dir=file-dir",
      "--listen",
      "127.0.0.1:0",
      "--tokenFile=x",
      "--no-witness",
    ]);
  });

  test("a list gives a repeatable flag once per value; the command line's --store replaces the list", async () => {
    const toml = 'store = ["a=http://h1:9400", "b=http://h2:9400"]\nreplicas = 2\n';
    expect(await withFile(["gateway", "--config", "g.toml"], toml)).toEqual([
      "gateway",
      "--store=a=http://h1:9400",
      "--store=b=http://h2:9400",
      "--replicas=2",
    ]);
    expect(await withFile(["gateway", "--config", "g.toml", "--store", "c=http://h3:9400"], toml)).toEqual([
      "gateway",
      "--replicas=2",
      "--store",
      "c=http://h3:9400",
    ]);
  });

  test("nested subcommands get their own flags, before their positionals", async () => {
    expect(
      await withFile(["image", "create", "--config", "c.json", "web01", "1G"], '{"api": "http://gw:8080"}'),
    ).toEqual(["image", "create", "--api=http://gw:8080", "web01", "1G"]);
  });

  test("an unknown key is an error naming the key and the flags the command takes", async () => {
    const err = await withFile(["chunkstore", "--config", "s.toml"], 'dir = "d"\nlisen = "x"\n').catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toContain('unknown key "lisen"');
    expect(err.message).toContain('"s.toml"');
    expect(err.message).toContain("blockmend chunkstore takes: dir, listen, token-file, witness");
  });

  test("a positional argument cannot be set from the file", async () => {
    await expect(withFile(["image", "create", "--config", "c.json"], '{"name": "x"}')).rejects.toThrow(
      /unknown key "name" \(is a positional argument/,
    );
  });

  test("wrong value types are errors naming the key", async () => {
    await expect(withFile(["chunkstore", "--config", "s.json"], '{"witness": "yes"}')).rejects.toThrow(
      /key "witness" must be true or false/,
    );
    await expect(withFile(["chunkstore", "--config", "s.json"], '{"dir": {"a": 1}}')).rejects.toThrow(
      /key "dir" must be a string or a number/,
    );
  });

  test("a missing FILE, two --config flags, an unreadable file and bad syntax are errors", async () => {
    await expect(withFile(["chunkstore", "--config"], "")).rejects.toThrow("--config needs a FILE");
    await expect(withFile(["chunkstore", "--config", "a.toml", "--config=b.toml"], "")).rejects.toThrow(
      /given twice/,
    );
    await expect(argvWithConfigFile(["chunkstore", "--config", "/nonexistent/x.toml"], root)).rejects.toThrow(
      /Cannot read config file "\/nonexistent\/x.toml"/,
    );
    await expect(withFile(["chunkstore", "--config", "s.toml"], "dir = ")).rejects.toThrow(
      /"s.toml" is not valid TOML/,
    );
  });

  test("--config after -- is a positional, not a config file", async () => {
    const argv = ["image", "create", "--", "--config", "x"];
    expect(await withFile(argv, "")).toEqual(argv);
  });
});

describe("parseConfigText", () => {
  test("the format comes from the extension; anything but an object is refused", () => {
    expect(parseConfigText("a.JSON", '{"x": 1}')).toEqual({ x: 1 });
    expect(() => parseConfigText("a.yaml", "x: 1")).toThrow(/name it \*\.json or \*\.toml/);
    expect(() => parseConfigText("a.json", "[1]")).toThrow(/must hold an object/);
  });
});

describe("blockmend --config", () => {
  const dirs: string[] = [];
  afterAll(async () => {
    await killAll();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test("the chunkstore command runs from a TOML file, with a flag overriding its listen address", async () => {
    const dir = await mkdtemp(join(tmpdir(), "blockmend-config-"));
    dirs.push(dir);
    const file = join(dir, "store.toml");
    await writeFile(file, `dir = "${join(dir, "store")}"\nlisten = "127.0.0.1:1"\n`);
    const store = await startBlockmend(["chunkstore", "--config", file, "--listen", "127.0.0.1:0"]);
    expect(store.output()).toContain(`serving file:${join(dir, "store")}`);
    expect((await fetch(`${store.url}/v1/stats`)).status).toBe(200);
  });

  test("the gateway takes its repeatable --store from a TOML list", async () => {
    const dir = await mkdtemp(join(tmpdir(), "blockmend-config-"));
    dirs.push(dir);
    const [a, b] = await Promise.all(
      ["a", "b"].map((id) =>
        startBlockmend(["chunkstore", "--dir", join(dir, id), "--listen", "127.0.0.1:0"]),
      ),
    );
    const file = join(dir, "gateway.toml");
    await writeFile(
      file,
      [
        `store = ["a=${a!.url}", "b=${b!.url}"]`,
        "replicas = 2",
        "min-replicas = 1",
        'nbd = "127.0.0.1:0"',
        'http = "127.0.0.1:0"',
        `state-dir = "${join(dir, "gw-state")}"`,
      ].join("\n"),
    );
    const gw = await startBlockmend(["gateway", "--config", file]);
    const body = (await (await fetch(`${gw.url}/v1/stores`)).json()) as {
      replicas: number;
      stores: { id: string }[];
    };
    expect(body.stores.map((s) => s.id)).toEqual(["a", "b"]);
    expect(body.replicas).toBe(2);
  });

  test("an unknown key stops the command with the key named, before anything starts", async () => {
    const dir = await mkdtemp(join(tmpdir(), "blockmend-config-"));
    dirs.push(dir);
    const file = join(dir, "store.json");
    await writeFile(file, JSON.stringify({ dir: join(dir, "store"), "token-flie": "x" }));
    const proc = Bun.spawn([process.execPath, "cli/main.ts", "chunkstore", "--config", file], {
      cwd: join(import.meta.dir, "../.."),
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    expect(code).toBe(1);
    expect(out + err).toContain('unknown key "token-flie"');
  });
});
