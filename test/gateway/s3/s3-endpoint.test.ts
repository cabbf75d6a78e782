/**
 * The S3 endpoint in this process (memory stores, a real loopback listener) driven by the
 * AWS SDK and by hand-signed requests: imports, seams, holes, dedup, conditions, listings,
 * authentication failures, aws-chunked signing and checksums, unsupported operations.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, createHmac } from "node:crypto";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectAclCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { referencedChunks } from "../../../gateway/gc/mark.ts";
import { UPLOAD_EXPIRY_MS } from "../../../gateway/s3/multipart-uploads.ts";
import { formatAmzDate } from "../../../gateway/s3/sigv4-verifier.ts";
import {
  ACCESS_KEY,
  pattern,
  REGION,
  type S3Fixture,
  SECRET,
  signedFetch,
  startS3Fixture,
  testSigner,
} from "./_s3-fixture.ts";

const MiB = 1024 * 1024;
let fx: S3Fixture;
let s3: S3Client;

beforeAll(async () => {
  fx = await startS3Fixture({ domain: "s3.test" });
  s3 = fx.client();
});
afterAll(async () => {
  await fx.close();
});

async function getBytes(key: string, range?: string): Promise<Uint8Array> {
  const r = await s3.send(new GetObjectCommand({ Bucket: "images", Key: key, Range: range }));
  return r.Body!.transformToByteArray();
}

async function errorOf(
  p: Promise<unknown>,
): Promise<{ name: string; status: number | undefined; message: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as { name: string; message: string; $metadata?: { httpStatusCode?: number } };
    return { name: e.name, status: e.$metadata?.httpStatusCode, message: e.message };
  }
  throw new Error("expected the request to fail");
}

async function chunkCount(): Promise<number> {
  let n = 0;
  for (const m of fx.service.ctx.stores.dataMembers) n += (await m.store.stats()).chunks;
  return n;
}

/** Uploads `parts` (in `order` of part numbers) as one multipart upload of `key`. */
async function multipart(key: string, parts: Uint8Array[], order = parts.map((_, i) => i)): Promise<string> {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: "images", Key: key }));
  const etags: string[] = [];
  for (const i of order) {
    const r = await s3.send(
      new UploadPartCommand({ Bucket: "images", Key: key, UploadId, PartNumber: i + 1, Body: parts[i] }),
    );
    etags[i] = r.ETag!;
  }
  const done = await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: "images",
      Key: key,
      UploadId,
      MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
    }),
  );
  return done.ETag!;
}

