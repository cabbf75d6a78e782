/**
 * `blockmend image ...`: manage images on a running gateway through its HTTP API
 * (`--api URL`, else $BLOCKMEND_API, else http://127.0.0.1:8080; `--ca`, `--token-file`:
 * `api-client-flags.ts`).
 *
 *   create NAME SIZE [--chunk-size N]   SIZE: bytes, or with K, M, G, T, P (KiB ... PiB: powers of 1024)
 *   ls [--json]                         one line per image
 *   info NAME [--json]
 *   rm NAME | NAME@SNAP                 delete an image, or one snapshot
 *   snapshot NAME SNAP
 *   clone SRC@SNAP NEWNAME [--size S]
 *   import FILE NAME [--chunk-size N]   creates NAME if needed; skips zero regions
 *   export NAME[@SNAP] FILE             sparse file; only data extents are downloaded
 *
 * Progress bars go to stderr (only on a terminal); results to stdout; a failure prints
 * one line naming the API URL and the server's message, and exits 1.
 */
import { type ArgsDef, type CommandDef, defineCommand, type ParsedArgs } from "citty";
import cliProgress from "cli-progress";
import { parseExportName } from "../gateway/image/image-service.ts";
import { API_CLIENT_ARGS, gatewayClientOf } from "./api-client-flags.ts";
import type { GatewayClient } from "./gateway-client.ts";
import { exportImage, importImage, type TransferResult } from "./image-transfer.ts";
import { formatBytes, parseSize, SIZE_UNITS_HELP } from "./size.ts";
import { strictCommand } from "./strict-flags.ts";

const apiArg = API_CLIENT_ARGS;
const jsonArg = {
  json: { type: "boolean", description: "Print JSON", default: false },
} as const satisfies ArgsDef;
const chunkSizeArg = {
  "chunk-size": {
    type: "string",
    description: "Chunk size of a new image (power of two, 4K to 4M; default 64K)",
  },
} as const satisfies ArgsDef;

/** A subcommand whose failures print one line and exit 1, instead of a stack trace. */
function command<A extends ArgsDef>(
  name: string,
  description: string,
  args: A,
  run: (args: ParsedArgs<A>, client: GatewayClient) => Promise<void>,
): CommandDef<A & typeof apiArg> {
  return strictCommand(
    defineCommand({
      meta: { name, description },
      args: { ...args, ...apiArg },
      async run({ args }) {
        try {
          // The merged args type is not assignable to ParsedArgs<A> generically; the values are.
          await run(args as unknown as ParsedArgs<A>, await gatewayClientOf(args));
        } catch (err) {
          console.error(`blockmend image ${name}: ${err instanceof Error ? err.message : String(err)}`);
          process.exitCode = 1;
        }
      },
    }),
    "image",
  );
}

const optionalSize = (text: string | undefined, what: string) =>
  text ? parseSize(text, what, { positive: true }) : undefined;

const create = command(
  "create",
  "Create an empty image",
  {
    name: { type: "positional", description: "Image name", required: true },
    size: { type: "positional", description: `Size: ${SIZE_UNITS_HELP}`, required: true },
    ...chunkSizeArg,
  },
  async (args, client) => {
    const info = await client.createImage(args.name, parseSize(args.size, "size", { positive: true }), {
      chunkSize: optionalSize(args["chunk-size"], "chunk size"),
    });
    console.log(
      `created image ${info.name}: ${formatBytes(info.size)} (${info.size} bytes), chunk size ${formatBytes(info.chunkSize)}`,
    );
  },
);

const ls = command("ls", "List images", { ...jsonArg }, async (args, client) => {
  const images = await client.listImages();
  if (args.json) return console.log(JSON.stringify(images, null, 2));
  const rows = [["NAME", "SIZE", "CHUNK", "GENERATION", "IN SYNC", "SNAPSHOTS"]];
  for (const i of images) {
    const synced = Object.values(i.synced);
    const inSync = synced.filter((s) => s.generation === i.generation).length;
    rows.push([
      i.name,
      formatBytes(i.size),
      formatBytes(i.chunkSize),
      String(i.generation),
      `${inSync}/${synced.length}`,
      i.snapshots.map((s) => s.name).join(",") || "-",
    ]);
  }
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((r) => r[col]!.length)));
  for (const r of rows)
    console.log(
      r
        .map((cell, col) => cell.padEnd(widths[col]!))
        .join("  ")
        .trimEnd(),
    );
});

const info = command(
  "info",
  "Show an image (NAME) or a snapshot (NAME@SNAP)",
  { name: { type: "positional", description: "NAME or NAME@SNAP", required: true }, ...jsonArg },
  async (args, client) => {
    const { image, snapshot } = parseExportName(args.name);
    const i = await client.info(image);
    if (snapshot !== undefined) {
      const s = i.snapshots.find((x) => x.name === snapshot);
      if (!s)
        throw new TypeError(
          `Image ${image} has no snapshot ${snapshot} (it has ${i.snapshots.map((x) => x.name).join(", ") || "none"})`,
        );
      if (args.json) return console.log(JSON.stringify({ image, ...s }, null, 2));
      console.log(
        [
          `name:        ${image}@${s.name}`,
          `size:        ${formatBytes(s.size)} (${s.size} bytes)`,
          `chunk size:  ${formatBytes(i.chunkSize)}`,
          `generation:  ${s.generation} (the image is at ${i.generation})`,
          `root:        ${s.root}`,
          `created:     ${s.createdAt}`,
        ].join("\n"),
      );
      return;
    }
    if (args.json) return console.log(JSON.stringify(i, null, 2));
    const lines = [
      `name:        ${i.name}`,
      `size:        ${formatBytes(i.size)} (${i.size} bytes)`,
      `chunk size:  ${formatBytes(i.chunkSize)}`,
      `generation:  ${i.generation}`,
      `epoch:       ${i.epoch}`,
      `root:        ${i.root}`,
      `created:     ${i.createdAt}`,
      "synced:",
      ...Object.entries(i.synced).map(
        ([store, s]) =>
          `  ${store}: generation ${s.generation}${s.generation === i.generation ? " (in sync)" : " (behind)"}`,
      ),
      `snapshots:${i.snapshots.length ? "" : " none"}`,
      ...i.snapshots.map(
        (s) => `  ${s.name}: ${formatBytes(s.size)}, generation ${s.generation}, ${s.createdAt}`,
      ),
    ];
    console.log(lines.join("\n"));
  },
);

