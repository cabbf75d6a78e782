/**
 * The chunk store server: a Hono app exposing any ChunkStore over HTTP, with optional
 * bearer-token auth and a witness mode (refs only). Serve its `fetch` with
 * `runtime/serve-http.ts` (HTTPS with `tls`); the client is `http-store.ts`.
 *
 * Access (`access/`): the Host and Origin rules first, then, with tokens, every request
 * needs `Authorization: Bearer <token>`. A token has a scope: `read` allows GET and HEAD
 * and the read batches (POST has, batch-get); `write` allows everything (chunk PUT and
 * DELETE, batch-put, ref writes). A read token writing gets 403 `forbidden_scope`.
 *
 * Routes (all under /v1; errors are `{"error":{"code","message"}}`, codes in `_http-wire.ts`):
 *
 *   GET    /v1/health                 {"ok":true,"api":1,"witness":bool,"identity":UUID,"capabilities":{...}}
 *   HEAD   /v1/chunks/{hash}          200 present, 404 absent
 *   GET    /v1/chunks/{hash}          200 application/octet-stream; 404; 500 chunk_corrupt
 *   PUT    /v1/chunks/{hash}          raw body; 201 stored, 200 already there; 422 mismatch
 *   DELETE /v1/chunks/{hash}          204 deleted, 404 absent (garbage collection only)
 *   POST   /v1/chunks/has             {"hashes":[...]} -> {"present":[bool,...]}
 *   POST   /v1/chunks/condemn         {"hashes":[...],"token":T} -> {"condemned":n} (garbage collection, step 1)
 *   POST   /v1/chunks/sweep           {"hashes":[...],"token":T} -> {"deleted":n,"bytes":n} (step 2: only those still condemned by pass T)
 *   POST   /v1/chunks/batch-put       batch frame (`_batch-frame.ts`) -> {"existed":[bool,...]}
 *   POST   /v1/chunks/batch-get       {"hashes":[...]} -> batch frame, one record per hash
 *   GET    /v1/chunks?after=&limit=   {"hashes":[...],"next":hash|null}, ascending
 *   GET    /v1/refs?prefix=           {"names":[...]}
 *   GET    /v1/refs?prefix=&values=1&after=&limit=   {"refs":[{name,value,version}...],"next":name|null}
 *   GET    /v1/refs/{name}            200 value (text/plain), ETag "<version>"; 404
 *   PUT    /v1/refs/{name}            value as body; If-Match "<v>" or If-None-Match *
 *                                    (else 428); optional guard header
 *                                    blockmend-ref-guard: <ref> "<v>"|absent, checked with it;
 *                                    201 created / 200 updated + ETag;
 *                                    412 {"error":{...},"current":{value,version}|null}
 *   DELETE /v1/refs/{name}            If-Match "<v>" required; 204; 412 as above
 *   GET    /v1/stats                  {"chunks":n,"bytes":n,"freeBytes":n|null,"reclaimableBytes"?:n,"full"?:bool}
 *
 * Every request may carry `x-blockmend-expect-identity: <identity>`: if the store's
 * identity is another, the server answers 409 `identity_mismatch` (with `identity`) and
 * does nothing, so a client never mistakes a wiped or replaced store for the one it knew.
 *
 * Batches hold at most MAX_BATCH_HASHES hashes and MAX_BATCH_BYTES bytes. A batch-put
 * is verified whole before any chunk is stored (the store's putMany guarantees it).
 * A batch-get answer stays within MAX_BATCH_BYTES: chunks past that are marked
 * `omitted` and the client asks for them again.
 */
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { AccessRefusedError } from "../access/access-errors.ts";
import { requireScopedToken } from "../access/bearer-scopes.ts";
import { bodyDeadline } from "../access/body-deadline.ts";
import { type GuardOptions, requestGuard } from "../access/request-guard.ts";
import type { ScopedToken } from "../access/token-file.ts";
import {
  type BatchRecordInput,
  decodeBatch,
  encodeBatch,
  frameBytes,
  RECORD_STATUS,
} from "./_batch-frame.ts";
import {
  decodeRefGuard,
  ERROR_CODE,
  type ErrorBody,
  type ErrorCode,
  EXPECT_IDENTITY_HEADER,
  etagOf,
  LIST_DEFAULT_LIMIT,
  LIST_MAX_LIMIT,
  MAX_JSON_BYTES,
  REF_GUARD_HEADER,
  versionOfEtag,
} from "./_http-wire.ts";
import type { CasResult, ChunkStore, Hash } from "./chunk-store.ts";
import { assertToken } from "./condemned.ts";
import {
  ChunkCorruptError,
  ChunkNotFoundError,
  HashMismatchError,
  StoreFullError,
  StoreUnavailableError,
  UnauthorizedError,
  UnsupportedOperationError,
} from "./errors.ts";
import { assertHash } from "./hash.ts";
import { MAX_BATCH_BYTES, MAX_BATCH_HASHES, MAX_CHUNK_BYTES, MAX_REF_BYTES } from "./limits.ts";
import { WitnessStore } from "./witness-store.ts";

