/**
 * The chunk store server over raw HTTP: every kind of bad input gets a clear 4xx with
 * the stable JSON error shape, nothing is stored by a refused request, and the server
 * keeps serving normal requests afterwards.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { BATCH_FRAME, decodeBatch, encodeBatch, RECORD_STATUS } from "../../chunkstore/_batch-frame.ts";
import { MAX_BATCH_HASHES, MAX_CHUNK_BYTES, MAX_REF_BYTES } from "../../chunkstore/limits.ts";
import { MemoryStore } from "../../chunkstore/memory-store.ts";
import { createChunkStoreApp } from "../../chunkstore/server.ts";
import { type HttpServer, serveHttp } from "../../runtime/serve-http.ts";
import { randomChunk } from "./conformance.ts";

const H = "http://store";

function setup(options: { token?: string; witness?: boolean } = {}) {
  const store = new MemoryStore();
  const app = createChunkStoreApp(store, options);
  const request = async (path: string, init?: RequestInit): Promise<Response> =>
    app.request(`${H}${path}`, init);
  return { store, app, request };
}

/** The stable error shape: `{"error":{"code","message"}}`. */
async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(typeof body.error.code).toBe("string");
  expect(typeof body.error.message).toBe("string");
  return body.error;
}

/** A normal put and get still work: the server survived whatever came before. */
async function stillServes(request: (path: string, init?: RequestInit) => Promise<Response>) {
  const c = randomChunk(1234);
  const put = await request(`/v1/chunks/${c.hash}`, { method: "PUT", body: c.bytes });
  expect(put.status).toBe(201);
  const get = await request(`/v1/chunks/${c.hash}`);
  expect(get.status).toBe(200);
  expect(get.headers.get("content-type")).toBe("application/octet-stream");
  expect(Buffer.from(await get.arrayBuffer()).equals(Buffer.from(c.bytes))).toBe(true);
}