describe("imports", () => {
  test("a PUT reads back byte for byte, sized up to whole 512-byte sectors", async () => {
    const data = pattern(3 * MiB + 1000, 1);
    const put = await s3.send(new PutObjectCommand({ Bucket: "images", Key: "put1", Body: data }));
    const head = await s3.send(new HeadObjectCommand({ Bucket: "images", Key: "put1" }));
    expect(head.ContentLength).toBe(3 * MiB + 1024);
    expect(head.ETag).toBe(put.ETag);
    const back = await getBytes("put1");
    expect(Buffer.compare(back.subarray(0, data.byteLength), data)).toBe(0);
    expect(back.subarray(data.byteLength).every((b) => b === 0)).toBe(true);
    expect(Buffer.compare(await getBytes("put1", "bytes=65000-200000"), data.subarray(65000, 200001))).toBe(
      0,
    );
  });

  test("multipart parts of sizes that are not whole chunks, uploaded out of order, join at the seams", async () => {
    const sizes = [5_000_001, 65_535, 1, 3_333_333, 70_000];
    const parts = sizes.map((n, i) => pattern(n, 10 + i));
    const whole = Buffer.concat(parts);
    await multipart("seams", parts, [3, 1, 4, 0, 2]);
    const back = await getBytes("seams");
    expect(back.byteLength).toBe(Math.ceil(whole.byteLength / 512) * 512);
    expect(Buffer.compare(back.subarray(0, whole.byteLength), whole)).toBe(0);
  });

  test("multipart parts sent in order with odd sizes are cut at their true offsets", async () => {
    const parts = [pattern(5 * MiB + 7, 20), pattern(5 * MiB + 9, 21), pattern(123, 22)];
    await multipart("inorder", parts);
    const whole = Buffer.concat(parts);
    expect(Buffer.compare((await getBytes("inorder")).subarray(0, whole.byteLength), whole)).toBe(0);
  });

  test("zero blocks become holes and chunks already stored are not stored again", async () => {
    const data = new Uint8Array(4 * MiB);
    data.set(pattern(100_000, 30), MiB);
    const before = await chunkCount();
    await s3.send(new PutObjectCommand({ Bucket: "images", Key: "sparse", Body: data }));
    const afterFirst = await chunkCount();
    const image = await fx.service.open("sparse");
    try {
      const extents = await image.blockStatus(0, image.size);
      expect(extents.filter((e) => e.hole).reduce((n, e) => n + e.length, 0)).toBe(4 * MiB - 2 * 65536);
    } finally {
      await fx.service.release(image);
    }
    // Two data chunks (2 copies each) plus one map page (2 copies).
    expect(afterFirst - before).toBe(6);
    await multipart("sparse-again", [data.subarray(0, 2 * MiB), data.subarray(2 * MiB)]);
    expect(await chunkCount()).toBe(afterFirst);
    expect(Buffer.compare(await getBytes("sparse-again"), data)).toBe(0);
  });

  test("If-None-Match: * on an existing key answers 412; a plain PUT replaces the image", async () => {
    await s3.send(new PutObjectCommand({ Bucket: "images", Key: "cond", Body: pattern(4096, 40) }));
    const e = await errorOf(
      s3.send(
        new PutObjectCommand({ Bucket: "images", Key: "cond", Body: pattern(4096, 41), IfNoneMatch: "*" }),
      ),
    );
    expect(e.status).toBe(412);
    await s3.send(new PutObjectCommand({ Bucket: "images", Key: "cond", Body: pattern(8192, 42) }));
    expect(Buffer.compare(await getBytes("cond"), pattern(8192, 42))).toBe(0);
  });

  test("a PUT over or a DELETE of an attached image answers 409 naming the reason; snapshots and detached images delete", async () => {
    await s3.send(new PutObjectCommand({ Bucket: "images", Key: "attached", Body: pattern(65536, 50) }));
    const image = await fx.service.open("attached");
    try {
      await image.snapshot("s1");
      const put = await errorOf(
        s3.send(new PutObjectCommand({ Bucket: "images", Key: "attached", Body: pattern(512, 1) })),
      );
      expect(put).toMatchObject({ name: "ImageAttached", status: 409 });
      expect(put.message).toContain("attached for writing");
      const del = await errorOf(s3.send(new DeleteObjectCommand({ Bucket: "images", Key: "attached" })));
      expect(del).toMatchObject({ name: "ImageAttached", status: 409 });
      expect(Buffer.compare(await getBytes("attached@s1"), pattern(65536, 50))).toBe(0);
      await s3.send(new DeleteObjectCommand({ Bucket: "images", Key: "attached@s1" }));
      expect((await errorOf(getBytes("attached@s1"))).status).toBe(404);
    } finally {
      await fx.service.release(image);
    }
    await s3.send(new DeleteObjectCommand({ Bucket: "images", Key: "attached" }));
    expect((await errorOf(getBytes("attached"))).name).toBe("NoSuchKey");
  });

  test("multipart uploads are listed, their parts too, and abort and expiry end them", async () => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: "images", Key: "mpu" }));
    await s3.send(
      new UploadPartCommand({
        Bucket: "images",
        Key: "mpu",
        UploadId,
        PartNumber: 2,
        Body: pattern(1000, 1),
      }),
    );
    const parts = await s3.send(new ListPartsCommand({ Bucket: "images", Key: "mpu", UploadId }));
    expect(parts.Parts?.map((p) => [p.PartNumber, p.Size])).toEqual([[2, 1000]]);
    const list = await s3.send(new ListMultipartUploadsCommand({ Bucket: "images" }));
    expect(list.Uploads?.map((u) => u.UploadId)).toContain(UploadId);
    await s3.send(new AbortMultipartUploadCommand({ Bucket: "images", Key: "mpu", UploadId }));
    expect(
      (await errorOf(s3.send(new ListPartsCommand({ Bucket: "images", Key: "mpu", UploadId })))).name,
    ).toBe("NoSuchUpload");
    const second = await s3.send(new CreateMultipartUploadCommand({ Bucket: "images", Key: "mpu" }));
    fx.skew = UPLOAD_EXPIRY_MS + 60_000;
    try {
      fx.s3.uploads.sweep();
    } finally {
      fx.skew = 0;
    }
    expect(fx.s3.uploads.list().map((u) => u.id)).not.toContain(second.UploadId!);
    expect(fx.s3.uploads.stagedBytes).toBe(0);
  });
});

