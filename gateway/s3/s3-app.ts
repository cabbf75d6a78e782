/**
 * The S3-compatible endpoint as a Hono app: one bucket holding every image (`NAME`) and
 * snapshot (`NAME@SNAP`). Serve its `fetch` on its own listener with
 * `runtime/serve-http.ts`. Each request is addressed (path style, or virtual-host style
 * under `domain`), authenticated (SigV4), then dispatched by method, target and
 * subresource; errors become S3 XML through `s3-errors.ts` only.
 */
import { Hono } from "hono";
import {
  createBucket,
  deleteObjects,
  getBucketLocation,
  headBucket,
  listBuckets,
  listMultipartUploads,
  listObjectsV1,
  listObjectsV2,
} from "./bucket-operations.ts";
import type { S3Credentials } from "./credentials.ts";
import type { S3ImageCatalog } from "./image-catalog.ts";
import {
  abortMultipartUpload,
  completeMultipartUpload,
  createMultipartUpload,
  listParts,
  uploadPart,
} from "./multipart-operations.ts";
import { MultipartUploads } from "./multipart-uploads.ts";
import { deleteObject, getObject, putObject } from "./object-operations.ts";
import { VerifiedBody } from "./request-body.ts";
import type { S3Context, S3EndpointSettings } from "./s3-context.ts";
import { S3Error, s3ErrorResponse } from "./s3-errors.ts";
import { SigV4Verifier } from "./sigv4-verifier.ts";

/** Options of {@link createS3App}. */
export interface S3AppOptions extends S3EndpointSettings {
  readonly credentials: S3Credentials;
  /** Current time in ms (tests move it). */
  readonly now?: () => number;
}

/** A built endpoint: the app, and `close` for its timers. */
export interface S3App {
  readonly app: Hono;
  /** Multipart uploads in progress (for tests and metrics). */
  readonly uploads: MultipartUploads;
  close(): void;
}

/**
 * Subresources S3 has and this endpoint does not: they answer NotImplemented (501),
 * never a different operation.
 */
const UNSUPPORTED_SUBRESOURCES = [
  "accelerate",
  "acl",
  "analytics",
  "attributes",
  "cors",
  "encryption",
  "intelligent-tiering",
  "inventory",
  "legal-hold",
  "lifecycle",
  "logging",
  "metrics",
  "notification",
  "object-lock",
  "ownershipControls",
  "policy",
  "policyStatus",
  "publicAccessBlock",
  "replication",
  "requestPayment",
  "restore",
  "retention",
  "select",
  "tagging",
  "torrent",
  "versioning",
  "versions",
  "website",
] as const;

/** Largest small XML request body (DeleteObjects, CompleteMultipartUpload). */
const MAX_XML_BODY_BYTES = 8 * 1024 * 1024;

/**
 * Builds the endpoint over `catalog`.
 *
 * @example
 * const s3 = createS3App(new ImageCatalogAdapter(images), { bucket: "images", region: "us-east-1", credentials });
 * const server = await serveHttp(s3.app.fetch, { hostname: "127.0.0.1", port: 9000 });
 */
export function createS3App(catalog: S3ImageCatalog, options: S3AppOptions): S3App {
  const verifier = new SigV4Verifier({
    region: options.region,
    credentials: options.credentials,
    now: options.now,
  });
  const uploads = new MultipartUploads({ now: options.now });
  const createdAt = new Date();
  const app = new Hono<{ Variables: { requestId: string } }>();

  app.onError((err, c) =>
    s3ErrorResponse(err, {
      method: c.req.method,
      resource: new URL(c.req.url).pathname,
      requestId: c.get("requestId") ?? "-",
    }),
  );

  app.all("*", async (c) => {
    const requestId = Buffer.from(crypto.getRandomValues(new Uint8Array(8)))
      .toString("hex")
      .toUpperCase();
    c.set("requestId", requestId);
    const request = c.req.raw;
    const url = new URL(request.url);
    const query = parseQuery(url.search);
    const auth = await verifier.verify({
      method: request.method,
      path: url.pathname,
      query,
      headers: request.headers,
    });
    const target = addressOf(request, url, options);
    const ctx: S3Context = {
      catalog,
      uploads,
      settings: options,
      request,
      query: new Map(query),
      key: target.key,
      auth,
      requestId,
    };
    const response = await dispatch(ctx, target.bucket, createdAt);
    response.headers.set("x-amz-request-id", requestId);
    return response;
  });

  return { app: app as unknown as Hono, uploads, close: () => uploads.close() };
}

