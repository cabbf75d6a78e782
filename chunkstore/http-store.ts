/**
 * `http(s):` backend: a remote chunk store server (`server.ts`) reached over
 * keep-alive fetch. Batched has/get/put use the batch routes and split large inputs
 * within MAX_BATCH_HASHES and MAX_BATCH_BYTES. Every chunk is verified here too:
 * puts before they are sent, reads after they arrive; the network is not trusted.
 *
 * Errors name the store URL: StoreUnavailableError for network failures, timeouts
 * and 5xx answers; UnauthorizedError on 401; the domain errors the server reports
 * (not found, mismatch, corrupt, full, unsupported) as their own classes.
 */

import { type Fetch, fetchErrorDetail, fetchTrusting, isTlsError } from "../runtime/tls-fetch.ts";
import { BATCH_FRAME, decodeBatch, encodeBatch, RECORD_STATUS } from "./_batch-frame.ts";
import {
  ERROR_CODE,
  EXPECT_IDENTITY_HEADER,
  encodeRefGuard,
  etagOf,
  LIST_MAX_LIMIT,
  REF_GUARD_HEADER,
  versionOfEtag,
} from "./_http-wire.ts";
import type {
  CasResult,
  ChunkPut,
  ChunkStore,
  Hash,
  ListOptions,
  NamedRef,
  RefEntry,
  RefGuard,
  RefPage,
  StoreCapabilities,
  StoreProbe,
  StoreStats,
  SweepResult,
} from "./chunk-store.ts";
import { assertToken } from "./condemned.ts";
import {
  ChunkCorruptError,
  ChunkNotFoundError,
  HashMismatchError,
  StoreFullError,
  StoreIdentityError,
  StoreUnavailableError,
  UnauthorizedError,
  UnsupportedOperationError,
} from "./errors.ts";
import { assertHash, isHash } from "./hash.ts";
import { IdentityExpectation, isIdentity } from "./identity.ts";
import { MAX_BATCH_HASHES } from "./limits.ts";
import { assertRefName } from "./ref-name.ts";
import { assertGuard, assertRefWrite } from "./ref-table.ts";
import { verifyPut, verifyPutMany, verifyRead } from "./verify.ts";

/** Options of {@link HttpStore}. */
export interface HttpStoreOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  readonly token?: string;
  /**
   * CA certificate(s), PEM, that an `https://` server's certificate must chain to (instead
   * of the system's CAs). A certificate that does not verify is always refused.
   */
  readonly ca?: string;
  /** Per-request timeout in milliseconds, covering the body transfer. Default 10 000. */
  readonly timeoutMs?: number;
  /** Name in errors and logs; default the base URL. */
  readonly name?: string;
  /** What the server's store can do until {@link HttpStore.probe} asks; default chunks and refs. */
  readonly capabilities?: StoreCapabilities;
}

/** Default per-request timeout: a full 64 MiB batch takes ~0.6 s at 1 Gbit/s. */
const DEFAULT_TIMEOUT_MS = 10_000;

/** Batches in flight per has/getMany/putMany call: overlaps network and server work, bounds memory to 4 batches. */
const BATCH_CONCURRENCY = 4;

/**
 * Hashes per batch-get request: 256 x 64 KiB = 16 MiB answers, so the server reads and
 * verifies one batch while the client verifies the previous one (measured faster than
 * full MAX_BATCH_HASHES answers, which leave one side idle).
 */
const GET_BATCH_HASHES = 256;

/** Bytes per batch-put request, for the same overlap; the server's limit is MAX_BATCH_BYTES. */
const PUT_BATCH_BYTES = 16 * 1024 * 1024;

/** What a request is for, to build errors that say so. */
interface Op {
  readonly what: string;
  readonly hash?: Hash;
}

/**
 * A remote chunk store. The constructor makes no request (a gateway starts while a store
 * is down); {@link HttpStore.probe} learns the store's identity and capabilities, and
 * {@link HttpStore.open} probes once before returning.
 */
