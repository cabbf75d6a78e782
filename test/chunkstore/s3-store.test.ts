/**
 * The `s3:` backend against a real S3 server (Ceph radosgw from
 * scripts/s3-test-server/start.sh, which scripts/test.sh starts): the shared conformance
 * suite plus S3-specific extras. Without S3_ENDPOINT the file fails; it never skips.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Readable } from "node:stream";
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import * as Minio from "minio";
import type { ChunkStore } from "../../chunkstore/chunk-store.ts";
import { ChunkNotFoundError, StoreUnavailableError } from "../../chunkstore/errors.ts";
import { hashChunk } from "../../chunkstore/hash.ts";
import { S3Store } from "../../chunkstore/s3-store.ts";
import { describeConformance, randomChunk } from "./conformance.ts";

const START_HINT =
  "bash scripts/s3-test-server/start.sh /tmp/blockmend-s3 && source /tmp/blockmend-s3/s3.env";

function randomName(): string {
  return `${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
}

describe("S3Store.fromUrl", () => {
  test("parses bucket, prefix, endpoint and region; the name carries no query", () => {
    const s = S3Store.fromUrl("s3://vm-chunks/site-a/pool1/?endpoint=http://127.0.0.1:7480&region=eu-west-1");
    expect(s.bucket).toBe("vm-chunks");
    expect(s.prefix).toBe("site-a/pool1");
    expect(s.name).toBe("s3://vm-chunks/site-a/pool1");
    expect(S3Store.fromUrl("s3://vm-chunks").name).toBe("s3://vm-chunks");
    expect(s.capabilities).toEqual({ chunks: true, refs: false, persistent: true, sweep: false });
  });

  test("malformed URLs, credentials in the URL and unknown parameters are TypeErrors", () => {
    for (const bad of [
      "http://bucket/x",
      "s3://",
      "s3://ab/x",
      "s3://key:secret@bucket/x",
      "s3://bucket/x?endpoint=ftp://h",
      "s3://bucket/x?endpiont=http://h",
    ]) {
      expect(() => S3Store.fromUrl(bad)).toThrow(TypeError);
    }
    expect(() => new S3Store("bucket", "a/../x")).toThrow(TypeError);
  });
});

describe("S3Store with a dead endpoint", () => {
  test("fails fast with StoreUnavailableError naming the store", async () => {
    const store = S3Store.fromUrl("s3://blockmend-dead/p?endpoint=http://127.0.0.1:1&region=us-east-1", {
      credentials: { accessKeyId: "x", secretAccessKey: "y" },
      maxAttempts: 1,
      connectTimeoutMs: 1000,
      timeoutMs: 2000,
    });
    const c = randomChunk(100);
    const started = performance.now();
    for (const op of [
      () => store.has([c.hash]),
      () => store.get(c.hash),
      () => store.put(c.hash, c.bytes),
      () => store.stats(),
    ]) {
      const err = await op().catch((e) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(String(err.message)).toContain('"s3://blockmend-dead/p"');
      expect(err.cause).toBeDefined();
    }
    expect(performance.now() - started).toBeLessThan(5000);
    await store.close();
    const closed = await store.has([c.hash]).catch((e) => e);
    expect(closed).toBeInstanceOf(StoreUnavailableError);
  });
});

const env = {
  S3_ENDPOINT: process.env.S3_ENDPOINT,
  AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID,
  AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY,
  AWS_REGION: process.env.AWS_REGION,
};
const missing = Object.entries(env)
  .filter(([, v]) => !v)
  .map(([k]) => k);

if (missing.length > 0) {
  // A missing server is a failure, never a silent skip (STYLE.md: tools a test needs).
  test("the S3 test server is configured", () => {
    throw new Error(
      `${missing.join(", ")} not set: the s3 backend tests need a running S3 server. ` +
        `Run them through scripts/test.sh (which starts one), or start one yourself:\n  ${START_HINT}\n` +
        "then run bun test again in that shell.",
    );
  });
} else {
  const endpoint = env.S3_ENDPOINT!;
  const region = env.AWS_REGION!;
  const credentials = { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! };
  const bucket = `blockmend-test-${randomName()}`;
  const admin = new S3Client({ endpoint, region, credentials, forcePathStyle: true });
  let bucketReady: Promise<unknown> | undefined;
  const ensureBucket = () => (bucketReady ??= admin.send(new CreateBucketCommand({ Bucket: bucket })));
  const urls = new Map<ChunkStore, string>();

  /** A store on a fresh random prefix of the run's bucket, opened from its URL as an operator would. */
  async function open(options: Parameters<typeof S3Store.fromUrl>[1] = {}): Promise<S3Store> {
    await ensureBucket();
    const url = `s3://${bucket}/run-${randomName()}?endpoint=${endpoint}&region=${region}`;
    const store = S3Store.fromUrl(url, { credentials, ...options });
    urls.set(store, url);
    return store;
  }

  /** The documented layout: `<prefix>/chunks/<first 2 hex>/<hash>`. */
  const keyOf = (store: S3Store, hash: string) => `${store.prefix}/chunks/${hash.slice(0, 2)}/${hash}`;

  async function deleteBucket(): Promise<void> {
    if (!bucketReady) return;
    let token: string | undefined;
    do {
      // Up to 1000 keys per page, the DeleteObjects limit too: one delete request per page.
      const page = await admin.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
      if (keys.length > 0) {
        const out = await admin.send(
          new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }),
        );
        if (out.Errors?.length)
          throw new Error(`Cannot empty test bucket ${bucket}: ${JSON.stringify(out.Errors[0])}`);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    await admin.send(new DeleteBucketCommand({ Bucket: bucket }));
    admin.destroy();
  }

  // Registered before the conformance suite, whose cleanup deletes the bucket.
  describe("S3Store (s3-specific)", () => {
    const stores: S3Store[] = [];
    const track = (s: S3Store) => {
      stores.push(s);
      return s;
    };
    afterAll(async () => {
      for (const s of stores) await s.close();
    });

    test("the layout is plain S3 objects that another client (minio) lists and reads", async () => {
      const s = track(await open());
      const chunks = Array.from({ length: 5 }, (_, i) => randomChunk(3000 + i));
      await s.putMany(chunks);
      const u = new URL(endpoint);
      const minio = new Minio.Client({
        endPoint: u.hostname,
        port: Number(u.port || (u.protocol === "https:" ? 443 : 80)),
        useSSL: u.protocol === "https:",
        accessKey: credentials.accessKeyId,
        secretKey: credentials.secretAccessKey,
        region,
        pathStyle: true,
      });
      const listed: { name: string; size: number }[] = [];
      for await (const o of minio.listObjectsV2(bucket, `${s.prefix}/`, true)) {
        listed.push({ name: o.name!, size: o.size });
      }
      const expected = chunks
        .map((c) => ({ name: keyOf(s, c.hash), size: c.bytes.byteLength }))
        .sort((a, b) => (a.name < b.name ? -1 : 1));
      expect(listed).toEqual(expected);
      const body = await minio.getObject(bucket, keyOf(s, chunks[0]!.hash));
      const parts: Buffer[] = [];
      for await (const part of body) parts.push(part as Buffer);
      expect(hashChunk(new Uint8Array(Buffer.concat(parts)))).toBe(chunks[0]!.hash);
    });

    test("list and stats page through more than one ListObjectsV2 page (1000 keys)", async () => {
      const s = track(await open());
      const chunks = Array.from({ length: 1100 }, (_, i) => randomChunk(16 + (i % 7)));
      await s.putMany(chunks);
      const hashes = chunks.map((c) => c.hash).sort();
      const listed: string[] = [];
      for await (const h of s.list()) listed.push(h);
      expect(listed).toEqual(hashes);
      const after: string[] = [];
      for await (const h of s.list({ after: hashes[50]! })) after.push(h);
      expect(after).toEqual(hashes.slice(51));
      const st = await s.stats();
      expect(st).toEqual({
        chunks: 1100,
        bytes: chunks.reduce((n, c) => n + c.bytes.byteLength, 0),
        freeBytes: null,
      });
    }, 60_000);

    test("objects outside the layout under the prefix are ignored by list and stats", async () => {
      const s = track(await open());
      const c = randomChunk(500);
      await s.put(c.hash, c.bytes);
      for (const stray of [
        "chunks/readme.txt",
        `chunks/zz/${c.hash}`,
        `chunks/${c.hash.slice(0, 2)}/short`,
      ]) {
        await admin.send(new PutObjectCommand({ Bucket: bucket, Key: `${s.prefix}/${stray}`, Body: "x" }));
      }
      const listed: string[] = [];
      for await (const h of s.list()) listed.push(h);
      expect(listed).toEqual([c.hash]);
      expect((await s.stats()).chunks).toBe(1);
    });

    test("a missing bucket is StoreUnavailableError, not a missing chunk", async () => {
      const s = track(
        S3Store.fromUrl(`s3://blockmend-missing-${randomName()}/p?endpoint=${endpoint}&region=${region}`, {
          credentials,
        }),
      );
      const c = randomChunk(100);
      const put = await s.put(c.hash, c.bytes).catch((e) => e);
      expect(put).toBeInstanceOf(StoreUnavailableError);
      expect(String(put.message)).toContain("NoSuchBucket");
      const got = await s.get(c.hash).catch((e) => e);
      expect(got).toBeInstanceOf(StoreUnavailableError);
      expect(got).not.toBeInstanceOf(ChunkNotFoundError);
    });

    test("a server that answers If-None-Match with 501 gets Head-then-Put, remembered per store", async () => {
      // Wraps the SDK's own HTTP handler: conditional PUTs get 501 NotImplemented, as from
      // an S3-compatible server without conditional writes; everything else goes through.
      const inner = new S3Client({ endpoint, region, credentials, forcePathStyle: true }).config
        .requestHandler;
      let refused = 0;
      const requestHandler = {
        handle(request: { method: string; headers: Record<string, string> }, options: unknown) {
          if (request.method === "PUT" && request.headers["if-none-match"] !== undefined) {
            refused++;
            const xml =
              '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code>' +
              "<Message>A header you provided implies functionality that is not implemented</Message></Error>";
            return Promise.resolve({
              response: {
                statusCode: 501,
                reason: "Not Implemented",
                headers: { "content-type": "application/xml" },
                body: Readable.from([Buffer.from(xml)]),
              },
            });
          }
          return (inner as { handle: (r: unknown, o: unknown) => Promise<unknown> }).handle(request, options);
        },
        destroy: () => (inner as { destroy?: () => void }).destroy?.(),
      } as unknown as S3ClientConfig["requestHandler"];
      const s = track(await open({ clientConfig: { requestHandler }, maxAttempts: 1 }));
      const a = randomChunk(2000);
      const b = randomChunk(2000);
      expect(await s.put(a.hash, a.bytes)).toEqual({ existed: false });
      expect(await s.put(a.hash, a.bytes)).toEqual({ existed: true });
      expect(await s.putMany([a, b])).toEqual([{ existed: true }, { existed: false }]);
      expect(refused).toBe(1);
      expect(Buffer.from(await s.get(b.hash)).equals(Buffer.from(b.bytes))).toBe(true);
    });

    test("refs are refused with UnsupportedOperationError naming the store", async () => {
      const s = track(await open());
      const err = await s.listRefs().catch((e) => e);
      expect(String(err.message)).toContain(s.name);
      expect(err.name).toBe("UnsupportedOperationError");
    });
  });

  describeConformance("s3", {
    open: () => open(),
    reopen: async (store) => {
      await store.close();
      const url = urls.get(store)!;
      const again = S3Store.fromUrl(url, { credentials });
      urls.set(again, url);
      return again;
    },
    corrupt: async (store, hash) => {
      const other = randomChunk(8192).bytes;
      await admin.send(
        new PutObjectCommand({ Bucket: bucket, Key: keyOf(store as S3Store, hash), Body: other }),
      );
    },
    cleanup: deleteBucket,
  });
}