describe("imports while stores change", () => {
  test("a store entering maintenance between the parts and the completion: the import puts its chunks again past it and lands whole", async () => {
    const f = await startS3Fixture({ minReplicas: 2 }); // every chunk must have 2 copies outside maintenance
    try {
      const client = f.client();
      const parts = [pattern(3 * MiB, 71), pattern(2 * MiB + 4096, 72)];
      const { UploadId } = await client.send(
        new CreateMultipartUploadCommand({ Bucket: "images", Key: "moving" }),
      );
      const etags: string[] = [];
      for (const [i, body] of parts.entries()) {
        const r = await client.send(
          new UploadPartCommand({ Bucket: "images", Key: "moving", UploadId, PartNumber: i + 1, Body: body }),
        );
        etags.push(r.ETag!);
      }
      await f.core.setMaintenance("b", true); // chunks placed on b now lack a copy
      await client.send(
        new CompleteMultipartUploadCommand({
          Bucket: "images",
          Key: "moving",
          UploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        }),
      );
      const image = await f.service.open("moving");
      try {
        expect(Buffer.compare(await image.read(0, 5 * MiB + 4096), Buffer.concat(parts))).toBe(0);
      } finally {
        await f.service.release(image);
      }
      // Without b, a and c hold every chunk of it (pages and data): it would survive b's removal.
      const referenced = [...(await referencedChunks(f.core))];
      expect(referenced.length).toBeGreaterThan(80);
      for (const id of ["a", "c"]) {
        const has = await f.core.stores.member(id)!.store.has(referenced);
        expect(`${id}: ${has.filter((x) => !x).length} missing`).toBe(`${id}: 0 missing`);
      }
    } finally {
      await f.close();
    }
  });
});