/** What `rm` tells about space: chunks go with the next garbage collection pass. */
const RECLAIM_NOTE =
  "its space is reclaimed by the next garbage collection pass, after its grace period (every 6 h by default; now: blockmend gc run --wait)";

const rm = command(
  "rm",
  "Delete an image (NAME) or a snapshot (NAME@SNAP)",
  { name: { type: "positional", description: "NAME or NAME@SNAP", required: true } },
  async (args, client) => {
    const { image, snapshot } = parseExportName(args.name);
    if (snapshot !== undefined) {
      await client.removeSnapshot(image, snapshot);
      console.log(`removed snapshot ${args.name}`);
      console.log(RECLAIM_NOTE);
    } else {
      await client.removeImage(image);
      console.log(`removed image ${image}`);
      console.log(RECLAIM_NOTE);
    }
  },
);

const snapshot = command(
  "snapshot",
  "Flush and snapshot an image",
  {
    name: { type: "positional", description: "Image name", required: true },
    snap: { type: "positional", description: "Snapshot name", required: true },
  },
  async (args, client) => {
    await client.createSnapshot(args.name, args.snap);
    console.log(`created snapshot ${args.name}@${args.snap}`);
  },
);

const clone = command(
  "clone",
  "Create an image from a snapshot (instant; shares its chunks)",
  {
    source: { type: "positional", description: "SRC@SNAP", required: true },
    name: { type: "positional", description: "New image name", required: true },
    size: { type: "string", description: "Grow the clone to this size (default: the snapshot's)" },
  },
  async (args, client) => {
    const i = await client.createImage(args.name, optionalSize(args.size, "size"), { from: args.source });
    console.log(`cloned ${args.source} to ${i.name}: ${formatBytes(i.size)} (${i.size} bytes)`);
  },
);

const importCommand = command(
  "import",
  "Upload a raw disk file into an image (created if missing)",
  {
    file: { type: "positional", description: "Raw image file", required: true },
    name: { type: "positional", description: "Image name", required: true },
    ...chunkSizeArg,
  },
  async (args, client) => {
    const started = Date.now();
    const result = await withProgress(`import ${args.name}`, (progress) =>
      importImage(client, args.file, args.name, {
        chunkSize: optionalSize(args["chunk-size"], "chunk size"),
        ...progress,
      }),
    );
    console.log(
      `imported ${args.file} into ${args.name}${result.created ? " (created)" : ""}: ${summary(result, "sent", "skipped (zero)", started)}`,
    );
    const tail = result.size % 512;
    if (tail !== 0 && result.created)
      console.log(
        `note: ${args.file} is ${result.size} bytes, not a whole number of 512-byte sectors: image ${args.name} is ${result.size - tail + 512} bytes, its last ${512 - tail} bytes read as zeros`,
      );
  },
);

const exportCommand = command(
  "export",
  "Download an image or snapshot into a sparse raw file",
  {
    name: {
      type: "positional",
      description: "NAME or NAME@SNAP (a snapshot is a consistent copy)",
      required: true,
    },
    file: { type: "positional", description: "Raw file to write (replaced)", required: true },
  },
  async (args, client) => {
    const started = Date.now();
    const result = await withProgress(`export ${args.name}`, (progress) =>
      exportImage(client, args.name, args.file, progress),
    );
    console.log(
      `exported ${args.name} to ${args.file}: ${summary(result, "downloaded", "skipped (holes)", started)}`,
    );
  },
);

/** `20.0 MiB, 12582912 bytes sent, 8388608 bytes skipped (zero), 1.3 s`. */
function summary(r: TransferResult, sent: string, skipped: string, started: number): string {
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  return `${formatBytes(r.size)}, ${r.sentBytes} bytes ${sent}, ${r.skippedBytes} bytes ${skipped}, ${seconds} s`;
}

/** Runs a transfer with a progress bar on stderr when it is a terminal. */
async function withProgress<T>(
  title: string,
  fn: (progress: { onStart(size: number): void; onProgress(bytes: number): void }) => Promise<T>,
): Promise<T> {
  if (!process.stderr.isTTY) return fn({ onStart() {}, onProgress() {} });
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    format: `${title} [{bar}] {percentage}% | {done} of {total_h} | ETA {eta_formatted}`,
    hideCursor: true,
    etaBuffer: 50,
  });
  let done = 0;
  try {
    return await fn({
      onStart: (size) => bar.start(size, 0, { done: formatBytes(0), total_h: formatBytes(size) }),
      onProgress: (bytes) => {
        done += bytes;
        bar.update(done, { done: formatBytes(done) });
      },
    });
  } finally {
    bar.stop();
  }
}

/** `blockmend image`. */
export default defineCommand({
  meta: { name: "image", description: "Create, list, snapshot, clone, import and export images" },
  subCommands: {
    create,
    ls,
    info,
    rm,
    snapshot,
    clone,
    import: importCommand,
    export: exportCommand,
  },
});