/** Token scopes of the chunk store server, weakest first. */
export const STORE_SCOPES = ["read", "write"] as const;
export type StoreScope = (typeof STORE_SCOPES)[number];

/** POST routes that only read (a read token may call them). */
const READ_POSTS = new Set(["/v1/chunks/has", "/v1/chunks/batch-get"]);

/** The scope a request needs: `read` for GET, HEAD and the read batches, `write` for the rest. */
export function storeScopeOf(method: string, pathname: string): StoreScope {
  if (method === "GET" || method === "HEAD") return "read";
  return method === "POST" && READ_POSTS.has(pathname) ? "read" : "write";
}

/** Options of {@link createChunkStoreApp}. */
export interface ChunkStoreAppOptions {
  /** When set, every request needs `Authorization: Bearer <token>` (a `write` token). */
  readonly token?: string;
  /** Tokens with scopes (`--token-file` lines `TOKEN [read|write]`); with `token`, both are accepted. */
  readonly tokens?: readonly ScopedToken<StoreScope>[];
  /** The listen address and public names, for the Host rule (default: none, the Origin rules only). */
  readonly guard?: GuardOptions;
  /** Deadline of a request body in ms (default `BODY_DEADLINE_MS`). */
  readonly bodyDeadlineMs?: number;
  /** Keep refs only: chunk writes are refused with 405 `witness_no_chunks`. */
  readonly witness?: boolean;
}

/** Chunks read from the store per getMany call in a batch-get: 16 x 4 MiB = one MAX_BATCH_BYTES. */
const GET_GROUP = Math.max(1, Math.floor(MAX_BATCH_BYTES / MAX_CHUNK_BYTES));

/**
 * Builds the HTTP app over `store`. The app never closes the store.
 *
 * @example
 * const app = createChunkStoreApp(new MemoryStore(), { token: "s3cret" });
 * const server = await serveHttp(app.fetch, { hostname: "127.0.0.1", port: 0 });
 */
