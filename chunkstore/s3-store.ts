/**
 * `s3:` backend: chunks as plain objects in any S3-compatible bucket (AWS S3, Ceph RGW,
 * MinIO), through @aws-sdk/client-s3.
 *
 * Layout: one object per chunk at `<prefix>/chunks/<first 2 hex of hash>/<hash>`, body =
 * the chunk bytes, nothing else. The fan-out directory is the hash's own first two
 * characters, so keys sort in hash order and `list()` is a paged ListObjectsV2 with
 * StartAfter. Any S3 client can read the objects; nothing here depends on metadata.
 *
 * Writes are `PutObject` with `If-None-Match: *`: 412 means the chunk was already there.
 * A server that answers the header with 501 NotImplemented gets HeadObject-then-PutObject
 * instead, remembered per store; there `existed` is best effort under concurrent puts of
 * one chunk (both may report false), which is harmless for immutable, content-addressed
 * objects.
 *
 * Refs are not kept in buckets (capabilities.refs = false): heads live on file, http and
 * witness stores.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import pLimit, { type LimitFunction } from "p-limit";
import type {
  CasResult,
  ChunkPut,
  ChunkStore,
  Hash,
  ListOptions,
  RefEntry,
  RefPage,
  StoreProbe,
  StoreStats,
  SweepResult,
} from "./chunk-store.ts";
import {
  ChunkCorruptError,
  ChunkNotFoundError,
  StoreUnavailableError,
  UnsupportedOperationError,
} from "./errors.ts";
import { assertHash, isHash } from "./hash.ts";
import { IdentityExpectation, isIdentity, newIdentity } from "./identity.ts";
import { MAX_CHUNK_BYTES } from "./limits.ts";
import { verifyPut, verifyPutMany, verifyRead } from "./verify.ts";

/** Requests in flight per store: below the SDK agent's 50 sockets per host, so excess work queues here, not in the agent. */
export const MAX_IN_FLIGHT = 32;

/** Default TCP connect timeout: an endpoint that cannot accept a connection in 5 s is down for a running VM. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/** Default whole-request timeout: one 4 MiB chunk over a link as slow as ~1 Mbit/s, with some slack. */
export const DEFAULT_TIMEOUT_MS = 60_000;

/** Default SDK attempts per request: throttling, 5xx and network errors are retried twice with backoff. */
export const DEFAULT_MAX_ATTEMPTS = 3;

/** Keys per ListObjectsV2 page: the S3 maximum. */
const LIST_PAGE_KEYS = 1000;

/** Retries of a conditional put that AWS answers 409 ConditionalRequestConflict (another put of the key in flight). */
const MAX_CONFLICT_RETRIES = 5;

/** Bucket names S3-compatible servers accept (AWS rules plus legacy upper case and underscores). */
const BUCKET_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/;

/** Static credentials; without them the SDK's default chain is used (AWS_ACCESS_KEY_ID etc. first). */
export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

/** Options for {@link S3Store}. URL query parameters, where given, take precedence. */
export interface S3StoreOptions {
  /** S3 endpoint for non-AWS servers, e.g. `http://127.0.0.1:7480`. Implies path-style addressing. */
  readonly endpoint?: string;
  /** Region; default `AWS_REGION`, then `AWS_DEFAULT_REGION`, then `us-east-1`. */
  readonly region?: string;
  /** Static credentials; default: the SDK chain (the AWS_* environment variables first). */
  readonly credentials?: S3Credentials;
  /** Path-style URLs (`endpoint/bucket/key`); default true when an endpoint is given. */
  readonly forcePathStyle?: boolean;
  /** SDK attempts per request (1 = no retries); default {@link DEFAULT_MAX_ATTEMPTS}. */
  readonly maxAttempts?: number;
  /** TCP connect timeout in milliseconds; default {@link DEFAULT_CONNECT_TIMEOUT_MS}. */
  readonly connectTimeoutMs?: number;
  /** Whole-request timeout in milliseconds; default {@link DEFAULT_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  /** Requests in flight for this store; default {@link MAX_IN_FLIGHT}. */
  readonly concurrency?: number;
  /** Merged last into the S3Client configuration (custom agents or request handler, tests). */
  readonly clientConfig?: S3ClientConfig;
}

