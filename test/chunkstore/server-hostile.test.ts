/**
 * The chunk store server against hostile clients (issue 9), on a real HTTPS listener with
 * a write token and a read token: missing and wrong tokens, a read token writing (every
 * write route), plaintext and TLS mix-ups, a stalled handshake, oversized header and
 * bodies, a slow-drip body, cross-origin requests and DNS rebinding. Each refusal leaves
 * the store as it was, and the server serves the next request.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { encodeBatch } from "../../chunkstore/_batch-frame.ts";
import { MAX_JSON_BYTES } from "../../chunkstore/_http-wire.ts";
import { StoreUnavailableError } from "../../chunkstore/errors.ts";
import { HttpStore } from "../../chunkstore/http-store.ts";
import { MAX_BATCH_BYTES, MAX_CHUNK_BYTES, MAX_REF_BYTES } from "../../chunkstore/limits.ts";
import { MemoryStore } from "../../chunkstore/memory-store.ts";
import { createChunkStoreApp } from "../../chunkstore/server.ts";
import { type HttpServer, serveHttp } from "../../runtime/serve-http.ts";
import { fetchTrusting } from "../../runtime/tls-fetch.ts";
import { loadHttpsCredentials } from "../../runtime/tls-files.ts";
import { makeTestPki, type TestPki } from "../gateway/nbd/_pki.ts";
import { head, plainToTls, rawRequest, stalledHandshake, tlsToPlain } from "../support/hostile-client.ts";
import { runOk } from "../support/tools.ts";
import { randomChunk } from "./conformance.ts";

const WRITE = "write-token-0123456789abcdef";
const READ = "read-token-0123456789abcdef";
const DEADLINE_MS = 1500;

let pki: TestPki;
let ca: string;
let store: MemoryStore;
let server: HttpServer;
let plainServer: HttpServer;
let f: ReturnType<typeof fetchTrusting>;
const kept = randomChunk(3000);

beforeAll(async () => {
  pki = await makeTestPki();
  ca = await Bun.file(`${pki.server}/ca-cert.pem`).text();
  f = fetchTrusting(ca);
  store = new MemoryStore();
  await store.put(kept.hash, kept.bytes);
  const app = createChunkStoreApp(store, {
    tokens: [
      { token: WRITE, scope: "write" },
      { token: READ, scope: "read" },
    ],
    guard: { hostname: "127.0.0.1", publicNames: ["store-a.example"] },
    bodyDeadlineMs: DEADLINE_MS,
  });
  server = await serveHttp(app.fetch, {
    hostname: "127.0.0.1",
    port: 0,
    tls: await loadHttpsCredentials(pki.server),
  });
  plainServer = await serveHttp(
    createChunkStoreApp(new MemoryStore(), { guard: { hostname: "127.0.0.1" } }).fetch,
    { hostname: "127.0.0.1", port: 0 },
  );
}, 60_000);

afterAll(async () => {
  await server?.close();
  await plainServer?.close();
  await pki?.remove();
});

const auth = (token: string) => ({ authorization: `Bearer ${token}` });

/** The store holds exactly the chunk it started with and no ref, and the server answers. */
async function unchangedAndServing(): Promise<void> {
  const hashes: string[] = [];
  for await (const h of store.list()) hashes.push(h);
  expect(hashes).toEqual([kept.hash]);
  expect(await store.listRefs("")).toEqual([]);
  const res = await f(`${server.url}/v1/chunks/${kept.hash}`, { headers: auth(READ) });
  expect(res.status).toBe(200);
  expect(new Uint8Array(await res.arrayBuffer())).toEqual(kept.bytes);
}