export function createChunkStoreApp(store: ChunkStore, options: ChunkStoreAppOptions = {}): Hono {
  const witness = options.witness === true;
  const s: ChunkStore = witness ? new WitnessStore(store) : store;
  const app = new Hono();

  app.onError((err, c) => errorResponse(c, httpErrorOf(err, witness)));
  app.notFound((c) =>
    errorResponse(c, {
      status: 404,
      code: ERROR_CODE.NOT_FOUND,
      message: `No route ${c.req.method} ${new URL(c.req.url).pathname}`,
    }),
  );
  app.use("*", requestGuard(options.guard ?? {}));
  const tokens: ScopedToken<StoreScope>[] = [
    ...(options.token !== undefined ? [{ token: options.token, scope: "write" as const }] : []),
    ...(options.tokens ?? []),
  ];
  if (tokens.length > 0) {
    app.use(
      "*",
      requireScopedToken<StoreScope>({
        tokens,
        ladder: STORE_SCOPES,
        needs: (c) => storeScopeOf(c.req.method, new URL(c.req.url).pathname),
        describe: (s) =>
          s === "read" ? "GET, HEAD, POST /v1/chunks/has and /v1/chunks/batch-get" : "every route",
      }),
    );
  }
  app.use("*", bodyDeadline(options.bodyDeadlineMs));
  let identity: Promise<string> | undefined;
  const storeIdentity = () => {
    identity ??= s.probe().then((p) => p.identity);
    identity.catch(() => (identity = undefined));
    return identity;
  };
  app.use("*", async (c, next) => {
    const expected = c.req.header(EXPECT_IDENTITY_HEADER);
    if (expected !== undefined) {
      const actual = await storeIdentity();
      if (expected !== actual) {
        return errorResponse(c, {
          status: 409,
          code: ERROR_CODE.IDENTITY_MISMATCH,
          message: `This store's identity is ${actual}, not ${expected}: it was wiped or replaced`,
          extra: { identity: actual },
        });
      }
    }
    await next();
  });

  const jsonLimit = limit(MAX_JSON_BYTES);

  app.get("/v1/health", async (c) =>
    c.json({ ok: true, api: 1, witness, identity: await storeIdentity(), capabilities: s.capabilities }),
  );

  app.get("/v1/stats", async (c) => c.json(await s.stats()));

  // ---- chunks: batches (registered before /:hash so the literal paths win) ----

  app.post("/v1/chunks/has", jsonLimit, async (c) => {
    const hashes = await readHashes(c);
    return c.json({ present: await s.has(hashes) });
  });

  app.post("/v1/chunks/condemn", jsonLimit, async (c) => {
    const { hashes, token } = await readGcBatch(c);
    return c.json({ condemned: await s.condemn(hashes, token) });
  });

  app.post("/v1/chunks/sweep", jsonLimit, async (c) => {
    const { hashes, token } = await readGcBatch(c);
    return c.json(await s.sweep(hashes, token));
  });

  app.post("/v1/chunks/batch-put", limit(MAX_BATCH_BYTES), async (c) => {
    const records = decodeBatch(new Uint8Array(await c.req.arrayBuffer()));
    const chunks = records.map((r) => {
      if (r.status !== RECORD_STATUS.PRESENT) {
        throw new TypeError(
          `Batch-put record for chunk "${r.hash}" has status ${r.status}; expected present`,
        );
      }
      return { hash: r.hash, bytes: r.bytes };
    });
    const results = chunks.length === 0 ? [] : await s.putMany(chunks);
    return c.json({ existed: results.map((r) => r.existed) });
  });

  app.post("/v1/chunks/batch-get", jsonLimit, async (c) => {
    const hashes = await readHashes(c);
    const records = await readBatch(s, hashes);
    return c.body(encodeBatch(records), 200, { "content-type": "application/octet-stream" });
  });

  app.get("/v1/chunks", async (c) => {
    const after = c.req.query("after");
    if (after !== undefined && after !== "") assertHash(after);
    const limitParam = c.req.query("limit");
    const max = limitParam === undefined ? LIST_DEFAULT_LIMIT : Number(limitParam);
    if (!Number.isInteger(max) || max < 1 || max > LIST_MAX_LIMIT) {
      throw new RangeError(
        `List limit ${JSON.stringify(limitParam)} must be an integer from 1 to ${LIST_MAX_LIMIT}`,
      );
    }
    const hashes: Hash[] = [];
    let more = false;
    for await (const h of s.list(after ? { after } : {})) {
      if (hashes.length === max) {
        more = true;
        break;
      }
      hashes.push(h);
    }
    return c.json({ hashes, next: more ? hashes[hashes.length - 1]! : null });
  });

  // ---- chunks: one at a time ----

  // Hono answers HEAD with the GET handler (body dropped); only the existence check runs.
  app.get("/v1/chunks/:hash", async (c) => {
    const hash = c.req.param("hash");
    assertHash(hash);
    if (c.req.method === "HEAD") {
      const [present] = await s.has([hash]);
      if (!present) throw new ChunkNotFoundError(s.name, hash);
      return c.body(null, 200);
    }
    // Stores return plain ArrayBuffer-backed arrays; the cast only narrows the buffer type.
    const bytes = (await s.get(hash)) as Uint8Array<ArrayBuffer>;
    return c.body(bytes, 200, { "content-type": "application/octet-stream" });
  });

  app.put("/v1/chunks/:hash", limit(MAX_CHUNK_BYTES), async (c) => {
    const hash = c.req.param("hash");
    assertHash(hash);
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    const { existed } = await s.put(hash, bytes);
    return c.json({ existed }, existed ? 200 : 201);
  });

  app.delete("/v1/chunks/:hash", async (c) => {
    const hash = c.req.param("hash");
    assertHash(hash);
    if (!(await s.delete(hash))) throw new ChunkNotFoundError(s.name, hash);
    return c.body(null, 204);
  });

  // ---- refs ----

  app.get("/v1/refs", async (c) => {
    const prefix = c.req.query("prefix") ?? "";
    if (c.req.query("values") === undefined) return c.json({ names: await s.listRefs(prefix) });
    const after = c.req.query("after") || undefined;
    const limitParam = c.req.query("limit");
    const page = await s.scanRefs(prefix, {
      after,
      limit: limitParam === undefined ? undefined : Number(limitParam),
    });
    return c.json(page);
  });

  app.get("/v1/refs/:name", async (c) => {
    const name = c.req.param("name");
    const entry = await s.getRef(name);
    if (!entry) {
      return errorResponse(c, { status: 404, code: ERROR_CODE.REF_NOT_FOUND, message: `No ref "${name}"` });
    }
    return c.text(entry.value, 200, { etag: etagOf(entry.version) });
  });

  app.put("/v1/refs/:name", limit(MAX_REF_BYTES), async (c) => {
    const name = c.req.param("name");
    const expected = readPrecondition(c, true);
    const guardHeader = c.req.header(REF_GUARD_HEADER);
    const guard = guardHeader === undefined ? undefined : decodeRefGuard(guardHeader);
    if (guard === null)
      throw new TypeError(`${REF_GUARD_HEADER} must be <ref name> "<version>" or <ref name> absent`);
    const value = await c.req.text();
    const result = await s.casRef(name, expected, value, guard);
    if (!result.ok) return conflictResponse(c, name, result);
    c.header("etag", etagOf(result.version));
    return c.json({ version: result.version }, expected === null ? 201 : 200);
  });

  app.delete("/v1/refs/:name", async (c) => {
    const name = c.req.param("name");
    const expected = readPrecondition(c, false);
    if (expected === null) throw new TypeError(`Deleting ref "${name}" needs If-Match with its version`);
    const result = await s.deleteRef(name, expected);
    if (!result.ok) return conflictResponse(c, name, result);
    return c.body(null, 204);
  });

  return app;
}