/**
 * A chunk store in an S3 bucket under a key prefix. The S3 client is created on first
 * use. `stats()` lists every object (O(n) in chunks, one request per 1000).
 *
 * @example
 * ```ts
 * const store = S3Store.fromUrl("s3://vm-chunks/site-a?endpoint=http://127.0.0.1:7480");
 * await store.put(hash, bytes);
 * ```
 */
export class S3Store implements ChunkStore {
  readonly capabilities = { chunks: true, refs: false, persistent: true, sweep: false } as const;
  /** `s3://bucket/prefix`: used in every error message. */
  readonly name: string;
  /** Bucket name; the bucket must exist. */
  readonly bucket: string;
  /** Key prefix without leading or trailing slash; empty for the bucket root. */
  readonly prefix: string;
  readonly #root: string;
  readonly #options: S3StoreOptions;
  readonly #limit: LimitFunction;
  #client: S3Client | undefined;
  #closed = false;
  readonly #expected = new IdentityExpectation();
  /** False once the server answered `If-None-Match` with 501: then Head-then-Put. */
  #conditionalPut = true;

  /**
   * @param bucket bucket name (must exist)
   * @param prefix key prefix; leading, trailing and doubled slashes are dropped
   */
  constructor(bucket: string, prefix = "", options: S3StoreOptions = {}) {
    if (!BUCKET_PATTERN.test(bucket)) throw new TypeError(`Invalid S3 bucket name "${bucket}"`);
    const parts = prefix.split("/").filter((p) => p !== "");
    if (parts.some((p) => p === "." || p === "..")) {
      throw new TypeError(`Invalid S3 key prefix "${prefix}": "." and ".." segments are not allowed`);
    }
    if (options.endpoint !== undefined) assertEndpoint(options.endpoint);
    const concurrency = options.concurrency ?? MAX_IN_FLIGHT;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(`S3 store concurrency must be a positive integer, got ${concurrency}`);
    }
    this.bucket = bucket;
    this.prefix = parts.join("/");
    this.name = `s3://${bucket}${this.prefix ? `/${this.prefix}` : ""}`;
    this.#root = this.prefix ? `${this.prefix}/chunks/` : "chunks/";
    this.#options = options;
    this.#limit = pLimit(concurrency);
  }

  /**
   * Opens `s3://bucket/prefix?endpoint=URL&region=NAME`. Credentials never go in the URL
   * (it appears in logs): pass them in `options` or the AWS_* environment variables.
   * Throws a TypeError for a malformed URL or an unknown query parameter.
   */
  static fromUrl(url: string, options: S3StoreOptions = {}): S3Store {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new TypeError(`Invalid S3 store URL "${url}": use s3://BUCKET/PREFIX?endpoint=URL&region=NAME`);
    }
    if (u.protocol !== "s3:") throw new TypeError(`Invalid S3 store URL "${url}": the scheme must be s3:`);
    if (u.username || u.password || u.port) {
      throw new TypeError(
        `Invalid S3 store URL "${url}": no credentials or port; put the server in ?endpoint=`,
      );
    }
    for (const key of u.searchParams.keys()) {
      if (key !== "endpoint" && key !== "region") {
        throw new TypeError(
          `Invalid S3 store URL "${url}": unknown parameter "${key}" (known: endpoint, region)`,
        );
      }
    }
    const endpoint = u.searchParams.get("endpoint") ?? options.endpoint;
    const region = u.searchParams.get("region") ?? options.region;
    return new S3Store(decodeURIComponent(u.hostname), decodeURIComponent(u.pathname), {
      ...options,
      ...(endpoint !== undefined && { endpoint }),
      ...(region !== undefined && { region }),
    });
  }

  /** The identity lives in the object `PREFIX/identity`, created (conditionally) on first probe. */
  async probe(): Promise<StoreProbe> {
    let identity = await this.#readIdentity();
    if (identity === null) {
      const fresh = newIdentity();
      const body = JSON.stringify({ identity: fresh, createdAt: new Date().toISOString() });
      identity = await this.#call("create the store identity", async (c) => {
        try {
          await c.send(
            new PutObjectCommand({
              Bucket: this.bucket,
              Key: this.#identityKey(),
              Body: body,
              ContentType: "application/json",
              IfNoneMatch: "*",
            }),
          );
          return fresh;
        } catch (e) {
          if (statusOf(e) === 412 || statusOf(e) === 409) return null; // another writer made one first
          throw e;
        }
      });
      identity ??= await this.#readIdentity();
      if (identity === null)
        throw new StoreUnavailableError(this.name, "the identity object vanished while it was made");
    }
    return { identity, capabilities: this.capabilities };
  }

  /**
   * Buckets cannot refuse a request by identity, so the expectation is checked after each
   * write and existence check instead: a wiped or re-created bucket fails them.
   */
  expectIdentity(identity: string | null): void {
    this.#expected.set(identity);
  }

  async #checkIdentity(): Promise<void> {
    if (this.#expected.expected === null) return;
    this.#expected.check(this.name, await this.#readIdentity());
  }

  async #readIdentity(): Promise<string | null> {
    const text = await this.#call("read the store identity", async (c) => {
      try {
        const out = await c.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#identityKey() }));
        return out.Body ? await out.Body.transformToString() : "";
      } catch (e) {
        if (statusOf(e) === 404 && nameOf(e) !== "NoSuchBucket") return null;
        throw e;
      }
    });
    if (text === null) return null;
    try {
      const parsed = JSON.parse(text) as { identity?: unknown };
      if (isIdentity(parsed.identity)) return parsed.identity;
    } catch {}
    throw new StoreUnavailableError(this.name, `${this.#identityKey()} holds no valid identity`);
  }

  #identityKey(): string {
    return this.prefix ? `${this.prefix}/identity` : "identity";
  }

  async scanRefs(_prefix: string): Promise<RefPage> {
    throw this.#noRefs("scanRefs");
  }

  /** Buckets have no atomic "delete unless written since": garbage collection never sweeps them. */
  async condemn(_hashes: readonly Hash[], _token: string): Promise<number> {
    throw new UnsupportedOperationError(this.name, "garbage collection (buckets are never swept)");
  }

  async sweep(_hashes: readonly Hash[], _token: string): Promise<SweepResult> {
    throw new UnsupportedOperationError(this.name, "garbage collection (buckets are never swept)");
  }

  async has(hashes: readonly Hash[]): Promise<boolean[]> {
    for (const h of hashes) assertHash(h);
    const out = await Promise.all(
      hashes.map((h) => this.#call(`check chunk "${h}"`, (c) => this.#exists(c, h))),
    );
    await this.#checkIdentity();
    return out;
  }

  async get(hash: Hash): Promise<Uint8Array> {
    assertHash(hash);
    const bytes = await this.#read(hash);
    if (!bytes) throw new ChunkNotFoundError(this.name, hash);
    return bytes;
  }

  async getMany(hashes: readonly Hash[]): Promise<(Uint8Array | undefined)[]> {
    for (const h of hashes) assertHash(h);
    return Promise.all(hashes.map((h) => this.#read(h)));
  }

  async put(hash: Hash, bytes: Uint8Array): Promise<{ existed: boolean }> {
    verifyPut(this.name, hash, bytes);
    const out = await this.#write(hash, bytes);
    await this.#checkIdentity();
    return out;
  }

  async putMany(chunks: readonly ChunkPut[]): Promise<{ existed: boolean }[]> {
    verifyPutMany(this.name, chunks);
    const out = await Promise.all(chunks.map((c) => this.#write(c.hash, c.bytes)));
    await this.#checkIdentity();
    return out;
  }

  async delete(hash: Hash): Promise<boolean> {
    assertHash(hash);
    return this.#call(`delete chunk "${hash}"`, async (c) => {
      if (!(await this.#exists(c, hash))) return false;
      await c.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.#key(hash) }));
      return true;
    });
  }

  async *list(options: ListOptions = {}): AsyncIterable<Hash> {
    if (options.after !== undefined) assertHash(options.after);
    for await (const o of this.#objects(options.after)) yield o.hash;
  }

  /** Counts by listing every chunk object: O(n) in chunks (one request per 1000). */
  async stats(): Promise<StoreStats> {
    let chunks = 0;
    let bytes = 0;
    for await (const o of this.#objects()) {
      chunks++;
      bytes += o.size;
    }
    return { chunks, bytes, freeBytes: null };
  }

  async getRef(_name: string): Promise<RefEntry | null> {
    throw this.#noRefs("getRef");
  }

  async casRef(_name: string, _expected: string | null, _value: string): Promise<CasResult> {
    throw this.#noRefs("casRef");
  }

  async deleteRef(_name: string, _expected: string): Promise<CasResult> {
    throw this.#noRefs("deleteRef");
  }

  async listRefs(_prefix?: string): Promise<string[]> {
    throw this.#noRefs("listRefs");
  }

  async close(): Promise<void> {
    // Queued operations still run and fail with StoreUnavailableError ("closed").
    this.#closed = true;
    this.#client?.destroy();
    this.#client = undefined;
  }

  #key(hash: Hash): string {
    return `${this.#root}${hash.slice(0, 2)}/${hash}`;
  }

  /** The hash a key holds, or undefined for a key outside the layout (left alone). */
  #hashOf(key: string | undefined): Hash | undefined {
    if (key === undefined || key.length !== this.#root.length + 67 || !key.startsWith(this.#root))
      return undefined;
    const hash = key.slice(this.#root.length + 3);
    const fan = key.slice(this.#root.length, this.#root.length + 3);
    return isHash(hash) && fan === `${hash.slice(0, 2)}/` ? hash : undefined;
  }

  #s3(): S3Client {
    if (this.#closed) throw new StoreUnavailableError(this.name, "the store was closed");
    this.#client ??= this.#createClient();
    return this.#client;
  }

  #createClient(): S3Client {
    const o = this.#options;
    const env = globalThis.process?.env ?? {};
    return new S3Client({
      region: o.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? "us-east-1",
      ...(o.endpoint !== undefined && { endpoint: o.endpoint }),
      forcePathStyle: o.forcePathStyle ?? o.endpoint !== undefined,
      ...(o.credentials && { credentials: o.credentials }),
      maxAttempts: o.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      requestHandler: {
        connectionTimeout: o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
        requestTimeout: o.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        throwOnRequestTimeout: true,
      },
      // CRC32 headers only where the API requires them: S3-compatible servers differ in
      // support for them, and every read is BLAKE3-verified anyway.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      ...o.clientConfig,
    });
  }

  /**
   * Runs one S3 operation under the store's concurrency bound. Anything it throws other
   * than our own chunk errors becomes a StoreUnavailableError naming the store, with the
   * SDK error as its cause (network, timeout, 5xx after retries, 403, missing bucket).
   */
  #call<T>(what: string, run: (client: S3Client) => Promise<T>): Promise<T> {
    return this.#limit(async () => {
      try {
        return await run(this.#s3());
      } catch (e) {
        if (e instanceof ChunkCorruptError || e instanceof StoreUnavailableError) throw e;
        throw new StoreUnavailableError(this.name, `cannot ${what}: ${describe(e)}`, { cause: e });
      }
    });
  }

  async #exists(client: S3Client, hash: Hash): Promise<boolean> {
    try {
      await client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.#key(hash) }));
      return true;
    } catch (e) {
      // HEAD has no body, so a missing bucket also reads as 404 here; the next put or
      // get reports it (NoSuchBucket) as the store being unavailable.
      if (statusOf(e) === 404) return false;
      throw e;
    }
  }

  /** Reads and verifies a chunk; undefined when absent. */
  async #read(hash: Hash): Promise<Uint8Array | undefined> {
    const bytes = await this.#call(`read chunk "${hash}"`, async (c) => {
      let out: GetObjectCommandOutput;
      try {
        out = await c.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#key(hash) }));
      } catch (e) {
        if (statusOf(e) === 404 && nameOf(e) !== "NoSuchBucket") return undefined;
        throw e;
      }
      if ((out.ContentLength ?? 0) > MAX_CHUNK_BYTES) {
        await out.Body?.transformToWebStream().cancel();
        throw new ChunkCorruptError(
          this.name,
          hash,
          `object is ${out.ContentLength} bytes, over the chunk limit`,
        );
      }
      return out.Body ? await out.Body.transformToByteArray() : new Uint8Array(0);
    });
    return bytes && verifyRead(this.name, hash, bytes);
  }

  /** Stores verified bytes; see the module doc for the conditional-write protocol. */
  #write(hash: Hash, bytes: Uint8Array): Promise<{ existed: boolean }> {
    return this.#call(`store chunk "${hash}"`, async (c) => {
      const input = {
        Bucket: this.bucket,
        Key: this.#key(hash),
        Body: bytes,
        ContentLength: bytes.byteLength,
      };
      for (let attempt = 0; this.#conditionalPut; attempt++) {
        try {
          await c.send(new PutObjectCommand({ ...input, IfNoneMatch: "*" }));
          return { existed: false };
        } catch (e) {
          const status = statusOf(e);
          if (status === 412) return { existed: true };
          if (status === 409 && attempt < MAX_CONFLICT_RETRIES) {
            await sleep(20 * 2 ** attempt);
            continue;
          }
          if (status !== 501 && nameOf(e) !== "NotImplemented") throw e;
          this.#conditionalPut = false;
        }
      }
      if (await this.#exists(c, hash)) return { existed: true };
      await c.send(new PutObjectCommand(input));
      return { existed: false };
    });
  }

  /** Chunk objects in key (= hash) order, strictly after `after`, page by page. */
  async *#objects(after?: Hash): AsyncGenerator<{ hash: Hash; size: number }> {
    let startAfter = after === undefined ? undefined : this.#key(after);
    let token: string | undefined;
    for (;;) {
      const page = await this.#call("list chunks", (c) =>
        c.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.#root,
            MaxKeys: LIST_PAGE_KEYS,
            ...(token ? { ContinuationToken: token } : startAfter ? { StartAfter: startAfter } : {}),
          }),
        ),
      );
      const contents = page.Contents ?? [];
      for (const o of contents) {
        const hash = this.#hashOf(o.Key);
        if (hash) yield { hash, size: o.Size ?? 0 };
      }
      if (!page.IsTruncated) return;
      // Some servers omit the token on truncated pages: resume after the last key instead.
      token = page.NextContinuationToken;
      const last = contents.at(-1)?.Key;
      if (!token && !last) return;
      startAfter = last;
    }
  }

  #noRefs(method: string): UnsupportedOperationError {
    return new UnsupportedOperationError(
      this.name,
      `refs (${method}): heads live on file, http and witness stores`,
    );
  }
}

function assertEndpoint(endpoint: string): void {
  let ok = false;
  try {
    const u = new URL(endpoint);
    ok = u.protocol === "http:" || u.protocol === "https:";
  } catch {}
  if (!ok) throw new TypeError(`Invalid S3 endpoint "${endpoint}": expected an http:// or https:// URL`);
}

/** HTTP status of an SDK service error; undefined for network errors and timeouts. */
function statusOf(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

function nameOf(e: unknown): string | undefined {
  return (e as { name?: string } | null)?.name;
}

/** Short description of an SDK or network error for a message: status and code, or the socket error. */
function describe(e: unknown): string {
  const status = statusOf(e);
  const err = e as { name?: string; code?: string; message?: string } | null;
  const message =
    err?.message && err.message !== err.name && err.message !== "UnknownError" ? err.message : "";
  if (status !== undefined)
    return `S3 answered ${status} ${err?.name ?? ""}${message ? `: ${message}` : ""}`.trim();
  return [err?.code ?? err?.name, message].filter(Boolean).join(": ") || String(e);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
