/**
 * A stand-in S3 server over a {@link MemoryObjectStore}, for tests that need a real
 * gateway process to run a backup job (its S3ObjectStore, through @aws-sdk/client-s3)
 * where no radosgw runs. It answers only what S3ObjectStore sends, path style, for one
 * bucket: GetObject (with Range), HeadObject, PutObject (If-None-Match: * and If-Match,
 * answered 412 as S3 does), DeleteObject, ListObjectsV2 (one page). Signatures are not
 * checked. Not a general S3: the backups against a real server are backup-radosgw.test.ts.
 */
import { PreconditionFailedError } from "../../gateway/backup/backup-errors.ts";
import { MemoryObjectStore } from "../../gateway/backup/memory-object-store.ts";

/** A running stand-in: its endpoint, the bucket's objects, and how to stop it. */
export interface MemoryS3 {
  /** `http://127.0.0.1:PORT`, for `?endpoint=`. */
  readonly endpoint: string;
  readonly bucket: string;
  /** Every object, keyed by its full key (the target's prefix included). */
  readonly objects: MemoryObjectStore;
  /** `s3://BUCKET/PREFIX?endpoint=...&region=us-east-1`. */
  target(prefix: string): string;
  stop(): Promise<void>;
}

const xml = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

function error(status: number, code: string, message: string, head = false): Response {
  const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${xml(message)}</Message></Error>`;
  return new Response(head ? null : body, { status, headers: { "content-type": "application/xml" } });
}

/** Starts the stand-in on a free loopback port, with one (empty) bucket. */
export function startMemoryS3(bucket = "dashboard-backups"): MemoryS3 {
  const objects = new MemoryObjectStore(`memory-s3://${bucket}`);
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      const path = decodeURIComponent(url.pathname.slice(1));
      const slash = path.indexOf("/");
      const b = slash < 0 ? path : path.slice(0, slash);
      const key = slash < 0 ? "" : path.slice(slash + 1);
      const head = req.method === "HEAD";
      if (b !== bucket) return error(404, "NoSuchBucket", `No bucket ${b}`, head);
      if (key === "" && req.method === "GET") {
        const prefix = url.searchParams.get("prefix") ?? "";
        const items: string[] = [];
        for await (const o of objects.list(prefix))
          items.push(`<Contents><Key>${xml(o.key)}</Key><Size>${o.size}</Size></Contents>`);
        return new Response(
          `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${bucket}</Name><Prefix>${xml(prefix)}</Prefix><KeyCount>${items.length}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>${items.join("")}</ListBucketResult>`,
          { headers: { "content-type": "application/xml" } },
        );
      }
      switch (req.method) {
        case "GET":
        case "HEAD": {
          const info = await objects.head(key);
          if (!info) return error(404, "NoSuchKey", `No object ${key}`, head);
          const headers = { etag: `"${info.etag}"`, "content-type": "application/octet-stream" };
          if (head)
            return new Response(null, { headers: { ...headers, "content-length": String(info.size) } });
          const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.get("range") ?? "");
          if (range) {
            const start = Number(range[1]);
            const end = Math.min(Number(range[2]) + 1, info.size);
            const bytes = new Uint8Array((await objects.getRange(key, start, end))!);
            return new Response(bytes, {
              status: 206,
              headers: { ...headers, "content-range": `bytes ${start}-${end - 1}/${info.size}` },
            });
          }
          return new Response(new Uint8Array((await objects.get(key))!), { headers });
        }
        case "PUT": {
          const bytes = new Uint8Array(await req.arrayBuffer());
          const ifMatch = req.headers.get("if-match")?.replace(/"/g, "");
          try {
            await objects.put(key, bytes, {
              ifNoneMatch: req.headers.get("if-none-match") === "*",
              ...(ifMatch !== undefined && { ifMatch }),
            });
          } catch (err) {
            if (err instanceof PreconditionFailedError)
              return error(412, "PreconditionFailed", "At least one of the preconditions failed");
            throw err;
          }
          return new Response(null, { headers: { etag: `"${(await objects.head(key))!.etag}"` } });
        }
        case "DELETE":
          await objects.delete(key);
          return new Response(null, { status: 204 });
        default:
          return error(405, "MethodNotAllowed", `${req.method} is not answered here`);
      }
    },
  });
  const endpoint = `http://127.0.0.1:${server.port}`;
  return {
    endpoint,
    bucket,
    objects,
    target: (prefix) => `s3://${bucket}/${prefix}?endpoint=${endpoint}&region=us-east-1`,
    stop: async () => {
      await server.stop(true);
    },
  };
}