export class HttpStore implements ChunkStore {
  readonly name: string;
  #capabilities: StoreCapabilities;
  readonly #expected = new IdentityExpectation();
  /** Base URL without a trailing slash, for example `http://10.0.0.5:7070`. */
  readonly url: string;
  readonly #authorization: string | undefined;
  readonly #timeoutMs: number;
  readonly #fetch: Fetch;
  #closed = false;

  constructor(url: string | URL, options: HttpStoreOptions = {}) {
    const parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new TypeError(`Chunk store URL "${String(url)}" must start with http:// or https://`);
    }
    if (parsed.search || parsed.hash)
      throw new TypeError(`Chunk store URL "${String(url)}" must not have a query or fragment`);
    this.url = parsed.href.replace(/\/+$/, "");
    this.name = options.name ?? this.url;
    this.#capabilities = options.capabilities ?? { chunks: true, refs: true, persistent: true };
    this.#authorization = options.token === undefined ? undefined : `Bearer ${options.token}`;
    if (options.ca !== undefined && parsed.protocol !== "https:")
      throw new TypeError(`Chunk store URL "${String(url)}" has a CA but is not https://`);
    this.#fetch = fetchTrusting(options.ca);
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(timeoutMs > 0)) throw new RangeError(`Chunk store timeout must be positive; got ${timeoutMs}`);
    this.#timeoutMs = timeoutMs;
  }

  /** What the server's store can do, as its last health answer said (until then, the constructor's). */
  get capabilities(): StoreCapabilities {
    return this.#capabilities;
  }

  /**
   * Connects: asks `/v1/health` once (checking the token) and takes the store's
   * identity and capabilities from it (a witness reports `chunks: false`).
   *
   * @example
   * const store = await HttpStore.open("http://10.0.0.5:7070", { token });
   */
  static async open(url: string | URL, options: HttpStoreOptions = {}): Promise<HttpStore> {
    const store = new HttpStore(url, options);
    await store.probe();
    return store;
  }

  async probe(): Promise<StoreProbe> {
    const op = { what: "a health check" };
    const res = await this.#request("GET", "/v1/health", op, { anyIdentity: true });
    const health = (await this.#json(res, op)) as {
      ok?: unknown;
      identity?: unknown;
      capabilities?: unknown;
    };
    const caps = health.capabilities as Partial<StoreCapabilities> | undefined;
    if (
      health.ok !== true ||
      !isIdentity(health.identity) ||
      typeof caps?.chunks !== "boolean" ||
      typeof caps.refs !== "boolean"
    ) {
      throw new StoreUnavailableError(
        this.name,
        `${this.url}/v1/health did not answer as a blockmend chunk store`,
      );
    }
    this.#capabilities = {
      chunks: caps.chunks,
      refs: caps.refs,
      persistent: caps.persistent !== false,
      sweep: caps.sweep === true,
      refGuards: caps.refGuards === true,
    };
    return { identity: health.identity, capabilities: this.#capabilities };
  }

  expectIdentity(identity: string | null): void {
    this.#expected.set(identity);
  }

  // ---- chunks ----

  async has(hashes: readonly Hash[]): Promise<boolean[]> {
    for (const h of hashes) assertHash(h);
    const out: boolean[] = new Array(hashes.length);
    const op = { what: "a has check" };
    await inBatches(countBatches(hashes.length, MAX_BATCH_HASHES), async ([start, end]) => {
      const res = await this.#request("POST", "/v1/chunks/has", op, {
        json: { hashes: hashes.slice(start, end) },
      });
      const present = ((await this.#json(res, op)) as { present?: unknown }).present;
      if (
        !Array.isArray(present) ||
        present.length !== end - start ||
        present.some((p) => typeof p !== "boolean")
      ) {
        throw this.#protocolError(op, "answered a has check with a malformed body");
      }
      for (let i = start; i < end; i++) out[i] = present[i - start] as boolean;
    });
    return out;
  }

  async get(hash: Hash): Promise<Uint8Array> {
    assertHash(hash);
    const op = { what: "a chunk read", hash };
    const res = await this.#request("GET", `/v1/chunks/${hash}`, op);
    return verifyRead(this.name, hash, await this.#bytes(res, op));
  }

  /** Batched read. The returned chunks may be views into one response buffer. */
  async getMany(hashes: readonly Hash[]): Promise<(Uint8Array | undefined)[]> {
    for (const h of hashes) assertHash(h);
    const out: (Uint8Array | undefined)[] = new Array(hashes.length);
    const op = { what: "a batch read" };
    await inBatches(countBatches(hashes.length, GET_BATCH_HASHES), async ([start, end]) => {
      // Indices still to fetch; the server omits what would overflow one response.
      let pending = Array.from({ length: end - start }, (_, i) => start + i);
      while (pending.length > 0) {
        const wanted = pending.map((i) => hashes[i]!);
        const res = await this.#request("POST", "/v1/chunks/batch-get", op, { json: { hashes: wanted } });
        const frame = await this.#bytes(res, op);
        let records: ReturnType<typeof decodeBatch>;
        try {
          records = decodeBatch(frame);
        } catch (e) {
          throw this.#protocolError(op, `sent a malformed batch frame (${(e as Error).message})`, e);
        }
        if (records.length !== pending.length) {
          throw this.#protocolError(op, `answered ${records.length} records for ${pending.length} hashes`);
        }
        const next: number[] = [];
        for (let k = 0; k < records.length; k++) {
          const r = records[k]!;
          const i = pending[k]!;
          const hash = hashes[i]!;
          if (r.hash !== hash)
            throw this.#protocolError(op, `answered chunk "${r.hash}" where "${hash}" was asked`);
          if (r.status === RECORD_STATUS.PRESENT) out[i] = verifyRead(this.name, hash, r.bytes);
          else if (r.status === RECORD_STATUS.ABSENT) out[i] = undefined;
          else if (r.status === RECORD_STATUS.CORRUPT) {
            throw new ChunkCorruptError(this.name, hash, "the server's stored copy failed verification");
          } else next.push(i);
        }
        if (next.length === pending.length)
          throw this.#protocolError(op, "omitted every chunk of a batch read");
        pending = next;
      }
    });
    return out;
  }

  async put(hash: Hash, bytes: Uint8Array): Promise<{ existed: boolean }> {
    verifyPut(this.name, hash, bytes);
    const op = { what: "a chunk write", hash };
    const res = await this.#request("PUT", `/v1/chunks/${hash}`, op, {
      body: bytes,
      contentType: "application/octet-stream",
    });
    await res.body?.cancel();
    return { existed: res.status === 200 };
  }

  /** Batched put: the whole input is verified before any batch is sent. */
  async putMany(chunks: readonly ChunkPut[]): Promise<{ existed: boolean }[]> {
    verifyPutMany(this.name, chunks);
    const out: { existed: boolean }[] = new Array(chunks.length);
    const op = { what: "a batch write" };
    await inBatches(sizeBatches(chunks), async ([start, end]) => {
      const body = encodeBatch(chunks.slice(start, end));
      const res = await this.#request("POST", "/v1/chunks/batch-put", op, {
        body,
        contentType: "application/octet-stream",
      });
      const existed = ((await this.#json(res, op)) as { existed?: unknown }).existed;
      if (!Array.isArray(existed) || existed.length !== end - start) {
        throw this.#protocolError(op, "answered a batch write with a malformed body");
      }
      for (let i = start; i < end; i++) out[i] = { existed: existed[i - start] === true };
    });
    return out;
  }

  async condemn(hashes: readonly Hash[], token: string): Promise<number> {
    for (const h of hashes) assertHash(h);
    assertToken(token);
    const op = { what: "condemning chunks" };
    let total = 0;
    await inBatches(countBatches(hashes.length, MAX_BATCH_HASHES), async ([start, end]) => {
      const res = await this.#request("POST", "/v1/chunks/condemn", op, {
        json: { hashes: hashes.slice(start, end), token },
      });
      const n = ((await this.#json(res, op)) as { condemned?: unknown }).condemned;
      if (typeof n !== "number") throw this.#protocolError(op, "answered a condemn without a count");
      total += n;
    });
    return total;
  }

  async sweep(hashes: readonly Hash[], token: string): Promise<SweepResult> {
    for (const h of hashes) assertHash(h);
    assertToken(token);
    const op = { what: "sweeping chunks" };
    const out = { deleted: 0, bytes: 0 };
    await inBatches(countBatches(hashes.length, MAX_BATCH_HASHES), async ([start, end]) => {
      const res = await this.#request("POST", "/v1/chunks/sweep", op, {
        json: { hashes: hashes.slice(start, end), token },
      });
      const r = (await this.#json(res, op)) as Partial<SweepResult>;
      if (typeof r.deleted !== "number" || typeof r.bytes !== "number")
        throw this.#protocolError(op, "answered a sweep without counts");
      out.deleted += r.deleted;
      out.bytes += r.bytes;
    });
    return out;
  }

  async delete(hash: Hash): Promise<boolean> {
    assertHash(hash);
    const op = { what: "a chunk delete", hash };
    try {
      const res = await this.#request("DELETE", `/v1/chunks/${hash}`, op);
      await res.body?.cancel();
      return true;
    } catch (e) {
      // Only the store's own "no such chunk" means false; a 404 from elsewhere (a wrong URL) is an error.
      if (e instanceof ChunkNotFoundError) return false;
      throw e;
    }
  }

  async *list(options: ListOptions = {}): AsyncIterable<Hash> {
    let after = options.after;
    if (after !== undefined) assertHash(after);
    const op = { what: "a chunk listing" };
    for (;;) {
      const query = new URLSearchParams({ limit: String(LIST_MAX_LIMIT) });
      if (after !== undefined) query.set("after", after);
      const res = await this.#request("GET", `/v1/chunks?${query}`, op);
      const page = (await this.#json(res, op)) as { hashes?: unknown; next?: unknown };
      const hashes = page.hashes;
      if (!Array.isArray(hashes) || !hashes.every(isHash) || !(page.next === null || isHash(page.next))) {
        throw this.#protocolError(op, "answered a chunk listing with a malformed page");
      }
      yield* hashes;
      if (page.next === null) return;
      after = page.next;
    }
  }

  async stats(): Promise<StoreStats> {
    const op = { what: "a stats query" };
    const res = await this.#request("GET", "/v1/stats", op);
    const s = (await this.#json(res, op)) as Partial<StoreStats>;
    if (
      typeof s.chunks !== "number" ||
      typeof s.bytes !== "number" ||
      (s.freeBytes !== null && typeof s.freeBytes !== "number")
    ) {
      throw this.#protocolError(op, "answered a stats query with a malformed body");
    }
    return {
      chunks: s.chunks,
      bytes: s.bytes,
      freeBytes: s.freeBytes,
      ...(typeof s.reclaimableBytes === "number" ? { reclaimableBytes: s.reclaimableBytes } : {}),
      ...(typeof s.full === "boolean" ? { full: s.full } : {}),
    };
  }

  // ---- refs ----

  async getRef(name: string): Promise<RefEntry | null> {
    assertRefName(name);
    const op = { what: `a read of ref "${name}"` };
    const res = await this.#request("GET", `/v1/refs/${encodeURIComponent(name)}`, op, { accept: [404] });
    if (res.status === 404) {
      const code = ((await this.#json(res, op)) as { error?: { code?: unknown } }).error?.code;
      if (code !== ERROR_CODE.REF_NOT_FOUND)
        throw this.#protocolError(op, `answered 404 with code ${String(code)}`);
      return null;
    }
    const version = versionOfEtag(res.headers.get("etag"));
    if (version === null) throw this.#protocolError(op, "answered a ref read without an ETag");
    return { value: await this.#text(res, op), version };
  }

  async casRef(name: string, expected: string | null, value: string, guard?: RefGuard): Promise<CasResult> {
    assertRefWrite(name, value);
    if (expected !== null && typeof expected !== "string") {
      throw new TypeError(`Ref "${name}" expected version must be a string or null`);
    }
    if (guard !== undefined) assertGuard(name, guard);
    const op = { what: `a write of ref "${name}"` };
    const headers: Record<string, string> =
      expected === null ? { "if-none-match": "*" } : { "if-match": etagOf(expected) };
    if (guard) headers[REF_GUARD_HEADER] = encodeRefGuard(guard);
    const res = await this.#request("PUT", `/v1/refs/${encodeURIComponent(name)}`, op, {
      body: value,
      contentType: "text/plain; charset=utf-8",
      headers,
      accept: [412],
      // A resend after an unseen success would report a false conflict.
      idempotent: false,
    });
    if (res.status === 412) return this.#conflict(res, op);
    await res.body?.cancel();
    const version = versionOfEtag(res.headers.get("etag"));
    if (version === null) throw this.#protocolError(op, "answered a ref write without an ETag");
    return { ok: true, version };
  }

  async deleteRef(name: string, expected: string): Promise<CasResult> {
    assertRefName(name);
    if (typeof expected !== "string") throw new TypeError(`Ref "${name}" expected version must be a string`);
    const op = { what: `a delete of ref "${name}"` };
    const res = await this.#request("DELETE", `/v1/refs/${encodeURIComponent(name)}`, op, {
      headers: { "if-match": etagOf(expected) },
      accept: [412],
      idempotent: false,
    });
    if (res.status === 412) return this.#conflict(res, op);
    await res.body?.cancel();
    return { ok: true, version: expected };
  }

  async scanRefs(prefix: string, options: { after?: string; limit?: number } = {}): Promise<RefPage> {
    const op = { what: `a scan of refs "${prefix}*"` };
    const query = new URLSearchParams({ prefix, values: "1" });
    if (options.after !== undefined) query.set("after", options.after);
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    const res = await this.#request("GET", `/v1/refs?${query}`, op);
    const page = (await this.#json(res, op)) as { refs?: unknown; next?: unknown };
    if (!Array.isArray(page.refs) || (page.next !== null && typeof page.next !== "string")) {
      throw this.#protocolError(op, "answered a ref scan without refs");
    }
    for (const r of page.refs as Partial<NamedRef>[]) {
      if (typeof r?.name !== "string" || typeof r.value !== "string" || typeof r.version !== "string")
        throw this.#protocolError(op, "answered a ref scan with a malformed ref");
    }
    return { refs: page.refs as NamedRef[], next: page.next as string | null };
  }

  async listRefs(prefix = ""): Promise<string[]> {
    if (typeof prefix !== "string") throw new TypeError("Ref prefix must be a string");
    const op = { what: "a ref listing" };
    const res = await this.#request("GET", `/v1/refs?${new URLSearchParams({ prefix })}`, op);
    const names = ((await this.#json(res, op)) as { names?: unknown }).names;
    if (!Array.isArray(names) || names.some((n) => typeof n !== "string")) {
      throw this.#protocolError(op, "answered a ref listing with a malformed body");
    }
    return names as string[];
  }

  /** Marks the store closed. Connections are pooled by the runtime's fetch and idle out on their own. */
  async close(): Promise<void> {
    this.#closed = true;
  }

  // ---- transport ----

  /**
   * One request with the token and a timeout. Resolves for 2xx and the `accept`ed
   * statuses; any other status becomes the matching error via {@link #errorOf}.
   */
  async #request(
    method: string,
    path: string,
    op: Op,
    init: {
      json?: unknown;
      body?: Uint8Array | string;
      contentType?: string;
      headers?: Record<string, string>;
      accept?: readonly number[];
      /** False for requests that must not be sent twice (ref compare-and-set). Default true. */
      idempotent?: boolean;
      /** Send no identity expectation (the health check that learns the identity). */
      anyIdentity?: boolean;
    } = {},
  ): Promise<Response> {
    if (this.#closed) throw new StoreUnavailableError(this.name, `${op.what} was attempted after close()`);
    const headers: Record<string, string> = { ...init.headers };
    if (this.#authorization) headers.authorization = this.#authorization;
    const expected = this.#expected.expected;
    if (expected !== null && !init.anyIdentity) headers[EXPECT_IDENTITY_HEADER] = expected;
    let body: BodyInit | undefined;
    if (init.json !== undefined) {
      body = JSON.stringify(init.json);
      headers["content-type"] = "application/json";
    } else if (init.body !== undefined) {
      body = init.body as BodyInit;
      if (init.contentType) headers["content-type"] = init.contentType;
    }
    const url = `${this.url}${path}`;
    let res: Response;
    for (let attempt = 1; ; attempt++) {
      try {
        res = await this.#fetch(url, { method, headers, body, signal: AbortSignal.timeout(this.#timeoutMs) });
        break;
      } catch (e) {
        // One immediate retry on a connection failure (not a timeout): a pooled keep-alive
        // connection to a server that restarted fails on first use, and a store coming back
        // must not look down again because of it. Chunk requests are idempotent.
        const retry =
          attempt === 1 &&
          init.idempotent !== false &&
          (e as Error)?.name !== "TimeoutError" &&
          !isTlsError(e);
        if (!retry) throw this.#unavailable(method, url, e);
      }
    }
    if (res.ok || init.accept?.includes(res.status)) return res;
    throw await this.#errorOf(method, url, res, op);
  }

  /** The one mapping from an HTTP error answer to a domain error (mirror of the server's). */
  async #errorOf(method: string, url: string, res: Response, op: Op): Promise<Error> {
    let code = "";
    let message = "";
    let detail: Record<string, unknown> = {};
    try {
      const text = await res.text();
      try {
        const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
        detail = (parsed.error ?? {}) as Record<string, unknown>;
        code = typeof parsed.error?.code === "string" ? parsed.error.code : "";
        message = typeof parsed.error?.message === "string" ? parsed.error.message : text.slice(0, 200);
      } catch {
        message = text.slice(0, 200);
      }
    } catch {
      // The body is lost (connection dropped); the status alone decides.
    }
    const said = `${method} ${url} answered ${res.status}${message ? `: ${message}` : ""}`;
    switch (res.status) {
      case 401:
        return new UnauthorizedError(this.name);
      case 409:
        if (code === ERROR_CODE.IDENTITY_MISMATCH) {
          const actual = typeof detail.identity === "string" ? detail.identity : null;
          return new StoreIdentityError(this.name, this.#expected.expected ?? "?", actual);
        }
        break;
      case 400:
        return code === ERROR_CODE.OUT_OF_RANGE
          ? new RangeError(`Store "${this.name}" refused ${op.what}: ${said}`)
          : new TypeError(`Store "${this.name}" refused ${op.what}: ${said}`);
      case 404:
        if (code === ERROR_CODE.CHUNK_NOT_FOUND && op.hash) return new ChunkNotFoundError(this.name, op.hash);
        break;
      case 405:
        if (code === ERROR_CODE.WITNESS_NO_CHUNKS || code === ERROR_CODE.UNSUPPORTED) {
          return new UnsupportedOperationError(this.name, `${op.what} (${said})`);
        }
        break;
      case 413:
        return new RangeError(`Store "${this.name}" refused ${op.what} as too large: ${said}`);
      case 422:
        if (code === ERROR_CODE.HASH_MISMATCH) {
          const hash = typeof detail.hash === "string" ? detail.hash : (op.hash ?? "?");
          const actual = typeof detail.actual === "string" ? detail.actual : "?";
          return new HashMismatchError(this.name, hash, actual);
        }
        break;
      case 507:
        return new StoreFullError(this.name, said);
      case 500:
        if (code === ERROR_CODE.CHUNK_CORRUPT) {
          const hash = typeof detail.hash === "string" ? detail.hash : (op.hash ?? "?");
          return new ChunkCorruptError(this.name, hash, `reported by the server: ${said}`);
        }
        break;
    }
    return new StoreUnavailableError(this.name, said);
  }

  #unavailable(method: string, url: string, e: unknown): StoreUnavailableError {
    const err = e as { name?: string; message?: string };
    const why =
      err?.name === "TimeoutError"
        ? `timed out after ${this.#timeoutMs} ms`
        : isTlsError(e)
          ? `failed: TLS with the store failed (${fetchErrorDetail(e)}): its certificate must be signed by the CA given with --store-ca and name the host of the URL, and the store must serve https`
          : `failed: ${fetchErrorDetail(e)}`;
    return new StoreUnavailableError(this.name, `${method} ${url} ${why}`, { cause: e });
  }

  #protocolError(op: Op, what: string, cause?: unknown): StoreUnavailableError {
    return new StoreUnavailableError(this.name, `${this.url} ${what} (during ${op.what})`, { cause });
  }

  async #bytes(res: Response, op: Op): Promise<Uint8Array> {
    try {
      return new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      throw this.#unavailable("reading", `${res.url || this.url} (${op.what})`, e);
    }
  }

  async #text(res: Response, op: Op): Promise<string> {
    try {
      return await res.text();
    } catch (e) {
      throw this.#unavailable("reading", `${res.url || this.url} (${op.what})`, e);
    }
  }

  async #json(res: Response, op: Op): Promise<unknown> {
    const text = await this.#text(res, op);
    try {
      return JSON.parse(text);
    } catch (e) {
      throw this.#protocolError(op, "answered with a body that is not JSON", e);
    }
  }

  async #conflict(res: Response, op: Op): Promise<CasResult> {
    const current = ((await this.#json(res, op)) as { current?: unknown }).current;
    if (current === null) return { ok: false, current: null };
    const c = current as Partial<RefEntry> | undefined;
    if (typeof c?.value !== "string" || typeof c.version !== "string") {
      throw this.#protocolError(op, "answered a ref conflict without the current ref");
    }
    return { ok: false, current: { value: c.value, version: c.version } };
  }
}

