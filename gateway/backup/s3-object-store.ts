/**
 * {@link ObjectStore} over an S3 bucket and key prefix, through @aws-sdk/client-s3. The
 * client is created on first use with the credentials handed in (never read from disk or
 * logged), or the SDK's default chain on this machine when none are.
 *
 * Conditional writes: `If-None-Match: *` and `If-Match: ETAG` (sent unquoted: radosgw
 * compares the bare value, AWS accepts both). A 412 is a lost condition; AWS's 409
 * ConditionalRequestConflict (another conditional write of the key in flight) is retried.
 * A 5xx or a lost connection after the SDK's retries leaves the outcome unknown: callers
 * that depend on it read back (radosgw may answer a compare-and-set loser with 500).
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import pLimit, { type LimitFunction } from "p-limit";
import { BackupTargetError, PreconditionFailedError } from "./backup-errors.ts";
import type { BackupTarget, TargetCredentials } from "./backup-target.ts";
import type { ObjectInfo, ObjectStore, PutCondition } from "./object-store.ts";

/** Requests in flight per repository: below the SDK agent's 50 sockets per host. */
export const MAX_REQUESTS_IN_FLIGHT = 16;

/** SDK attempts per request: 5xx, throttling and network errors retried twice. */
const MAX_ATTEMPTS = 3;

/** One request (a 16 MiB pack over a slow link included) gives up after this long. */
const REQUEST_TIMEOUT_MS = 120_000;

/** Retries of a conditional put answered 409 ConditionalRequestConflict. */
const MAX_CONFLICT_RETRIES = 5;

/** Codes S3 servers answer when the credentials are wrong or not allowed. */
const CREDENTIAL_CODES = new Set([
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "AccessDenied",
  "InvalidToken",
  "ExpiredToken",
  "TokenRefreshRequired",
  "CredentialsProviderError",
]);

/** Objects of a repository in an S3 bucket. */
export class S3ObjectStore implements ObjectStore {
  readonly name: string;
  readonly #target: BackupTarget;
  readonly #credentials: TargetCredentials | undefined;
  readonly #root: string;
  readonly #limit: LimitFunction;
  #client: S3Client | undefined;

  constructor(target: BackupTarget, credentials?: TargetCredentials, options: { concurrency?: number } = {}) {
    this.#target = target;
    this.#credentials = credentials;
    this.#root = target.prefix ? `${target.prefix}/` : "";
    this.name = target.url;
    this.#limit = pLimit(options.concurrency ?? MAX_REQUESTS_IN_FLIGHT);
  }

  #s3(): S3Client {
    const t = this.#target;
    const env = globalThis.process?.env ?? {};
    this.#client ??= new S3Client({
      region: t.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? "us-east-1",
      ...(t.endpoint !== undefined && { endpoint: t.endpoint, forcePathStyle: true }),
      ...(this.#credentials && { credentials: this.#credentials }),
      maxAttempts: MAX_ATTEMPTS,
      requestHandler: {
        connectionTimeout: 5_000,
        requestTimeout: REQUEST_TIMEOUT_MS,
        throwOnRequestTimeout: true,
      },
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
    return this.#client;
  }

  async get(key: string): Promise<Uint8Array | null> {
    return this.#read(key);
  }

  async getRange(key: string, start: number, end: number): Promise<Uint8Array | null> {
    if (end <= start) return new Uint8Array(0);
    return this.#read(key, `bytes=${start}-${end - 1}`);
  }