async function codeOf(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

describe("chunk store server, hostile clients", () => {
  test("no token and a wrong one are 401 on reads and writes", async () => {
    const c = randomChunk(100);
    for (const headers of [{}, auth("wrong-token-0123456789abcdef"), { authorization: WRITE }]) {
      for (const [method, path, body] of [
        ["GET", "/v1/health", undefined],
        ["GET", `/v1/chunks/${kept.hash}`, undefined],
        ["PUT", `/v1/chunks/${c.hash}`, c.bytes],
      ] as const) {
        const res = await f(`${server.url}${path}`, { method, headers, body });
        expect(`${method} ${path} ${res.status}`).toBe(`${method} ${path} 401`);
        expect(await codeOf(res)).toBe("unauthorized");
      }
    }
    await unchangedAndServing();
  });

  test("a read token reads, and every write route refuses it with 403 forbidden_scope", async () => {
    expect((await f(`${server.url}/v1/health`, { headers: auth(READ) })).status).toBe(200);
    const has = await f(`${server.url}/v1/chunks/has`, {
      method: "POST",
      headers: { ...auth(READ), "content-type": "application/json" },
      body: JSON.stringify({ hashes: [kept.hash] }),
    });
    expect(await has.json()).toEqual({ present: [true] });
    const get = await f(`${server.url}/v1/chunks/batch-get`, {
      method: "POST",
      headers: { ...auth(READ), "content-type": "application/json" },
      body: JSON.stringify({ hashes: [kept.hash] }),
    });
    expect(get.status).toBe(200);
    await get.body?.cancel();
    const c = randomChunk(100);
    for (const [method, path, body, headers] of [
      ["PUT", `/v1/chunks/${c.hash}`, c.bytes, {}],
      ["DELETE", `/v1/chunks/${kept.hash}`, undefined, {}],
      ["POST", "/v1/chunks/batch-put", encodeBatch([c]), { "content-type": "application/octet-stream" }],
      ["PUT", "/v1/refs/head.x", "v", { "if-none-match": "*" }],
      ["DELETE", "/v1/refs/head.x", undefined, { "if-match": '"1"' }],
    ] as const) {
      const res = await f(`${server.url}${path}`, { method, headers: { ...auth(READ), ...headers }, body });
      expect(`${method} ${path} ${res.status}`).toBe(`${method} ${path} 403`);
      const e = (await res.json()) as { error: { code: string; message: string } };
      expect(e.error.code).toBe("forbidden_scope");
      expect(e.error.message).toContain("read scope");
    }
    await unchangedAndServing();
  });

  test("the http store client reports a read token's refused write as the server's forbidden_scope message", async () => {
    const client = new HttpStore(server.url, { token: READ, ca });
    const c = randomChunk(100);
    const err = await client.put(c.hash, c.bytes).catch((e) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(String(err.message)).toContain("read scope");
    expect(await client.has([kept.hash])).toEqual([true]);
    await unchangedAndServing();
  });

  test("plain HTTP to the HTTPS port and a TLS hello to a plain port are refused; both keep serving", async () => {
    const toTls = await plainToTls(server.url);
    expect(toTls.text).not.toContain('"ok":true');
    const toPlain = await tlsToPlain(plainServer.url);
    expect(toPlain.status).toBe(400);
    expect((await fetch(`${plainServer.url}/v1/health`)).status).toBe(200);
    await unchangedAndServing();
  });

  test("a stalled TLS handshake holds up nobody, and is cut off by Bun's idle timeout", async () => {
    const stalled = stalledHandshake(server.url, 30_000);
    await unchangedAndServing();
    const r = await stalled;
    expect(r.closedByServer).toBe(true);
    expect(r.ms).toBeLessThan(20_000);
  }, 40_000);

  test("a 100 KiB header is 431, and every write route refuses a body over its limit with 413", async () => {
    const big = await rawRequest(
      server.url,
      [head("GET", "/v1/health", { host: "127.0.0.1", ...auth(WRITE), "x-big": "b".repeat(100 * 1024) })],
      { ca },
    );
    expect(big.status).toBe(431);
    const c = randomChunk(10);
    for (const [method, path, max] of [
      ["PUT", `/v1/chunks/${c.hash}`, MAX_CHUNK_BYTES],
      ["POST", "/v1/chunks/batch-put", MAX_BATCH_BYTES],
      ["POST", "/v1/chunks/has", MAX_JSON_BYTES],
      ["POST", "/v1/chunks/batch-get", MAX_JSON_BYTES],
      ["PUT", "/v1/refs/head.x", MAX_REF_BYTES],
    ] as const) {
      const r = await rawRequest(
        server.url,
        [
          head(method, path, {
            host: "127.0.0.1",
            ...auth(WRITE),
            "if-none-match": "*",
            "content-type":
              path.endsWith("has") || path.endsWith("get") ? "application/json" : "application/octet-stream",
            "content-length": String(max + 1),
          }),
        ],
        { ca },
      );
      expect(`${method} ${path} ${r.status}`).toBe(`${method} ${path} 413`);
    }
    await unchangedAndServing();
  });

  test("a chunk dripped a byte at a time is cut off with 408 and never stored", async () => {
    const c = randomChunk(4096);
    const r = await rawRequest(
      server.url,
      [
        head("PUT", `/v1/chunks/${c.hash}`, {
          host: "127.0.0.1",
          ...auth(WRITE),
          "content-type": "application/octet-stream",
          "content-length": "4096",
        }),
        ...Array.from({ length: 40 }, (_, i) => c.bytes.subarray(i, i + 1)),
      ],
      { ca, gapMs: 200, timeoutMs: 10_000 },
    );
    expect(r.status).toBe(408);
    expect(r.text).toContain("request_timeout");
    await unchangedAndServing();
  }, 20_000);

  test("cross-origin writes and a rebinding Host are 403 even with the write token", async () => {
    const c = randomChunk(100);
    const cross = await f(`${server.url}/v1/chunks/${c.hash}`, {
      method: "PUT",
      headers: { ...auth(WRITE), origin: "https://evil.example" },
      body: c.bytes,
    });
    expect(cross.status).toBe(403);
    expect(await codeOf(cross)).toBe("forbidden_origin");
    const form = await f(`${server.url}/v1/chunks/batch-put`, {
      method: "POST",
      headers: { ...auth(WRITE), "content-type": "text/plain" },
      body: encodeBatch([c]),
    });
    expect(form.status).toBe(403);
    expect(await codeOf(form)).toBe("forbidden_content_type");
    const rebound = await rawRequest(
      server.url,
      [head("GET", `/v1/chunks/${kept.hash}`, { host: "evil.example", ...auth(WRITE) })],
      {
        ca,
      },
    );
    expect(rebound.status).toBe(403);
    expect(rebound.text).toContain("forbidden_host");
    const named = await rawRequest(
      server.url,
      [head("GET", "/v1/health", { host: "store-a.example:9400", ...auth(WRITE) })],
      {
        ca,
      },
    );
    expect(named.status).toBe(200);
    await unchangedAndServing();
  });

  test("a store whose certificate no trusted CA signed is refused: StoreUnavailableError naming TLS", async () => {
    for (const client of [
      new HttpStore(server.url, {
        token: WRITE,
        ca: await Bun.file(`${pki.clientWrongCa}/ca-cert.pem`).text(),
      }),
      new HttpStore(server.url, { token: WRITE }), // the system's CAs
    ]) {
      const err = await client.probe().catch((e) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(String(err.message)).toContain("TLS with the store failed");
    }
    expect((await new HttpStore(server.url, { token: WRITE, ca }).probe()).identity).toMatch(/-/);
  });

  test("a self-signed store certificate, not under the CA given, is refused: StoreUnavailableError naming TLS", async () => {
    const dir = `${pki.root}/self-signed`;
    await Bun.write(
      `${dir}/s.info`,
      "cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nsigning_key\nexpiration_days = 30\n",
    );
    await runOk([
      "certtool",
      "--generate-privkey",
      "--key-type=ecdsa",
      "--no-text",
      "--outfile",
      `${dir}/server-key.pem`,
    ]);
    await runOk([
      "certtool",
      "--generate-self-signed",
      ...[
        "--load-privkey",
        `${dir}/server-key.pem`,
        "--template",
        `${dir}/s.info`,
        "--outfile",
        `${dir}/server-cert.pem`,
      ],
    ]);
    const rogue = await serveHttp(createChunkStoreApp(new MemoryStore(), { token: WRITE }).fetch, {
      hostname: "127.0.0.1",
      port: 0,
      tls: await loadHttpsCredentials(dir),
    });
    try {
      const err = await new HttpStore(rogue.url, { token: WRITE, ca }).probe().catch((e) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(String(err.message)).toContain("TLS with the store failed");
      expect(String(err.message)).toContain("--store-ca");
    } finally {
      await rogue.close();
    }
  });
});