async function dispatch(ctx: S3Context, bucket: string | null, createdAt: Date): Promise<Response> {
  const method = ctx.request.method;
  const q = ctx.query;
  if (bucket === null) {
    if (method === "GET") return listBuckets(ctx, createdAt);
    throw new S3Error("MethodNotAllowed", `${method} is not allowed on the service`);
  }
  if (bucket !== ctx.settings.bucket) {
    throw new S3Error("NoSuchBucket", "The specified bucket does not exist", {
      fields: { BucketName: bucket },
    });
  }
  for (const sub of UNSUPPORTED_SUBRESOURCES) {
    if (q.has(sub))
      throw new S3Error("NotImplemented", `The "${sub}" subresource is not supported by blockmend`);
  }
  const versionId = q.get("versionId");
  if (versionId !== undefined && versionId !== "null") {
    throw new S3Error("NotImplemented", "Object versions are not supported: use snapshots (NAME@SNAP)");
  }
  if (ctx.key === "") {
    switch (method) {
      case "GET":
        if (q.has("location")) return getBucketLocation(ctx);
        if (q.has("uploads")) return listMultipartUploads(ctx);
        if (q.get("list-type") === "2") return listObjectsV2(ctx);
        return listObjectsV1(ctx);
      case "HEAD":
        return headBucket(ctx);
      case "PUT":
        return createBucket(ctx);
      case "POST":
        if (q.has("delete")) return deleteObjects(ctx, await smallBody(ctx));
        break;
      case "DELETE":
        throw new S3Error(
          "NotImplemented",
          "DeleteBucket is not supported: the bucket is the gateway's image catalogue",
        );
    }
    throw new S3Error("NotImplemented", `${method} on the bucket is not supported`);
  }
  switch (method) {
    case "GET":
    case "HEAD":
      if (q.has("uploadId")) {
        if (method === "GET") return listParts(ctx);
        break;
      }
      return getObject(ctx);
    case "PUT":
      if (q.has("uploadId") || q.has("partNumber")) return uploadPart(ctx);
      return putObject(ctx);
    case "POST":
      if (q.has("uploads")) return createMultipartUpload(ctx);
      if (q.has("uploadId")) return completeMultipartUpload(ctx, await smallBody(ctx));
      break;
    case "DELETE":
      if (q.has("uploadId")) return abortMultipartUpload(ctx);
      return deleteObject(ctx);
  }
  throw new S3Error("NotImplemented", `${method} on an object is not supported`);
}

/** A small request body (an XML document), verified like any payload and bounded. */
async function smallBody(ctx: S3Context): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  await new VerifiedBody(ctx.request, ctx.auth.payload).pump((piece) => {
    total += piece.byteLength;
    if (total > MAX_XML_BODY_BYTES)
      throw new S3Error("EntityTooLarge", `The request body is over ${MAX_XML_BODY_BYTES} bytes`);
    parts.push(piece.slice());
  });
  return Buffer.concat(parts);
}

/**
 * The bucket and key a request addresses: virtual-host style when the Host is
 * `BUCKET.DOMAIN`, else path style `/BUCKET/KEY`. A null bucket is the service (`GET /`).
 */
function addressOf(
  request: Request,
  url: URL,
  settings: S3EndpointSettings,
): { bucket: string | null; key: string } {
  const host = (request.headers.get("host") ?? url.host).replace(/:\d+$/, "").toLowerCase();
  const path = url.pathname;
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw new S3Error("InvalidArgument", `The path "${s.slice(0, 200)}" is not valid percent-encoding`);
    }
  };
  const domain = settings.domain?.toLowerCase();
  if (domain && host.endsWith(`.${domain}`)) {
    return { bucket: host.slice(0, -domain.length - 1), key: decode(path.slice(1)) };
  }
  const slash = path.indexOf("/", 1);
  if (path === "/" || path === "") return { bucket: null, key: "" };
  if (slash < 0) return { bucket: decode(path.slice(1)), key: "" };
  return { bucket: decode(path.slice(1, slash)), key: decode(path.slice(slash + 1)) };
}

/** Query parameters percent-decoded without turning `+` into a space (SigV4 and S3 do not). */
export function parseQuery(search: string): [string, string][] {
  const out: [string, string][] = [];
  for (const part of search.replace(/^\?/, "").split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const k = eq < 0 ? part : part.slice(0, eq);
    const v = eq < 0 ? "" : part.slice(eq + 1);
    try {
      out.push([decodeURIComponent(k), decodeURIComponent(v)]);
    } catch {
      throw new S3Error(
        "InvalidArgument",
        `The query parameter "${k.slice(0, 100)}" is not valid percent-encoding`,
      );
    }
  }
  return out;
}
