/**
 * The http backend passes the shared conformance suite against our own server on
 * port 0 (over a real socket), in front of a memory store and a file store; plus
 * client behaviour the suite does not cover: tokens, batching across the limits,
 * witness capabilities, and errors that name the store URL.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ChunkStore } from "../../chunkstore/chunk-store.ts";
import {
  ChunkCorruptError,
  StoreUnavailableError,
  UnauthorizedError,
  UnsupportedOperationError,
} from "../../chunkstore/errors.ts";
import { FileStore } from "../../chunkstore/file-store.ts";
import { HttpStore } from "../../chunkstore/http-store.ts";
import { MAX_BATCH_HASHES, MAX_CHUNK_BYTES } from "../../chunkstore/limits.ts";
import { MemoryStore } from "../../chunkstore/memory-store.ts";
import { createChunkStoreApp } from "../../chunkstore/server.ts";
import { type HttpServer, serveHttp } from "../../runtime/serve-http.ts";
import { describeConformance, randomChunk } from "./conformance.ts";

const servers: HttpServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close().catch(() => {});
});

/** Serves `backend` on 127.0.0.1:0 and returns the server. */
async function serve(
  backend: ChunkStore,
  options: { token?: string; witness?: boolean } = {},
): Promise<HttpServer> {
  const server = await serveHttp(createChunkStoreApp(backend, options).fetch, {
    hostname: "127.0.0.1",
    port: 0,
  });
  servers.push(server);
  return server;
}

/** The backend behind each client, so `corrupt` can reach underneath the server. */
const backends = new WeakMap<ChunkStore, ChunkStore>();

describeConformance("http (memory behind the server)", {
  open: async () => {
    const backend = new MemoryStore();
    const client = await HttpStore.open((await serve(backend)).url);
    backends.set(client, backend);
    return client;
  },
  corrupt: async (store, hash) => (backends.get(store) as MemoryStore).corrupt(hash),
});

describeConformance("http with a bearer token", {
  open: async () =>
    HttpStore.open((await serve(new MemoryStore(), { token: "t0ken.x" })).url, { token: "t0ken.x" }),
});

/** Per client of the file-backed target: its server, backend and directory, for reopen. */
const fileTargets = new WeakMap<ChunkStore, { server: HttpServer; backend: FileStore; dir: string }>();
const fileDirs: string[] = [];
const fileBackends: FileStore[] = [];

// No `corrupt` here: damaging segment files is the file backend's own test; the memory
// target above proves the server and client never pass a corrupt copy on.
async function openFileBacked(dir: string): Promise<ChunkStore> {
  const backend = await FileStore.open(dir, { reserveBytes: 0 });
  fileBackends.push(backend);
  const server = await serve(backend);
  const client = await HttpStore.open(server.url);
  fileTargets.set(client, { server, backend, dir });
  return client;
}

describeConformance("http (file behind the server)", {
  open: async () => {
    const dir = await mkdtemp(join(tmpdir(), "blockmend-http-file-"));
    fileDirs.push(dir);
    return openFileBacked(dir);
  },
  reopen: async (store) => {
    const t = fileTargets.get(store)!;
    await store.close();
    await t.server.close();
    await t.backend.close();
    return openFileBacked(t.dir);
  },
  cleanup: async () => {
    for (const s of servers) await s.close().catch(() => {});
    for (const b of fileBackends) await b.close().catch(() => {});
    for (const dir of fileDirs) await rm(dir, { recursive: true, force: true });
  },
});