describe("reads", () => {
  test("a GET of an image with small writes (patch stacks) and of its snapshot returns each version's bytes", async () => {
    const base = pattern(MiB, 70);
    await s3.send(new PutObjectCommand({ Bucket: "images", Key: "patched", Body: base }));
    const now = base.slice();
    await fx.service.withImage("patched", async (img) => {
      for (let k = 0; k < 12; k++) {
        const data = pattern(700, 71 + k);
        const off = (k % 4) * 65536 + k * 3001;
        await img.write(off, data, { fua: true });
        now.set(data, off);
      }
    });
    await fx.service.snapshot("patched", "s1");
    const atSnapshot = now.slice();
    await fx.service.withImage("patched", async (img) => {
      const data = pattern(900, 90);
      await img.write(65536 + 100, data, { fua: true });
      now.set(data, 65536 + 100);
    });
    expect(Buffer.compare(await getBytes("patched"), now)).toBe(0);
    expect(Buffer.compare(await getBytes("patched@s1"), atSnapshot)).toBe(0);
    expect(Buffer.compare(await getBytes("patched", "bytes=65000-70000"), now.subarray(65000, 70001))).toBe(
      0,
    );
  });

  test("conditional GETs: If-None-Match 304, If-Match 412, If-Modified-Since 304, a range past the end 416", async () => {
    const put = await s3.send(
      new PutObjectCommand({ Bucket: "images", Key: "condget", Body: pattern(10_240, 60) }),
    );
    const etag = put.ETag!;
    expect(
      (await errorOf(s3.send(new GetObjectCommand({ Bucket: "images", Key: "condget", IfNoneMatch: etag }))))
        .status,
    ).toBe(304);
    expect(
      (await errorOf(s3.send(new GetObjectCommand({ Bucket: "images", Key: "condget", IfMatch: '"00"' }))))
        .status,
    ).toBe(412);
    const later = new Date(Date.now() + 3600_000);
    expect(
      (
        await errorOf(
          s3.send(new GetObjectCommand({ Bucket: "images", Key: "condget", IfModifiedSince: later })),
        )
      ).status,
    ).toBe(304);
    expect(
      (
        await errorOf(
          s3.send(new GetObjectCommand({ Bucket: "images", Key: "condget", IfUnmodifiedSince: new Date(0) })),
        )
      ).status,
    ).toBe(412);
    const r = await s3.send(
      new GetObjectCommand({ Bucket: "images", Key: "condget", IfMatch: etag, Range: "bytes=-100" }),
    );
    expect(r.ContentRange).toBe("bytes 10140-10239/10240");
    expect(Buffer.compare(await r.Body!.transformToByteArray(), pattern(10_240, 60).subarray(10_140))).toBe(
      0,
    );
    expect((await errorOf(getBytes("condget", "bytes=10240-"))).name).toBe("InvalidRange");
  });

  test("ListObjectsV2 pages with prefix, delimiter, start-after and continuation tokens in UTF-8 order; v1 with markers", async () => {
    for (const name of ["lst-b", "lst-a", "lst-A", "lst-a.x", "lst-a_1", "lst-9"]) {
      await fx.service.create(name, 4096);
    }
    await fx.service.withImage("lst-a", (img) => img.snapshot("snap1"));
    const expected = ["lst-9", "lst-A", "lst-a", "lst-a.x", "lst-a@snap1", "lst-a_1", "lst-b"];
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({ Bucket: "images", Prefix: "lst-", MaxKeys: 3, ContinuationToken: token }),
      );
      keys.push(...(page.Contents ?? []).map((c) => c.Key!));
      expect(page.KeyCount).toBeLessThanOrEqual(3);
      token = page.NextContinuationToken;
    } while (token);
    expect(keys).toEqual(expected);
    const withDelim = await s3.send(
      new ListObjectsV2Command({ Bucket: "images", Prefix: "lst-a", Delimiter: "@" }),
    );
    expect(withDelim.CommonPrefixes?.map((p) => p.Prefix)).toEqual(["lst-a@"]);
    expect(withDelim.Contents?.map((c) => c.Key)).toEqual(["lst-a", "lst-a.x", "lst-a_1"]);
    const after = await s3.send(
      new ListObjectsV2Command({ Bucket: "images", Prefix: "lst-", StartAfter: "lst-a_1" }),
    );
    expect(after.Contents?.map((c) => c.Key)).toEqual(["lst-b"]);
    const v1 = await s3.send(
      new ListObjectsCommand({ Bucket: "images", Prefix: "lst-", Marker: "lst-a.x", MaxKeys: 2 }),
    );
    expect(v1.Contents?.map((c) => c.Key)).toEqual(["lst-a@snap1", "lst-a_1"]);
    expect(v1.IsTruncated).toBe(true);
    const entry = (await s3.send(new ListObjectsV2Command({ Bucket: "images", Prefix: "lst-a@" })))
      .Contents![0]!;
    const head = await fx.service.info("lst-a");
    expect(entry.Size).toBe(4096);
    expect(entry.ETag).toBe(`"${head.snapshots.snap1!.root}"`);
    expect(entry.LastModified?.getTime()).toBe(
      Math.floor(Date.parse(head.snapshots.snap1!.createdAt) / 1000) * 1000,
    );
  });

  test("virtual-host style addresses the bucket by the Host header under --s3-domain", async () => {
    await s3.send(new PutObjectCommand({ Bucket: "images", Key: "vhost", Body: pattern(2048, 70) }));
    const res = await signedFetch(fx.url, "GET", "/vhost", { headers: { host: "images.s3.test" } });
    expect(res.status).toBe(200);
    expect(Buffer.compare(new Uint8Array(await res.arrayBuffer()), pattern(2048, 70))).toBe(0);
    const other = await signedFetch(fx.url, "GET", "/vhost", { headers: { host: "other.s3.test" } });
    expect(other.status).toBe(404);
    expect(await other.text()).toContain("<Code>NoSuchBucket</Code>");
  });
});

