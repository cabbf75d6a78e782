/**
 * compose.yaml and deploy/Dockerfile. `docker-compose config` (Debian's docker-compose)
 * validates the file and prints it normalized; the tests check what issue 15 asked of it
 * (healthchecks, restart policies, one image built once with `npm ci` inside it, no bind
 * mount of the checkout, secrets from scripts/make-secrets.sh), then run the four
 * services' own command lines and health checks as local processes (there is no Docker
 * engine here): addresses moved to loopback, volumes and secrets to temporary files.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAll, type StartedProcess, startBlockmend } from "../support/processes.ts";
import { requireTools, run, runOk } from "../support/tools.ts";

const ROOT = join(import.meta.dir, "../..");
const dirs: string[] = [];

afterAll(async () => {
  await killAll();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Service {
  image: string;
  build: { context: string; dockerfile: string };
  command: string[];
  restart: string;
  healthcheck: { test: string[] };
  volumes?: (string | { type: string; source: string; target: string })[];
  secrets?: { source: string }[];
  depends_on?: Record<string, { condition: string }>;
  ports?: (string | { host_ip?: string })[];
}

type ComposeConfig = { services: Record<string, Service>; secrets: Record<string, { file: string }> };
let config: Promise<ComposeConfig> | undefined;

/** compose.yaml as `docker-compose config` normalizes it (interpolated, anchors merged); run once. */
function composeConfig(): Promise<ComposeConfig> {
  requireTools("docker-compose");
  config ??= runOk([
    "docker-compose",
    "--project-directory",
    ROOT,
    "-f",
    join(ROOT, "compose.yaml"),
    "config",
  ]).then((out) => Bun.YAML.parse(out) as ComposeConfig);
  return config;
}

describe("compose.yaml", () => {
  test("docker-compose config accepts it: two data stores, a witness and a gateway", async () => {
    const { services } = await composeConfig();
    expect(Object.keys(services).sort()).toEqual(["gateway", "store-a", "store-b", "witness"]);
    expect(services.witness!.command).toContain("--witness");
    for (const id of ["store-a", "store-b"]) expect(services[id]!.command).not.toContain("--witness");
  });

  test("every service has a health check and a restart policy, and runs the one image built from deploy/Dockerfile", async () => {
    const { services } = await composeConfig();
    for (const [name, s] of Object.entries(services)) {
      expect(s.restart, name).toBe("unless-stopped");
      expect(s.healthcheck.test[0], name).toBe("CMD");
      expect(s.image, name).toBe("blockmend:local");
      expect(s.build.dockerfile, name).toBe("deploy/Dockerfile");
    }
  });

  test("no service installs anything at start or mounts the host checkout", async () => {
    const { services } = await composeConfig();
    for (const [name, s] of Object.entries(services)) {
      expect(s.command.join(" "), name).not.toMatch(/npm|npx/);
      for (const v of s.volumes ?? []) {
        const source = typeof v === "string" ? v.split(":")[0]! : v.source;
        expect(source, `${name} mounts ${source}`).not.toMatch(/^[./~]/);
      }
    }
    const dockerfile = await readFile(join(ROOT, "deploy/Dockerfile"), "utf8");
    expect(dockerfile).toMatch(/^RUN npm ci --omit=dev/m);
    expect(dockerfile).toMatch(/^USER node$/m);
  });

  test("the gateway waits for healthy stores and publishes NBD and HTTP on the host's loopback only", async () => {
    const { services } = await composeConfig();
    const gw = services.gateway!;
    expect(gw.depends_on).toEqual({
      "store-a": { condition: "service_healthy" },
      "store-b": { condition: "service_healthy" },
      witness: { condition: "service_healthy" },
    });
    expect(gw.ports).toEqual(["127.0.0.1:10809:10809/tcp", "127.0.0.1:8080:8080/tcp"]);
  });

  test("the token is the file scripts/make-secrets.sh writes by default, and every service gets it", async () => {
    const { services, secrets } = await composeConfig();
    expect(secrets["store-token"]!.file).toBe(join(ROOT, "deploy/secrets/store-token"));
    for (const s of Object.values(services)) expect(s.secrets).toEqual([{ source: "store-token" }]);
    const dir = await mkdtemp(join(tmpdir(), "blockmend-secrets-"));
    dirs.push(dir);
    const target = join(dir, "secrets");
    expect(await runOk(["bash", join(ROOT, "scripts/make-secrets.sh"), target])).toContain("wrote");
    const token = await readFile(join(target, "store-token"), "utf8");
    expect(token).toMatch(/^[0-9a-f]{64}\n$/);
    expect((await stat(target)).mode & 0o777).toBe(0o700);
    // A second run keeps the token (rotating it is a deliberate --force).
    expect(await runOk(["bash", join(ROOT, "scripts/make-secrets.sh"), target])).toContain("kept");
    expect(await readFile(join(target, "store-token"), "utf8")).toBe(token);
    await runOk(["bash", join(ROOT, "scripts/make-secrets.sh"), target, "--force"]);
    expect(await readFile(join(target, "store-token"), "utf8")).not.toBe(token);
  });

  test("the services' own commands and health checks, run as local processes, serve an image over NBD", async () => {
    requireTools("qemu-io");
    const { services } = await composeConfig();
    const dir = await mkdtemp(join(tmpdir(), "blockmend-compose-"));
    dirs.push(dir);
    await runOk(["bash", join(ROOT, "scripts/make-secrets.sh"), join(dir, "secrets")]);
    const secret = join(dir, "secrets/store-token");
    const started: Record<string, StartedProcess> = {};
    /** The container's paths and addresses, as this machine has them. */
    const local = (word: string, service: string) =>
      word
        .replace("/run/secrets/store-token", secret)
        .replace(/^\/data$/, join(dir, service))
        .replace(/0\.0\.0\.0:\d+/, "127.0.0.1:0")
        .replace(/http:\/\/(store-a|store-b|witness):9400/, (_, host: string) => started[host]!.url)
        .replace("/app/", `${ROOT}/`);
    for (const name of ["store-a", "store-b", "witness"]) {
      started[name] = await startBlockmend(services[name]!.command.map((w) => local(w, name)));
    }
    const gw = await startBlockmend(services.gateway!.command.map((w) => local(w, "gateway")));
    started.gateway = gw;

    // Each service's health check, pointed at where the service listens here.
    const health = async (name: string) => {
      const port = new URL(started[name]!.url).port;
      const cmd = services[name]!.healthcheck.test.slice(1).map((w) =>
        local(w, name).replace(/127\.0\.0\.1:(9400|8080)/, `127.0.0.1:${port}`),
      );
      return (await run(cmd)).code;
    };
    for (const name of Object.keys(started)) expect(await health(name), name).toBe(0);

    const created = await fetch(`${gw.url}/v1/images`, {
      method: "POST",
      body: JSON.stringify({ name: "vm", size: 16 * 1024 * 1024 }),
      headers: { "content-type": "application/json" },
    });
    expect(created.status).toBe(201);
    const nbd = /(nbd:\/\/127\.0\.0\.1:\d+)/.exec(gw.output())![1]!;
    const io = await runOk([
      "qemu-io",
      "-f",
      "raw",
      "-c",
      "write -P 0x3c 0 1M",
      "-c",
      "flush",
      "-c",
      "read -P 0x3c 0 1M",
      `${nbd}/vm`,
    ]);
    expect(io).not.toContain("Pattern verification failed");

    // A stopped store fails its health check (so compose restarts it and the gateway waits for it).
    await started["store-b"]!.kill("SIGTERM");
    expect(await health("store-b")).toBe(1);
  }, 90_000);
});