  async #read(key: string, range?: string): Promise<Uint8Array | null> {
    return this.#call(`read ${key}`, async (c) => {
      try {
        const out = await c.send(
          new GetObjectCommand({
            Bucket: this.#target.bucket,
            Key: this.#root + key,
            ...(range && { Range: range }),
          }),
        );
        return out.Body ? await out.Body.transformToByteArray() : new Uint8Array(0);
      } catch (e) {
        if (statusOf(e) === 404 && nameOf(e) !== "NoSuchBucket") return null;
        throw e;
      }
    });
  }

  async head(key: string): Promise<{ etag: string; size: number } | null> {
    return this.#call(`look up ${key}`, async (c) => {
      try {
        const out = await c.send(
          new HeadObjectCommand({ Bucket: this.#target.bucket, Key: this.#root + key }),
        );
        return { etag: (out.ETag ?? "").replace(/"/g, ""), size: out.ContentLength ?? 0 };
      } catch (e) {
        if (statusOf(e) === 404) return null;
        throw e;
      }
    });
  }

  async put(key: string, bytes: Uint8Array, condition: PutCondition = {}): Promise<void> {
    await this.#call(`write ${key}`, async (c) => {
      for (let attempt = 0; ; attempt++) {
        try {
          await c.send(
            new PutObjectCommand({
              Bucket: this.#target.bucket,
              Key: this.#root + key,
              Body: bytes,
              ContentLength: bytes.byteLength,
              ...(condition.ifNoneMatch && { IfNoneMatch: "*" }),
              ...(condition.ifMatch !== undefined && { IfMatch: condition.ifMatch }),
            }),
          );
          return;
        } catch (e) {
          const status = statusOf(e);
          if (status === 412) throw new PreconditionFailedError(`${this.name}: ${key} exists or changed`);
          if (status === 409 && attempt < MAX_CONFLICT_RETRIES) {
            await new Promise((r) => setTimeout(r, 20 * 2 ** attempt));
            continue;
          }
          throw e;
        }
      }
    });
  }

  async delete(key: string): Promise<void> {
    await this.#call(`delete ${key}`, (c) =>
      c.send(new DeleteObjectCommand({ Bucket: this.#target.bucket, Key: this.#root + key })),
    );
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    for (;;) {
      const page = await this.#call(`list ${prefix}`, (c) =>
        c.send(
          new ListObjectsV2Command({
            Bucket: this.#target.bucket,
            Prefix: this.#root + prefix,
            MaxKeys: 1000,
            ...(token && { ContinuationToken: token }),
          }),
        ),
      );
      for (const o of page.Contents ?? [])
        if (o.Key) yield { key: o.Key.slice(this.#root.length), size: o.Size ?? 0 };
      if (!page.IsTruncated || !page.NextContinuationToken) return;
      token = page.NextContinuationToken;
    }
  }

  async close(): Promise<void> {
    this.#client?.destroy();
    this.#client = undefined;
  }

  /** One request under the concurrency bound; SDK failures become BackupTargetError. */
  #call<T>(what: string, run: (client: S3Client) => Promise<T>): Promise<T> {
    return this.#limit(async () => {
      try {
        return await run(this.#s3());
      } catch (e) {
        if (e instanceof PreconditionFailedError || e instanceof BackupTargetError) throw e;
        throw targetError(this.name, what, e);
      }
    });
  }
}

/** A clear message for an SDK error: credentials, bucket, reachability; never a secret. */
function targetError(target: string, what: string, e: unknown): BackupTargetError {
  const status = statusOf(e) ?? 0;
  const err = e as { name?: string; code?: string; message?: string } | null;
  const code = err?.name ?? err?.code ?? "Error";
  const detail =
    err?.message && err.message !== code && err.message !== "UnknownError" ? `: ${err.message}` : "";
  if (CREDENTIAL_CODES.has(code) || status === 403)
    return new BackupTargetError(
      target,
      `Backup target ${target} refused the credentials (${status} ${code}${detail}) while trying to ${what}: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or AWS_PROFILE where the blockmend backup command runs`,
      status,
      true,
      { cause: e },
    );
  if (code === "NoSuchBucket")
    return new BackupTargetError(
      target,
      `Backup target ${target}: the bucket does not exist (create it first)`,
      status,
      false,
      {
        cause: e,
      },
    );
  if (status === 0)
    return new BackupTargetError(
      target,
      `Cannot reach backup target ${target} to ${what}: ${err?.code ?? code}${detail}`,
      0,
      false,
      {
        cause: e,
      },
    );
  return new BackupTargetError(
    target,
    `Backup target ${target} answered ${status} ${code}${detail} to ${what}`,
    status,
    false,
    {
      cause: e,
    },
  );
}

function statusOf(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

function nameOf(e: unknown): string | undefined {
  return (e as { name?: string } | null)?.name;
}