describe("HttpStore", () => {
  test("open fails with UnauthorizedError naming the URL when the token is missing or wrong", async () => {
    const server = await serve(new MemoryStore(), { token: "right" });
    for (const token of [undefined, "wrong"]) {
      const err = await HttpStore.open(server.url, { token }).catch((e) => e);
      expect(err).toBeInstanceOf(UnauthorizedError);
      expect(String(err.message)).toContain(server.url);
    }
  });

  test("an unreachable server is StoreUnavailableError naming the URL", async () => {
    const server = await serve(new MemoryStore());
    const url = server.url;
    await server.close();
    const err = await HttpStore.open(url).catch((e) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(String(err.message)).toContain(url);
  });

  test("a client keeps working when its server restarts on the same port (stale keep-alive connections)", async () => {
    const backend = new MemoryStore();
    const first = await serve(backend);
    const store = await HttpStore.open(first.url);
    const a = randomChunk();
    await Promise.all(Array.from({ length: 8 }, () => store.put(a.hash, a.bytes)));
    await first.close();
    const again = await serveHttp(createChunkStoreApp(backend).fetch, {
      hostname: "127.0.0.1",
      port: first.port,
    });
    servers.push(again);
    const b = randomChunk();
    const results = await Promise.all(Array.from({ length: 8 }, () => store.put(b.hash, b.bytes)));
    expect(results.filter((r) => !r.existed).length).toBe(1);
    expect(await store.has([a.hash, b.hash])).toEqual([true, true]);
  });

  test("a request that outlives the timeout is StoreUnavailableError saying so", async () => {
    const server = await serveHttp(
      async () => {
        await Bun.sleep(500);
        return new Response("late");
      },
      { hostname: "127.0.0.1", port: 0 },
    );
    servers.push(server);
    const store = new HttpStore(server.url, { timeoutMs: 50 });
    const err = await store.get(randomChunk().hash).catch((e) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(String(err.message)).toContain("timed out");
    expect(String(err.message)).toContain(server.url);
  });

  test("has, getMany and putMany split inputs larger than one batch", async () => {
    const backend = new MemoryStore();
    const store = await HttpStore.open((await serve(backend)).url);
    const n = MAX_BATCH_HASHES * 2 + 7;
    const chunks = Array.from({ length: n }, (_, i) => randomChunk(32 + (i % 50)));
    const results = await store.putMany(chunks);
    expect(results.every((r) => !r.existed)).toBe(true);
    expect((await backend.stats()).chunks).toBe(n);
    const absent = randomChunk();
    const present = await store.has([...chunks.map((c) => c.hash), absent.hash]);
    expect(present.length).toBe(n + 1);
    expect(present.slice(0, n).every(Boolean)).toBe(true);
    expect(present[n]).toBe(false);
    const back = await store.getMany([absent.hash, ...chunks.map((c) => c.hash)]);
    expect(back[0]).toBeUndefined();
    for (let i = 0; i < n; i++)
      expect(Buffer.from(back[i + 1]!).equals(Buffer.from(chunks[i]!.bytes))).toBe(true);
    expect(results.length).toBe(n);
  });

  test("a batch read larger than one response comes back whole (the server omits, the client asks again)", async () => {
    const backend = new MemoryStore();
    const store = await HttpStore.open((await serve(backend)).url);
    // 20 x 4 MiB is more than MAX_BATCH_BYTES (64 MiB + 64 KiB), so one answer cannot hold it.
    const chunks = Array.from({ length: 20 }, () => randomChunk(MAX_CHUNK_BYTES));
    await store.putMany(chunks);
    const back = await store.getMany(chunks.map((c) => c.hash));
    for (let i = 0; i < chunks.length; i++) {
      expect(Buffer.from(back[i]!).equals(Buffer.from(chunks[i]!.bytes))).toBe(true);
    }
  }, 60_000);

  test("a put of a view into a larger buffer sends only the view", async () => {
    const store = await HttpStore.open((await serve(new MemoryStore())).url);
    const c = randomChunk(3000);
    const big = new Uint8Array(5000);
    big.set(c.bytes, 1000);
    const view = big.subarray(1000, 4000);
    expect(await store.put(c.hash, view)).toEqual({ existed: false });
    expect(Buffer.from(await store.get(c.hash)).equals(Buffer.from(c.bytes))).toBe(true);
    const d = randomChunk(2000);
    big.set(d.bytes, 0);
    expect(await store.putMany([{ hash: d.hash, bytes: big.subarray(0, 2000) }])).toEqual([
      { existed: false },
    ]);
    expect(Buffer.from(await store.get(d.hash)).equals(Buffer.from(d.bytes))).toBe(true);
  });

  test("a corrupt copy among good ones fails getMany with ChunkCorruptError naming that hash", async () => {
    const backend = new MemoryStore();
    const store = await HttpStore.open((await serve(backend)).url);
    const chunks = Array.from({ length: 5 }, () => randomChunk(1000));
    await store.putMany(chunks);
    backend.corrupt(chunks[2]!.hash);
    const err = await store.getMany(chunks.map((c) => c.hash)).catch((e) => e);
    expect(err).toBeInstanceOf(ChunkCorruptError);
    expect(String(err.message)).toContain(chunks[2]!.hash);
    expect((await store.getMany([chunks[0]!.hash]))[0]).toBeDefined();
  });

  test("a witness server reports chunks: false; chunk writes are UnsupportedOperationError; refs work", async () => {
    const store = await HttpStore.open((await serve(new MemoryStore(), { witness: true })).url);
    expect(store.capabilities.chunks).toBe(false);
    expect(store.capabilities.refs).toBe(true);
    const c = randomChunk();
    await expect(store.put(c.hash, c.bytes)).rejects.toBeInstanceOf(UnsupportedOperationError);
    await expect(store.putMany([c])).rejects.toBeInstanceOf(UnsupportedOperationError);
    expect(await store.has([c.hash])).toEqual([false]);
    expect(await store.getMany([c.hash])).toEqual([undefined]);
    const r = await store.casRef("head.w", null, "v1");
    expect(r.ok).toBe(true);
    expect((await store.getRef("head.w"))?.value).toBe("v1");
  });

  test("ref versions and values survive the trip unchanged (unicode, empty, odd versions)", async () => {
    const backend = new MemoryStore();
    const store = await HttpStore.open((await serve(backend)).url);
    const value = '{"name":"vm-ø","emoji":"🦀","empty":""}';
    const created = await store.casRef("head.u:x@y=z", null, value);
    if (!created.ok) throw new Error("create failed");
    expect(await store.getRef("head.u:x@y=z")).toEqual({ value, version: created.version });
    const empty = await store.casRef("head.u:x@y=z", created.version, "");
    if (!empty.ok) throw new Error("update failed");
    expect(await store.getRef("head.u:x@y=z")).toEqual({ value: "", version: empty.version });
    expect(await store.listRefs("head.u")).toEqual(["head.u:x@y=z"]);
    // Deleting an absent ref is a conflict with nothing current.
    expect(await store.deleteRef("head.none", "1")).toEqual({ ok: false, current: null });
  });

  test("stats and list page through the server", async () => {
    const store = await HttpStore.open((await serve(new MemoryStore())).url);
    expect(await store.stats()).toEqual({ chunks: 0, bytes: 0, freeBytes: null });
    const listed: string[] = [];
    for await (const h of store.list()) listed.push(h);
    expect(listed).toEqual([]);
  });

  test("a closed client refuses further requests", async () => {
    const store = await HttpStore.open((await serve(new MemoryStore())).url);
    await store.close();
    await expect(store.has([randomChunk().hash])).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  test("constructor refuses URLs that are not http(s)", () => {
    expect(() => new HttpStore("file:/tmp/x")).toThrow(TypeError);
    expect(() => new HttpStore("http://h:1/?q=1")).toThrow(TypeError);
  });
});
