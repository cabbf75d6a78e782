/**
 * `blockmend backup ...`: backups of images into S3 buckets, run as jobs in a gateway
 * (`--api URL`, else $BLOCKMEND_API, else http://127.0.0.1:8080; `--ca`, `--token-file` as
 * for every client command) and watched from here.
 *
 *   create IMAGE[@SNAP] --to s3://BUCKET/PREFIX?endpoint=URL&region=R [--keep-snapshot]
 *   ls --from TARGET
 *   restore ID --from TARGET --to NEW_IMAGE
 *   verify ID --from TARGET                    exit 1 unless every chunk is there and right
 *   prune --from TARGET --keep-last N [--keep-daily N] [--repack-below F]
 *   jobs                                       the gateway's backup jobs
 *   keygen FILE                                a new encryption key file (mode 600)
 *
 * Every command but keygen and jobs takes `--key-file FILE` (an encrypted repository),
 * `--json` and `--detach` (start the job, print its id, do not wait). The target's
 * credentials come from this command's environment (AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, or AWS_PROFILE and the SDK's chain) and travel
 * to the gateway with the request, which keeps them in memory for the job only.
 */
import { Buffer } from "node:buffer";
import { readFile, writeFile } from "node:fs/promises";
import { S3Client } from "@aws-sdk/client-s3";
import { type ArgsDef, defineCommand } from "citty";
import cliProgress from "cli-progress";
import type { BackupJobStatus } from "../gateway/backup/backup-jobs.ts";
import type { Manifest } from "../gateway/backup/backup-manifest.ts";
import { parseBackupTarget, type TargetCredentials } from "../gateway/backup/backup-target.ts";
import { generateKeyFile, parseKeyFile } from "../gateway/backup/repository-crypto.ts";
import { parseExportName } from "../gateway/image/image-service.ts";
import { API_CLIENT_ARGS, gatewayClientOf } from "./api-client-flags.ts";
import { type GatewayClient, GatewayError } from "./gateway-client.ts";
import { formatBytes } from "./size.ts";
import { rejectUnknownFlags, UsageError } from "./strict-flags.ts";

const common = {
  ...API_CLIENT_ARGS,
  json: { type: "boolean", description: "Print JSON", default: false },
  "key-file": {
    type: "string",
    description: "Key file of an encrypted repository (blockmend backup keygen)",
  },
} as const satisfies ArgsDef;
const detachArg = {
  detach: { type: "boolean", description: "Start the job and print its id without waiting", default: false },
} as const satisfies ArgsDef;

/** The credentials this command's environment resolves to (the SDK's default chain). */
async function environmentCredentials(region: string | undefined): Promise<TargetCredentials> {
  const client = new S3Client({
    region: region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? "us-east-1",
  });
  try {
    const c = await client.config.credentials();
    return {
      accessKeyId: c.accessKeyId,
      secretAccessKey: c.secretAccessKey,
      ...(c.sessionToken && { sessionToken: c.sessionToken }),
    };
  } catch (err) {
    throw new TypeError(
      `No credentials for the backup target: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or AWS_PROFILE (${(err as Error).message})`,
    );
  } finally {
    client.destroy();
  }
}

/** The target part of a request: URL, credentials, key (hex). */
async function targetBody(url: string, keyFile: string | undefined): Promise<Record<string, unknown>> {
  const target = parseBackupTarget(url);
  let key: string | undefined;
  if (keyFile) {
    const text = await readFile(keyFile, "utf8").catch((err: Error) => {
      throw new TypeError(`--key-file ${keyFile}: ${err.message}`);
    });
    key = Buffer.from(parseKeyFile(text)).toString("hex");
  }
  return {
    target: target.url,
    credentials: await environmentCredentials(target.region),
    ...(key && { key }),
  };
}

/** Watches a job to its end, with a progress bar on a terminal; resolves with its last status. */
async function watch(client: GatewayClient, first: BackupJobStatus, title: string): Promise<BackupJobStatus> {
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar({
        stream: process.stderr,
        format: `${title} [{bar}] {percentage}% | {done} of {all} | {rate}/s | ETA {eta_s} | {phase}`,
        hideCursor: true,
      })
    : null;
  let s = first;
  bar?.start(1, 0, { done: "0 B", all: "?", rate: "0 B", eta_s: "?", phase: s.phase });
  try {
    while (s.state === "running") {
      await new Promise((r) => setTimeout(r, 500));
      s = await client.request<BackupJobStatus>("GET", `/v1/backups/jobs/${encodeURIComponent(s.id)}`);
      if (bar) {
        bar.setTotal(Math.max(1, s.bytesTotal));
        bar.update(s.bytesDone, {
          done: formatBytes(s.bytesDone),
          all: formatBytes(s.bytesTotal),
          rate: formatBytes(s.rateBytesPerSecond),
          eta_s: s.etaSeconds === null ? "?" : `${s.etaSeconds}s`,
          phase: s.phase,
        });
      }
    }
  } finally {
    bar?.stop();
  }
  return s;
}