describe("chunk store server: chunks", () => {
  test("put answers 201 when new and 200 when present; get, head and delete follow", async () => {
    const { request } = setup();
    const c = randomChunk(5000);
    expect((await request(`/v1/chunks/${c.hash}`, { method: "PUT", body: c.bytes })).status).toBe(201);
    expect((await request(`/v1/chunks/${c.hash}`, { method: "PUT", body: c.bytes })).status).toBe(200);
    expect((await request(`/v1/chunks/${c.hash}`, { method: "HEAD" })).status).toBe(200);
    expect((await request(`/v1/chunks/${c.hash}`, { method: "DELETE" })).status).toBe(204);
    expect((await request(`/v1/chunks/${c.hash}`, { method: "DELETE" })).status).toBe(404);
    expect((await request(`/v1/chunks/${c.hash}`, { method: "HEAD" })).status).toBe(404);
    const get = await request(`/v1/chunks/${c.hash}`);
    expect(get.status).toBe(404);
    expect((await errorOf(get)).code).toBe("chunk_not_found");
  });

  test("a malformed hash is 400", async () => {
    const { request } = setup();
    const c = randomChunk();
    for (const bad of ["xyz", c.hash.toUpperCase(), `${c.hash}00`, "..%2F..%2Fetc%2Fpasswd"]) {
      const res = await request(`/v1/chunks/${bad}`, { method: "PUT", body: c.bytes });
      expect(res.status).toBe(400);
      expect((await errorOf(res)).code).toBe("bad_request");
      expect((await request(`/v1/chunks/${bad}`)).status).toBe(400);
    }
    await stillServes(request);
  });

  test("bytes that do not match the hash are 422 naming the hash, and nothing is stored", async () => {
    const { request, store } = setup();
    const c = randomChunk();
    const res = await request(`/v1/chunks/${c.hash}`, { method: "PUT", body: randomChunk().bytes });
    expect(res.status).toBe(422);
    const err = await errorOf(res);
    expect(err.code).toBe("hash_mismatch");
    expect(err.message).toContain(c.hash);
    expect((await store.stats()).chunks).toBe(0);
    await stillServes(request);
  });

  test("a chunk body over MAX_CHUNK_BYTES is 413, with or without Content-Length", async () => {
    const { request, store } = setup();
    const big = randomChunk(MAX_CHUNK_BYTES + 1);
    const res = await request(`/v1/chunks/${big.hash}`, { method: "PUT", body: big.bytes });
    expect(res.status).toBe(413);
    expect((await errorOf(res)).code).toBe("payload_too_large");
    // A streamed body has no Content-Length: the limit is counted as it arrives.
    const stream = new ReadableStream({
      start(ctrl) {
        ctrl.enqueue(big.bytes);
        ctrl.close();
      },
    });
    const streamed = await request(`/v1/chunks/${big.hash}`, {
      method: "PUT",
      body: stream,
      duplex: "half",
    } as RequestInit);
    expect(streamed.status).toBe(413);
    expect((await store.stats()).chunks).toBe(0);
    await stillServes(request);
  });

  test("a corrupt stored copy is a 500 chunk_corrupt, never the bytes", async () => {
    const { request, store } = setup();
    const c = randomChunk(4000);
    await store.put(c.hash, c.bytes);
    store.corrupt(c.hash);
    const res = await request(`/v1/chunks/${c.hash}`);
    expect(res.status).toBe(500);
    const err = await errorOf(res);
    expect(err.code).toBe("chunk_corrupt");
    expect(err.message).toContain(c.hash);
  });

  test("unknown routes and methods are 404 JSON", async () => {
    const { request } = setup();
    for (const [method, path] of [
      ["GET", "/"],
      ["GET", "/v2/health"],
      ["POST", "/v1/chunks/whatever"],
      ["PATCH", "/v1/refs/x"],
    ] as const) {
      const res = await request(path, { method });
      expect(res.status).toBe(404);
      expect((await errorOf(res)).code).toBe("not_found");
    }
    await stillServes(request);
  });

  test("list pages in ascending order with a next cursor; a bad limit or cursor is 400", async () => {
    const { request, store } = setup();
    const hashes: string[] = [];
    for (let i = 0; i < 5; i++) {
      const c = randomChunk(100 + i);
      await store.put(c.hash, c.bytes);
      hashes.push(c.hash);
    }
    hashes.sort();
    const page1 = (await (await request("/v1/chunks?limit=3")).json()) as {
      hashes: string[];
      next: string | null;
    };
    expect(page1).toEqual({ hashes: hashes.slice(0, 3), next: hashes[2]! });
    const page2 = (await (await request(`/v1/chunks?limit=3&after=${page1.next}`)).json()) as {
      hashes: string[];
      next: string | null;
    };
    expect(page2).toEqual({ hashes: hashes.slice(3), next: null });
    expect((await request("/v1/chunks?limit=0")).status).toBe(400);
    expect((await request("/v1/chunks?limit=10001")).status).toBe(400);
    expect((await request("/v1/chunks?limit=x")).status).toBe(400);
    expect((await request("/v1/chunks?after=zz")).status).toBe(400);
  });

  test("health and stats", async () => {
    const { request } = setup();
    const health = (await (await request("/v1/health")).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ ok: true, witness: false, capabilities: { chunks: true, refs: true } });
    expect(await (await request("/v1/stats")).json()).toEqual({ chunks: 0, bytes: 0, freeBytes: null });
  });
});