// ---------------------------------------------------------------------------
// Errors: the one mapping from domain errors to HTTP.

/** What an error becomes on the wire. */
interface HttpError {
  readonly status: ContentfulStatusCode;
  readonly code: ErrorCode;
  readonly message: string;
  readonly extra?: Record<string, unknown>;
  readonly headers?: Record<string, string>;
}

/** The one mapping from a thrown value to an HTTP status and error code. */
function httpErrorOf(err: unknown, witness: boolean): HttpError {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof AccessRefusedError)
    return { status: err.status, code: err.code, message, headers: { ...err.headers } };
  if (err instanceof HTTPException) {
    if (err.status === 401) {
      return {
        status: 401,
        code: ERROR_CODE.UNAUTHORIZED,
        message,
        headers: { "www-authenticate": "Bearer" },
      };
    }
    if (err.status === 413) return { status: 413, code: ERROR_CODE.PAYLOAD_TOO_LARGE, message };
    if (err.status === 428) return { status: 428, code: ERROR_CODE.PRECONDITION_REQUIRED, message };
    if (err.status >= 400 && err.status < 500) {
      return { status: err.status as ContentfulStatusCode, code: ERROR_CODE.BAD_REQUEST, message };
    }
  }
  if (err instanceof ChunkNotFoundError) return { status: 404, code: ERROR_CODE.CHUNK_NOT_FOUND, message };
  if (err instanceof HashMismatchError) {
    return {
      status: 422,
      code: ERROR_CODE.HASH_MISMATCH,
      message,
      extra: { hash: err.hash, actual: err.actual },
    };
  }
  if (err instanceof ChunkCorruptError) {
    return { status: 500, code: ERROR_CODE.CHUNK_CORRUPT, message, extra: { hash: err.hash } };
  }
  if (err instanceof UnsupportedOperationError) {
    return { status: 405, code: witness ? ERROR_CODE.WITNESS_NO_CHUNKS : ERROR_CODE.UNSUPPORTED, message };
  }
  if (err instanceof StoreFullError) return { status: 507, code: ERROR_CODE.STORE_FULL, message };
  // The backend behind this server failed (an S3 bucket, a proxied store).
  if (err instanceof StoreUnavailableError || err instanceof UnauthorizedError) {
    return { status: 503, code: ERROR_CODE.STORE_UNAVAILABLE, message };
  }
  if (err instanceof RangeError) return { status: 400, code: ERROR_CODE.OUT_OF_RANGE, message };
  if (err instanceof TypeError || err instanceof SyntaxError)
    return { status: 400, code: ERROR_CODE.BAD_REQUEST, message };
  // The client went away mid-request (its timeout ran out while this server was stopped,
  // say): nobody reads the answer, nothing was stored, and it is no bug of the server.
  if (err instanceof DOMException && err.name === "AbortError")
    return {
      status: 400,
      code: ERROR_CODE.BAD_REQUEST,
      message: `The client closed the connection: ${message}`,
    };
  console.error("chunk store server: unexpected error", err);
  return { status: 500, code: ERROR_CODE.INTERNAL, message: `Internal error: ${message}` };
}

