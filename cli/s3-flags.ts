/**
 * The `--s3*` flags of `blockmend up` and `blockmend gateway`, and what they become: the
 * S3 endpoint's configuration. Without `--s3-credentials` only a loopback address is
 * allowed, and a key pair is generated into a file only its owner can read (for `up`,
 * `DATA/s3-credentials`, kept across restarts; for `gateway`, a fresh temporary file).
 */
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateCredentialsLine, parseCredentials } from "../gateway/s3/credentials.ts";
import type { S3EndpointConfig } from "../gateway/s3/s3-endpoint.ts";
import { isLoopback, parseListenAddress } from "./listen-address.ts";

/** citty argument definitions, spread into a command's `args`. */
export const S3_ARGS = {
  s3: { type: "string", description: "HOST:PORT for the S3-compatible endpoint (off unless given)" },
  "s3-credentials": {
    type: "string",
    description: "File of ACCESS_KEY_ID:SECRET_ACCESS_KEY lines (required unless --s3 is loopback)",
  },
  "s3-bucket": { type: "string", description: "Bucket name of the S3 endpoint", default: "images" },
  "s3-domain": { type: "string", description: "Base domain for virtual-host style requests (BUCKET.DOMAIN)" },
  "s3-region": { type: "string", description: "Region clients sign for", default: "us-east-1" },
} as const;

/** S3 bucket names: 3-63 of lowercase letters, digits, dots and hyphens. */
const BUCKET_PATTERN = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const REGION_PATTERN = /^[a-z0-9-]{1,40}$/;

/** The endpoint's configuration and where its credentials are, or null without `--s3`. */
export interface S3Flags {
  readonly config: S3EndpointConfig;
  readonly credentialsFile: string;
}

/**
 * Reads the `--s3*` flags. Throws a TypeError with a one-line message on anything
 * wrong, including a non-loopback `--s3` without `--s3-credentials`.
 */
export async function readS3Flags(
  args: Record<string, unknown>,
  options: { generatedCredentialsDir?: string } = {},
): Promise<S3Flags | null> {
  const value = (name: keyof typeof S3_ARGS) =>
    typeof args[name] === "string" ? (args[name] as string) : undefined;
  const listen = value("s3");
  if (listen === undefined) {
    if (value("s3-credentials") !== undefined || value("s3-domain") !== undefined) {
      throw new TypeError("--s3-credentials and --s3-domain need --s3 HOST:PORT");
    }
    return null;
  }
  const { hostname, port } = parseListenAddress(listen, "--s3");
  const bucket = value("s3-bucket") ?? "images";
  const region = value("s3-region") ?? "us-east-1";
  const domain = value("s3-domain");
  if (!BUCKET_PATTERN.test(bucket))
    throw new TypeError(`--s3-bucket "${bucket}" is not an S3 bucket name (3-63 of a-z 0-9 . -)`);
  if (!REGION_PATTERN.test(region))
    throw new TypeError(`--s3-region "${region}" is not a region name (for example us-east-1)`);
  let file = value("s3-credentials");
  if (file === undefined) {
    if (!isLoopback(hostname)) {
      throw new TypeError(
        `--s3 ${listen} is reachable from other machines: give --s3-credentials FILE (lines ACCESS_KEY_ID:SECRET_ACCESS_KEY), or listen on 127.0.0.1`,
      );
    }
    file = await generatedCredentials(options.generatedCredentialsDir);
  }
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new TypeError(`--s3-credentials ${file}: ${(err as Error).message}`);
  }
  const credentials = parseCredentials(text, `--s3-credentials ${file}`);
  return {
    config: { hostname, port, bucket, region, credentials, ...(domain ? { domain } : {}) },
    credentialsFile: file,
  };
}

/** The file of a generated key pair: `DIR/s3-credentials` (made once) or a new temporary one. */
async function generatedCredentials(dir: string | undefined): Promise<string> {
  const base = dir ?? (await mkdtemp(join(tmpdir(), "blockmend-s3-")));
  await mkdir(base, { recursive: true });
  const file = join(base, "s3-credentials");
  try {
    await writeFile(file, `# blockmend S3 credentials (generated)\n${generateCredentialsLine()}\n`, {
      mode: 0o600,
      flag: "wx",
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  return file;
}

/** The startup line that says where the endpoint is. */
export function s3Banner(url: string, flags: S3Flags): string {
  const { bucket, region, domain } = flags.config;
  return `S3 endpoint on ${url} (bucket ${bucket}, region ${region}${domain ? `, virtual hosts *.${domain}` : ""}; credentials in ${flags.credentialsFile})`;
}
