/**
 * Hash once, verify at trust boundaries (`chunkstore/hashed-here.ts`): a store in this
 * process skips hashing only the very array remembered with that very hash; a store
 * server still hashes what it receives; and a read always re-hashes, so even a caller's
 * wrong memory is refused on the way out, never served.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChunkCorruptError, HashMismatchError } from "../../chunkstore/errors.ts";
import { FileStore } from "../../chunkstore/file-store.ts";
import { hashChunk } from "../../chunkstore/hash.ts";
import { hashedBlock, hashedHere, rememberHash } from "../../chunkstore/hashed-here.ts";
import { HttpStore } from "../../chunkstore/http-store.ts";
import { MemoryStore } from "../../chunkstore/memory-store.ts";
import { createChunkStoreApp } from "../../chunkstore/server.ts";
import { serveHttp } from "../../runtime/serve-http.ts";
import { hashBlocks } from "../../workers/hash-task.ts";
import { randomChunk } from "./conformance.ts";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test("hashedBlock pairs each block with its hash, remembered; a hole is null", () => {
  const data = new Uint8Array(3 * 4096);
  crypto.getRandomValues(data.subarray(0, 4096));
  crypto.getRandomValues(data.subarray(8192));
  const out = hashBlocks({ data, blockSize: 4096, zeroIsHole: true });
  const [a, hole, c] = [0, 1, 2].map((k) => hashedBlock(out, k, 4096));
  expect(hole).toBeNull();
  expect(a!.hash).toBe(hashChunk(data.subarray(0, 4096)));
  expect(c!.bytes.byteLength).toBe(4096);
  expect(hashedHere(a!.bytes, a!.hash)).toBe(true);
  expect(hashedHere(a!.bytes, c!.hash)).toBe(false);
  expect(hashedHere(data.subarray(0, 4096), a!.hash)).toBe(false); // another array object
});

test("a file store trusts only the remembered array with its own hash", async () => {
  const dir = await mkdtemp(join(tmpdir(), "bm-hashed-"));
  dirs.push(dir);
  const store = await FileStore.open(dir);
  try {
    const good = randomChunk(65536);
    rememberHash(good.bytes, good.hash);
    expect(await store.put(good.hash, good.bytes)).toEqual({ existed: false });
    expect(await store.get(good.hash)).toEqual(good.bytes);

    const other = randomChunk(65536);
    // A copy of remembered bytes, or the remembered array under another hash: hashed, refused.
    await expect(store.put(other.hash, good.bytes.slice())).rejects.toBeInstanceOf(HashMismatchError);
    await expect(store.put(other.hash, good.bytes)).rejects.toBeInstanceOf(HashMismatchError);
    expect(await store.has([other.hash])).toEqual([false]);

    // A caller that remembered wrongly (a bug) gets its put through, but the read refuses it.
    const wrong = randomChunk(65536);
    rememberHash(wrong.bytes, other.hash);
    await store.put(other.hash, wrong.bytes);
    await expect(store.get(other.hash)).rejects.toBeInstanceOf(ChunkCorruptError);
  } finally {
    await store.close();
  }
});

test("the trust never crosses a process boundary: the store server hashes what it receives", async () => {
  const backend = new MemoryStore();
  const server = await serveHttp(createChunkStoreApp(backend, {}).fetch, { hostname: "127.0.0.1", port: 0 });
  try {
    const client = await HttpStore.open(server.url);
    const good = randomChunk(4096);
    const wrong = randomChunk(4096);
    rememberHash(wrong.bytes, good.hash); // the client side skips its own check...
    await expect(client.put(good.hash, wrong.bytes)).rejects.toBeInstanceOf(HashMismatchError); // ...the server refuses
    expect(await backend.has([good.hash])).toEqual([false]);
    rememberHash(good.bytes, good.hash);
    expect(await client.put(good.hash, good.bytes)).toEqual({ existed: false });
    expect(await client.get(good.hash)).toEqual(good.bytes);
    await client.close();
  } finally {
    await server.close();
  }
});