/** Starts a job, watches it unless detached, and hands its result to `report`. */
async function runJob(
  name: string,
  args: Args,
  request: Record<string, unknown>,
  report: (result: Record<string, unknown>, status: BackupJobStatus) => number | undefined,
): Promise<void> {
  const client = await gatewayClientOf(args);
  const first = await client.request<BackupJobStatus>("POST", "/v1/backups/jobs", request);
  if (args.detach) {
    console.log(
      args.json ? JSON.stringify({ jobId: first.id }) : `started backup job ${first.id} on ${client.url}`,
    );
    return;
  }
  const last = await watch(client, first, `backup ${name}`);
  if (last.state === "failed") throw new GatewayError(`job ${last.id} failed: ${last.error}`, 500);
  process.exitCode = report(last.result as unknown as Record<string, unknown>, last) ?? 0;
}

/** citty's parsed flags (typed per command by its ArgsDef; read here by name). */
// biome-ignore lint/suspicious/noExplicitAny: citty's parsed args, one shape per subcommand
type Args = Record<string, any>;

/** A subcommand whose failures print one line and exit 1. */
function command<A extends ArgsDef>(
  name: string,
  description: string,
  args: A,
  run: (args: Args) => Promise<void>,
) {
  return defineCommand({
    meta: { name, description },
    args,
    async run({ args: a, rawArgs }) {
      try {
        // citty ignores unknown flags: a typo (--form) must not run something else.
        rejectUnknownFlags(rawArgs, args);
        await run(a as Args);
      } catch (err) {
        console.error(`blockmend backup ${name}: ${err instanceof Error ? err.message : String(err)}`);
        process.exitCode = err instanceof UsageError ? 2 : 1;
      }
    },
  });
}

const create = command(
  "create",
  "Back up an image (a snapshot is taken unless IMAGE@SNAP names one)",
  {
    image: { type: "positional", description: "IMAGE or IMAGE@SNAP", required: true },
    to: { type: "string", description: "Target s3://BUCKET/PREFIX?endpoint=URL&region=R", required: true },
    "keep-snapshot": {
      type: "boolean",
      description: "Keep the snapshot taken for the backup",
      default: false,
    },
    ...common,
    ...detachArg,
  },
  async (args) => {
    const { image, snapshot } = parseExportName(args.image);
    const request = {
      kind: "create",
      ...(await targetBody(args.to, args["key-file"])),
      image,
      ...(snapshot !== undefined && { snapshot }),
      keepSnapshot: args["keep-snapshot"],
    };
    await runJob("create", args, request, (r, s) => {
      const out = {
        id: r.id,
        jobId: s.id,
        image: r.image,
        snapshot: r.snapshot,
        snapshotKept: r.snapshotKept,
        parent: r.parent,
        uploadedBytes: r.uploadedBytes,
        skippedBytes: r.skippedBytes,
        totalBytes: r.totalBytes,
        uploadedChunks: r.uploadedChunks,
        packs: r.packs,
        seconds: r.seconds,
      };
      if (args.json) console.log(JSON.stringify(out, null, 2));
      else
        console.log(
          `backup ${r.id} of ${r.image}@${r.snapshot}: ${formatBytes(r.totalBytes as number)} of data, ${formatBytes(r.uploadedBytes as number)} uploaded, ${formatBytes(r.skippedBytes as number)} skipped, ${(r.seconds as number).toFixed(1)} s${r.snapshotKept ? "" : " (snapshot removed)"}`,
        );
      return 0;
    });
  },
);

const ls = command(
  "ls",
  "List the backups in a target",
  {
    from: { type: "string", description: "Target s3://BUCKET/PREFIX?endpoint=URL&region=R", required: true },
    ...common,
  },
  async (args) => {
    const { backups } = await (await gatewayClientOf(args)).request<{ backups: Manifest[] }>(
      "POST",
      "/v1/backups/list",
      await targetBody(args.from, args["key-file"]),
    );
    const rows = backups.map((m) => ({
      id: m.id,
      image: m.image,
      snapshot: m.snapshot,
      time: m.createdAt,
      size: m.size,
      chunkSize: m.chunkSize,
      totalBytes: m.totalBytes,
      uploadedBytes: m.uploadedBytes,
      skippedBytes: m.skippedBytes,
      parent: m.parent,
      root: m.root,
    }));
    if (args.json) return console.log(JSON.stringify(rows, null, 2));
    const table = [["ID", "IMAGE", "SNAPSHOT", "TIME", "SIZE", "DATA", "UPLOADED"]];
    for (const r of rows)
      table.push([
        r.id,
        r.image,
        r.snapshot,
        r.time,
        formatBytes(r.size),
        formatBytes(r.totalBytes),
        formatBytes(r.uploadedBytes),
      ]);
    const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
    for (const row of table)
      console.log(
        row
          .map((c, i) => c.padEnd(widths[i]!))
          .join("  ")
          .trimEnd(),
      );
  },
);