describe("authentication", () => {
  test("a wrong secret, an unknown key, an unsigned request and a skewed clock are refused with S3 codes", async () => {
    expect(
      await errorOf(
        fx
          .client({ secret: "wrong-secret-123" })
          .send(new HeadObjectCommand({ Bucket: "images", Key: "put1" })),
      ),
    ).toMatchObject({ status: 403 });
    const wrong = await errorOf(
      fx.client({ secret: "wrong-secret-123" }).send(new ListObjectsV2Command({ Bucket: "images" })),
    );
    expect(wrong.name).toBe("SignatureDoesNotMatch");
    const unknown = await errorOf(
      fx.client({ accessKeyId: "NOBODY" }).send(new ListObjectsV2Command({ Bucket: "images" })),
    );
    expect(unknown.name).toBe("InvalidAccessKeyId");
    const unsigned = await fetch(`${fx.url}/images/put1`);
    expect(unsigned.status).toBe(403);
    expect(await unsigned.text()).toContain("<Code>AccessDenied</Code>");
    const skewed = await signedFetch(fx.url, "GET", "/images/put1", {
      signingDate: new Date(Date.now() - 20 * 60_000),
    });
    expect(skewed.status).toBe(403);
    expect(await skewed.text()).toContain("<Code>RequestTimeTooSkewed</Code>");
  });

  test("presigned GETs work until they expire; a forged signature is refused", async () => {
    const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: "images", Key: "put1" }), {
      expiresIn: 60,
    });
    const ok = await fetch(url);
    expect(ok.status).toBe(200);
    expect((await ok.arrayBuffer()).byteLength).toBe(3 * MiB + 1024);
    const forged = url.replace(
      /X-Amz-Signature=([0-9a-f]+)/,
      (_, s: string) => `X-Amz-Signature=${s.slice(0, -1)}${s.endsWith("0") ? "1" : "0"}`,
    );
    const bad = await fetch(forged);
    expect(bad.status).toBe(403);
    expect(await bad.text()).toContain("<Code>SignatureDoesNotMatch</Code>");
    fx.skew = 61_000;
    try {
      const expired = await fetch(url);
      expect(expired.status).toBe(403);
      expect(await expired.text()).toContain("Request has expired");
    } finally {
      fx.skew = 0;
    }
  });

  test("STREAMING-AWS4-HMAC-SHA256-PAYLOAD: each chunk signature is verified; a tampered chunk is refused", async () => {
    const data = pattern(150_000, 80);
    const send = async (tamper: boolean) => {
      const date = new Date();
      const longDate = formatAmzDate(date);
      const scope = `${longDate.slice(0, 8)}/${REGION}/s3/aws4_request`;
      const chunks = [
        data.subarray(0, 65536),
        data.subarray(65536, 131072),
        data.subarray(131072),
        new Uint8Array(0),
      ];
      const encodedLength = chunks.reduce(
        (n, c) => n + c.byteLength.toString(16).length + 17 + 64 + 2 + c.byteLength + 2,
        0,
      );
      const url = new URL("/images/streamed", fx.url);
      const headers = {
        host: url.host,
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "x-amz-decoded-content-length": String(data.byteLength),
        "content-encoding": "aws-chunked",
        "content-length": String(encodedLength),
      };
      const signed = await testSigner().sign(
        { method: "PUT", protocol: "http:", hostname: url.hostname, path: url.pathname, query: {}, headers },
        { signingDate: date },
      );
      let previous = /Signature=([0-9a-f]+)/.exec(String(signed.headers.authorization))![1]!;
      // An independent chunk signer (the AWS documentation's algorithm), not the endpoint's code.
      const key = [`20${longDate.slice(2, 8)}`, REGION, "s3", "aws4_request"].reduce<Buffer>(
        (k, part) => createHmac("sha256", k).update(part).digest(),
        Buffer.from(`AWS4${SECRET}`),
      );
      const body: Buffer[] = [];
      for (const c of chunks) {
        const sts = [
          "AWS4-HMAC-SHA256-PAYLOAD",
          longDate,
          scope,
          previous,
          createHash("sha256").update("").digest("hex"),
          createHash("sha256").update(c).digest("hex"),
        ].join("\n");
        previous = createHmac("sha256", key).update(sts).digest("hex");
        const sent = Buffer.from(c);
        if (tamper && c.byteLength === 65536 && body.length === 0) sent[100] = sent[100]! ^ 1;
        body.push(
          Buffer.from(`${c.byteLength.toString(16)};chunk-signature=${previous}\r\n`),
          sent,
          Buffer.from("\r\n"),
        );
      }
      return fetch(url, {
        method: "PUT",
        headers: signed.headers as Record<string, string>,
        body: Buffer.concat(body),
      });
    };
    const ok = await send(false);
    expect(ok.status).toBe(200);
    expect(Buffer.compare((await getBytes("streamed")).subarray(0, data.byteLength), data)).toBe(0);
    const bad = await send(true);
    expect(bad.status).toBe(403);
    expect(await bad.text()).toContain("<Code>SignatureDoesNotMatch</Code>");
  });

  test("a wrong x-amz-checksum-crc32 header and a wrong trailing checksum are BadDigest", async () => {
    const data = pattern(5000, 90);
    const header = await signedFetch(fx.url, "PUT", "/images/crc", {
      body: data,
      headers: { "x-amz-checksum-crc32": "AAAAAA==" },
    });
    expect(header.status).toBe(400);
    expect(await header.text()).toContain("<Code>BadDigest</Code>");
    const body = Buffer.concat([
      Buffer.from(`${data.byteLength.toString(16)}\r\n`),
      data,
      Buffer.from("\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"),
    ]);
    const trailer = await signedFetch(fx.url, "PUT", "/images/crc", {
      body,
      headers: {
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": String(data.byteLength),
        "x-amz-trailer": "x-amz-checksum-crc32",
      },
    });
    expect(trailer.status).toBe(400);
    expect(await trailer.text()).toContain("<Code>BadDigest</Code>");
    expect((await errorOf(getBytes("crc"))).name).toBe("NoSuchKey");
  });
});

describe("unsupported operations", () => {
  test("ACLs, tagging, versioning and CopyObject answer NotImplemented (501) as S3 XML; other buckets NoSuchBucket", async () => {
    await s3.send(new PutObjectCommand({ Bucket: "images", Key: "ni", Body: pattern(512, 1) }));
    for (const cmd of [
      new PutObjectAclCommand({ Bucket: "images", Key: "ni", ACL: "private" }),
      new GetObjectTaggingCommand({ Bucket: "images", Key: "ni" }),
      new GetBucketVersioningCommand({ Bucket: "images" }),
      new CopyObjectCommand({ Bucket: "images", Key: "ni2", CopySource: "images/ni" }),
    ]) {
      expect(await errorOf(s3.send(cmd as never))).toMatchObject({ name: "NotImplemented", status: 501 });
    }
    expect((await errorOf(s3.send(new ListObjectsV2Command({ Bucket: "other" })))).name).toBe("NoSuchBucket");
    const raw = await signedFetch(fx.url, "GET", "/images/ni", { query: { acl: "" } });
    expect(raw.headers.get("content-type")).toBe("application/xml");
    expect(await raw.text()).toContain("<Code>NotImplemented</Code>");
    void ACCESS_KEY;
  });
});