function errorResponse(c: Context, e: HttpError): Response {
  const body: ErrorBody = { error: { code: e.code, message: e.message, ...e.extra } };
  return c.json(body, e.status, e.headers);
}

/** 412 for a lost compare-and-set, carrying what the store holds now. */
function conflictResponse(c: Context, name: string, result: CasResult & { ok: false }): Response {
  const current = result.current;
  if (current) c.header("etag", etagOf(current.version));
  return c.json(
    {
      error: {
        code: ERROR_CODE.REF_CONFLICT,
        message: current
          ? `Ref "${name}" is at version "${current.version}"`
          : `Ref "${name}" does not exist`,
      },
      current,
    },
    412,
  );
}

// ---------------------------------------------------------------------------
// Request helpers.

/** Body limit for one route; overflow becomes a 413 through the one error mapping. */
function limit(maxSize: number): MiddlewareHandler {
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new HTTPException(413, { message: `Request body is larger than ${maxSize} bytes` });
    },
  });
}

/** `{"hashes":[...]}`, at most MAX_BATCH_HASHES, each well-formed. */
async function readHashes(c: Context): Promise<Hash[]> {
  return hashesOf(await readJson(c));
}

/** A condemn or sweep body: {"hashes":[...],"token":"..."}. */
async function readGcBatch(c: Context): Promise<{ hashes: Hash[]; token: string }> {
  const body = await readJson(c);
  const token = (body as { token?: unknown } | null)?.token;
  if (typeof token !== "string")
    throw new TypeError('Expected a JSON body {"hashes": [...], "token": "..."}');
  assertToken(token);
  return { hashes: hashesOf(body), token };
}