describe("chunk store server: batches", () => {
  test("has answers in order; malformed JSON, a missing array and a bad hash are 400", async () => {
    const { request, store } = setup();
    const a = randomChunk();
    const b = randomChunk();
    await store.put(a.hash, a.bytes);
    const has = (body: string) =>
      request("/v1/chunks/has", { method: "POST", body, headers: { "content-type": "application/json" } });
    expect(await (await has(JSON.stringify({ hashes: [a.hash, b.hash] }))).json()).toEqual({
      present: [true, false],
    });
    for (const bad of ["{not json", "[]", "null", '{"hashes":"x"}', '{"hashes":[1]}', '{"hashes":["abc"]}']) {
      const res = await has(bad);
      expect(res.status).toBe(400);
      await errorOf(res);
    }
    await stillServes(request);
  });

  test("more than MAX_BATCH_HASHES hashes is 400 on has and batch-get", async () => {
    const { request } = setup();
    const hashes = Array.from({ length: MAX_BATCH_HASHES + 1 }, () => randomChunk(8).hash);
    for (const route of ["has", "batch-get"]) {
      const res = await request(`/v1/chunks/${route}`, { method: "POST", body: JSON.stringify({ hashes }) });
      expect(res.status).toBe(400);
      expect((await errorOf(res)).code).toBe("out_of_range");
    }
    await stillServes(request);
  });

  test("batch-put stores a frame; one mismatch anywhere is 422 naming it and stores none", async () => {
    const { request, store } = setup();
    const chunks = Array.from({ length: 4 }, (_, i) => randomChunk(500 + i));
    await store.put(chunks[1]!.hash, chunks[1]!.bytes);
    const ok = await request("/v1/chunks/batch-put", { method: "POST", body: encodeBatch(chunks) });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ existed: [false, true, false, false] });

    const fresh = Array.from({ length: 3 }, () => randomChunk(700));
    const liar = { hash: randomChunk().hash, bytes: randomChunk().bytes };
    const bad = await request("/v1/chunks/batch-put", {
      method: "POST",
      body: encodeBatch([...fresh, liar]),
    });
    expect(bad.status).toBe(422);
    const err = await errorOf(bad);
    expect(err.code).toBe("hash_mismatch");
    expect(err.message).toContain(liar.hash);
    expect(await store.has(fresh.map((c) => c.hash))).toEqual([false, false, false]);
    await stillServes(request);
  });

  test("a malformed frame is 400 and stores nothing", async () => {
    const { request, store } = setup();
    const good = encodeBatch([randomChunk(100), randomChunk(100)]);
    const badMagic = good.slice();
    badMagic[0] = 0;
    const trailing = new Uint8Array(good.byteLength + 1);
    trailing.set(good);
    const lies = good.slice();
    new DataView(lies.buffer).setUint32(4, 3); // claims 3 records, holds 2
    for (const body of [badMagic, good.subarray(0, good.byteLength - 1), trailing, lies, new Uint8Array(3)]) {
      const res = await request("/v1/chunks/batch-put", { method: "POST", body });
      expect(res.status).toBe(400);
      await errorOf(res);
    }
    expect((await store.stats()).chunks).toBe(0);
    await stillServes(request);
  });

  test("batch-get answers one record per hash: present, absent, corrupt", async () => {
    const { request, store } = setup();
    const [a, b, c] = [randomChunk(300), randomChunk(400), randomChunk(500)];
    await store.putMany([a, c]);
    store.corrupt(c.hash);
    const res = await request("/v1/chunks/batch-get", {
      method: "POST",
      body: JSON.stringify({ hashes: [a.hash, b.hash, c.hash] }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    const frame = new Uint8Array(await res.arrayBuffer());
    expect(frame.byteLength).toBe(BATCH_FRAME.HEADER_BYTES + 3 * BATCH_FRAME.RECORD_HEADER_BYTES + 300);
    const records = decodeBatch(frame);
    expect(records.map((r) => [r.hash, r.status])).toEqual([
      [a.hash, RECORD_STATUS.PRESENT],
      [b.hash, RECORD_STATUS.ABSENT],
      [c.hash, RECORD_STATUS.CORRUPT],
    ]);
    expect(Buffer.from(records[0]!.bytes).equals(Buffer.from(a.bytes))).toBe(true);
  });
});

describe("chunk store server: refs", () => {
  const put = (
    request: ReturnType<typeof setup>["request"],
    name: string,
    body: string,
    headers: Record<string, string>,
  ) => request(`/v1/refs/${name}`, { method: "PUT", body, headers });

  test("create with If-None-Match, update with If-Match, read with ETag, conflict is 412 with current", async () => {
    const { request } = setup();
    const created = await put(request, "head.a", "v1", { "if-none-match": "*" });
    expect(created.status).toBe(201);
    const etag1 = created.headers.get("etag")!;
    expect(etag1).toMatch(/^".+"$/);
    const read = await request("/v1/refs/head.a");
    expect(read.status).toBe(200);
    expect(await read.text()).toBe("v1");
    expect(read.headers.get("etag")).toBe(etag1);

    const again = await put(request, "head.a", "v9", { "if-none-match": "*" });
    expect(again.status).toBe(412);
    const conflict = (await again.json()) as {
      error: { code: string };
      current: { value: string; version: string };
    };
    expect(conflict.error.code).toBe("ref_conflict");
    expect(conflict.current.value).toBe("v1");
    expect(`"${conflict.current.version}"`).toBe(etag1);

    const updated = await put(request, "head.a", "v2", { "if-match": etag1 });
    expect(updated.status).toBe(200);
    const stale = await put(request, "head.a", "v3", { "if-match": etag1 });
    expect(stale.status).toBe(412);
    expect(await request("/v1/refs/head.a").then((r) => r.text())).toBe("v2");

    expect(
      (await request("/v1/refs/head.a", { method: "DELETE", headers: { "if-match": etag1 } })).status,
    ).toBe(412);
    const etag2 = updated.headers.get("etag")!;
    expect(
      (await request("/v1/refs/head.a", { method: "DELETE", headers: { "if-match": etag2 } })).status,
    ).toBe(204);
    const gone = await request("/v1/refs/head.a");
    expect(gone.status).toBe(404);
    expect((await errorOf(gone)).code).toBe("ref_not_found");
  });

  test("a ref write or delete without a precondition is 428", async () => {
    const { request } = setup();
    const res = await put(request, "head.b", "v", {});
    expect(res.status).toBe(428);
    expect((await errorOf(res)).code).toBe("precondition_required");
    expect((await request("/v1/refs/head.b", { method: "DELETE" })).status).toBe(428);
    expect((await request("/v1/refs/head.b")).status).toBe(404);
    await stillServes(request);
  });

  test("bad names, a bad If-Match and an oversized value are 4xx", async () => {
    const { request } = setup();
    expect((await put(request, ".hidden", "v", { "if-none-match": "*" })).status).toBe(400);
    expect((await put(request, "ok", "v", { "if-match": "not-quoted" })).status).toBe(400);
    expect((await put(request, "ok", "v", { "if-match": '"1"', "if-none-match": "*" })).status).toBe(400);
    expect((await put(request, "ok", "x".repeat(MAX_REF_BYTES + 1), { "if-none-match": "*" })).status).toBe(
      413,
    );
    expect((await request("/v1/refs/ok")).status).toBe(404);
  });

  test("list refs by prefix", async () => {
    const { request } = setup();
    for (const n of ["head.x", "head.y", "snap.z"]) await put(request, n, "v", { "if-none-match": "*" });
    expect(await (await request("/v1/refs?prefix=head.")).json()).toEqual({ names: ["head.x", "head.y"] });
    expect(await (await request("/v1/refs")).json()).toEqual({ names: ["head.x", "head.y", "snap.z"] });
  });
});

describe("chunk store server: auth", () => {
  test("with a token, every route (health too) needs it: missing or wrong is 401 JSON", async () => {
    const { request } = setup({ token: "s3cret" });
    for (const headers of [
      {},
      { authorization: "Bearer wrong" },
      { authorization: "Basic czNjcmV0" },
      { authorization: "Bearer" },
    ]) {
      for (const path of ["/v1/health", "/v1/stats", "/v1/refs", "/nope"]) {
        const res = await request(path, { headers: headers as Record<string, string> });
        expect(res.status).toBe(401);
        expect((await errorOf(res)).code).toBe("unauthorized");
      }
    }
    const ok = await request("/v1/health", { headers: { authorization: "Bearer s3cret" } });
    expect(ok.status).toBe(200);
    await stillServes((path, init) =>
      request(path, {
        ...init,
        headers: { ...(init?.headers as Record<string, string>), authorization: "bearer s3cret" },
      }),
    );
  });
});

describe("chunk store server: witness", () => {
  test("refuses chunk writes with 405 witness_no_chunks and still serves refs", async () => {
    const { request, store } = setup({ witness: true });
    const c = randomChunk();
    const res = await request(`/v1/chunks/${c.hash}`, { method: "PUT", body: c.bytes });
    expect(res.status).toBe(405);
    expect((await errorOf(res)).code).toBe("witness_no_chunks");
    const batch = await request("/v1/chunks/batch-put", { method: "POST", body: encodeBatch([c]) });
    expect(batch.status).toBe(405);
    expect((await errorOf(batch)).code).toBe("witness_no_chunks");
    expect((await store.stats()).chunks).toBe(0);
    expect((await request(`/v1/chunks/${c.hash}`)).status).toBe(404);
    expect(await (await request("/v1/health")).json()).toMatchObject({
      witness: true,
      capabilities: { chunks: false },
    });
    const ref = await request("/v1/refs/head.w", {
      method: "PUT",
      body: "h",
      headers: { "if-none-match": "*" },
    });
    expect(ref.status).toBe(201);
    expect(await (await request("/v1/refs/head.w")).text()).toBe("h");
  });
});

describe("chunk store server over a real socket", () => {
  let server: HttpServer | undefined;
  afterAll(async () => server?.close());

  test("bad requests get clear errors and the server keeps serving", async () => {
    const store = new MemoryStore();
    server = await serveHttp(createChunkStoreApp(store, { token: "tok" }).fetch, {
      hostname: "127.0.0.1",
      port: 0,
    });
    const auth = { authorization: "Bearer tok" };
    const request = (path: string, init: RequestInit = {}) =>
      fetch(`${server!.url}${path}`, {
        ...init,
        headers: { ...auth, ...(init.headers as Record<string, string>) },
      });
    expect((await fetch(`${server.url}/v1/health`)).status).toBe(401);
    const c = randomChunk();
    expect((await request(`/v1/chunks/${c.hash.slice(1)}`, { method: "PUT", body: c.bytes })).status).toBe(
      400,
    );
    expect((await request(`/v1/chunks/${c.hash}`, { method: "PUT", body: randomChunk().bytes })).status).toBe(
      422,
    );
    const big = new Uint8Array(MAX_CHUNK_BYTES + 1);
    expect((await request(`/v1/chunks/${c.hash}`, { method: "PUT", body: big })).status).toBe(413);
    expect((await request("/v1/chunks/has", { method: "POST", body: "{" })).status).toBe(400);
    expect((await request("/v1/refs/x", { method: "PUT", body: "v" })).status).toBe(428);
    expect((await request("/v1/nothing")).status).toBe(404);
    expect((await store.stats()).chunks).toBe(0);
    await stillServes(request);
  });
});

describe("chunk store server: a client that goes away", () => {
  test("a body cut off by the client (AbortError) is a 400, stores nothing, and logs no unexpected error", async () => {
    const { store, request } = setup();
    const c = randomChunk(5000);
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(c.bytes.subarray(0, 1000));
        controller.error(new DOMException("The connection was closed.", "AbortError"));
      },
    });
    const logged: unknown[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => logged.push(args);
    let res: Response;
    try {
      res = await request(`/v1/chunks/${c.hash}`, { method: "PUT", body, duplex: "half" } as RequestInit);
    } finally {
      console.error = original;
    }
    expect(res.status).toBe(400);
    expect((await errorOf(res)).message).toContain("The client closed the connection");
    expect(logged).toEqual([]);
    expect((await store.has([c.hash]))[0]).toBe(false);
    await stillServes(request);
  });
});