// ---------------------------------------------------------------------------
// Splitting large inputs into batches within the server's limits.

/** [start, end) index ranges of at most `size` (at most MAX_BATCH_HASHES). */
function countBatches(n: number, size: number): [number, number][] {
  const out: [number, number][] = [];
  for (let start = 0; start < n; start += size) out.push([start, Math.min(n, start + size)]);
  return out;
}

/** [start, end) ranges of at most MAX_BATCH_HASHES chunks whose frame fits PUT_BATCH_BYTES (a lone chunk always goes). */
function sizeBatches(chunks: readonly ChunkPut[]): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  let size: number = BATCH_FRAME.HEADER_BYTES;
  for (let i = 0; i < chunks.length; i++) {
    const add = BATCH_FRAME.RECORD_HEADER_BYTES + chunks[i]!.bytes.byteLength;
    if (i > start && (i - start === MAX_BATCH_HASHES || size + add > PUT_BATCH_BYTES)) {
      out.push([start, i]);
      start = i;
      size = BATCH_FRAME.HEADER_BYTES;
    }
    size += add;
  }
  if (start < chunks.length) out.push([start, chunks.length]);
  return out;
}

/** Runs `fn` over the batches, at most BATCH_CONCURRENCY at once; after a failure starts no more and rejects. */
async function inBatches(
  batches: readonly [number, number][],
  fn: (batch: [number, number]) => Promise<void>,
) {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < batches.length) {
      try {
        await fn(batches[next++]!);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(BATCH_CONCURRENCY, batches.length) }, worker));
}