async function readJson(c: Context): Promise<unknown> {
  try {
    return await c.req.json();
  } catch (e) {
    throw new TypeError(`Request body is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function hashesOf(body: unknown): Hash[] {
  const hashes = (body as { hashes?: unknown } | null)?.hashes;
  if (!Array.isArray(hashes)) throw new TypeError('Expected a JSON body {"hashes": [...]}');
  if (hashes.length > MAX_BATCH_HASHES) {
    throw new RangeError(`A batch holds at most ${MAX_BATCH_HASHES} hashes; got ${hashes.length}`);
  }
  for (const h of hashes) assertHash(h);
  return hashes as Hash[];
}

/**
 * The expected ref version from `If-Match: "<v>"`, or null from `If-None-Match: *`
 * (must not exist yet). Neither: 428. `allowCreate` false refuses If-None-Match.
 */
function readPrecondition(c: Context, allowCreate: boolean): string | null {
  const ifMatch = c.req.header("if-match");
  const ifNoneMatch = c.req.header("if-none-match");
  if (ifMatch !== undefined && ifNoneMatch !== undefined) {
    throw new TypeError("Send either If-Match or If-None-Match, not both");
  }
  if (ifMatch !== undefined) {
    const version = versionOfEtag(ifMatch);
    if (version === null)
      throw new TypeError(`If-Match must be one strong entity tag "<version>"; got ${ifMatch}`);
    return version;
  }
  if (ifNoneMatch !== undefined && allowCreate) {
    if (ifNoneMatch.trim() !== "*") throw new TypeError(`If-None-Match must be *; got ${ifNoneMatch}`);
    return null;
  }
  throw new HTTPException(428, {
    message: allowCreate
      ? 'Ref writes need If-Match: "<version>" or If-None-Match: * (compare-and-set)'
      : 'Ref deletes need If-Match: "<version>"',
  });
}

// ---------------------------------------------------------------------------
// Batch-get.

type Read = Uint8Array | typeof RECORD_STATUS.ABSENT | typeof RECORD_STATUS.CORRUPT;

/** One record per hash, in order; chunks past the MAX_BATCH_BYTES budget are `omitted`. */
async function readBatch(store: ChunkStore, hashes: readonly Hash[]): Promise<BatchRecordInput[]> {
  const records: BatchRecordInput[] = [];
  // Every record header is reserved up front, so omitted records always fit too.
  let budget = MAX_BATCH_BYTES - frameBytes(hashes.map(() => 0));
  let full = false;
  for (let i = 0; i < hashes.length && !full; i += GET_GROUP) {
    const group = hashes.slice(i, i + GET_GROUP);
    const reads = await readGroup(store, group);
    for (let j = 0; j < group.length; j++) {
      const hash = group[j]!;
      const read = reads[j]!;
      if (!(read instanceof Uint8Array)) {
        records.push({ hash, status: read });
      } else if (read.byteLength <= budget) {
        budget -= read.byteLength;
        records.push({ hash, bytes: read });
      } else {
        full = true;
        break;
      }
    }
  }
  for (let i = records.length; i < hashes.length; i++)
    records.push({ hash: hashes[i]!, status: RECORD_STATUS.OMITTED });
  return records;
}

/** Reads a group with one getMany; if any copy is corrupt, falls back to per-chunk reads to tell which. */
async function readGroup(store: ChunkStore, hashes: readonly Hash[]): Promise<Read[]> {
  try {
    return (await store.getMany(hashes)).map((b) => b ?? RECORD_STATUS.ABSENT);
  } catch (e) {
    if (!(e instanceof ChunkCorruptError)) throw e;
  }
  return Promise.all(
    hashes.map((h) =>
      store.get(h).then(
        (b): Read => b,
        (e): Read => {
          if (e instanceof ChunkNotFoundError) return RECORD_STATUS.ABSENT;
          if (e instanceof ChunkCorruptError) return RECORD_STATUS.CORRUPT;
          throw e;
        },
      ),
    ),
  );
}