const restore = command(
  "restore",
  "Restore a backup into a new image (downloads only what the cluster lacks)",
  {
    id: { type: "positional", description: "Backup id", required: true },
    from: { type: "string", description: "Target s3://BUCKET/PREFIX?endpoint=URL&region=R", required: true },
    to: { type: "string", description: "Name of the new image", required: true },
    ...common,
    ...detachArg,
  },
  async (args) => {
    const request = {
      kind: "restore",
      ...(await targetBody(args.from, args["key-file"])),
      backup: args.id,
      image: args.to,
    };
    await runJob("restore", args, request, (r) => {
      if (args.json) console.log(JSON.stringify(r, null, 2));
      else
        console.log(
          `restored backup ${r.id} into image ${r.image}: ${formatBytes(r.size as number)}, ${r.downloadedChunks} of ${r.chunks} chunks downloaded (${formatBytes(r.downloadedBytes as number)}), ${r.presentChunks} already in the cluster, ${(r.seconds as number).toFixed(1)} s`,
        );
      return 0;
    });
  },
);

const verify = command(
  "verify",
  "Check that every chunk of a backup is in the target and hashes right (exit 1 if not)",
  {
    id: { type: "positional", description: "Backup id", required: true },
    from: { type: "string", description: "Target s3://BUCKET/PREFIX?endpoint=URL&region=R", required: true },
    ...common,
    ...detachArg,
  },
  async (args) => {
    const request = { kind: "verify", ...(await targetBody(args.from, args["key-file"])), backup: args.id };
    await runJob("verify", args, request, (r) => {
      if (args.json) console.log(JSON.stringify(r, null, 2));
      else
        console.log(
          `backup ${r.id}: ${r.ok ? "OK" : "DAMAGED"}: ${r.verifiedChunks} of ${r.chunks} chunks verified, ${r.missingChunks} missing, ${r.corruptChunks} corrupt${(r.missingPacks as string[]).length ? `; missing packs: ${(r.missingPacks as string[]).join(", ")}` : ""}${(r.damagedPacks as string[]).length ? `; damaged packs: ${(r.damagedPacks as string[]).join(", ")}` : ""}`,
        );
      return r.ok ? 0 : 1;
    });
  },
);

const prune = command(
  "prune",
  "Forget backups beyond a keep policy and delete what no remaining backup needs",
  {
    from: { type: "string", description: "Target s3://BUCKET/PREFIX?endpoint=URL&region=R", required: true },
    "keep-last": { type: "string", description: "Keep the last N backups of each image" },
    "keep-daily": {
      type: "string",
      description: "Keep the last backup of each of the last N days, per image",
    },
    "repack-below": {
      type: "string",
      description: "Repack packs with less than this fraction live (default 0.5)",
    },
    ...common,
    ...detachArg,
  },
  async (args) => {
    const n = (flag: string) => {
      const v = args[flag] as string | undefined;
      if (v === undefined) return undefined;
      const x = Number(v);
      if (!Number.isFinite(x) || x < 0) throw new TypeError(`--${flag} ${v} is not a number`);
      return x;
    };
    const request = {
      kind: "prune",
      ...(await targetBody(args.from, args["key-file"])),
      keepLast: n("keep-last"),
      keepDaily: n("keep-daily"),
      repackBelow: n("repack-below"),
    };
    await runJob("prune", args, request, (r) => {
      if (args.json) console.log(JSON.stringify(r, null, 2));
      else
        console.log(
          `kept ${(r.kept as string[]).length} backup(s), removed ${(r.removed as string[]).length}; deleted ${r.deletedPacks} pack(s) (${formatBytes(r.freedBytes as number)}), repacked ${r.repackedPacks} into ${r.newPacks}; ${r.remainingPacks} pack(s) remain`,
        );
      return 0;
    });
  },
);

const jobs = command(
  "jobs",
  "The gateway's backup jobs (running and recent)",
  { ...API_CLIENT_ARGS, json: common.json },
  async (args) => {
    const { jobs: list } = await (await gatewayClientOf(args)).request<{ jobs: BackupJobStatus[] }>(
      "GET",
      "/v1/backups/jobs",
    );
    if (args.json) return console.log(JSON.stringify(list, null, 2));
    if (list.length === 0) return console.log("no backup jobs");
    for (const j of list)
      console.log(
        `${j.id}  ${j.kind.padEnd(7)}  ${j.state.padEnd(7)}  ${j.image ?? j.backup ?? "-"}  ${formatBytes(j.bytesDone)} of ${formatBytes(j.bytesTotal)}, ${formatBytes(j.rateBytesPerSecond)}/s, ETA ${j.etaSeconds ?? "?"} s  ${j.phase}${j.error ? `: ${j.error}` : ""}`,
      );
  },
);

const keygen = command(
  "keygen",
  "Write a new random key file for encrypted backups (keep a copy: without it nothing can be restored)",
  { file: { type: "positional", description: "Key file to create (not overwritten)", required: true } },
  async (args) => {
    await writeFile(args.file, generateKeyFile(), { mode: 0o600, flag: "wx" });
    console.log(`wrote a new backup key to ${args.file}`);
  },
);

/** `blockmend backup`. */
export default defineCommand({
  meta: {
    name: "backup",
    description: "Back up images to S3 buckets, list, restore, verify and prune backups",
  },
  subCommands: { create, ls, restore, verify, prune, jobs, keygen },
});
