/** Object operations on one key: GetObject and HeadObject, PutObject, DeleteObject. */
import { ImageNotFoundError } from "../errors.ts";
import { assembleBlocks } from "./block-assembly.ts";
import { deleteKey } from "./bucket-operations.ts";
import { parseRange } from "./byte-range.ts";
import { parseKey } from "./image-catalog.ts";
import { versionStream } from "./object-stream.ts";
import { stagePart } from "./part-stager.ts";
import { evaluateReadPreconditions, ifRangeMatches, writePreconditions } from "./preconditions.ts";
import { VerifiedBody } from "./request-body.ts";
import { etagOf, type S3Context } from "./s3-context.ts";
import { S3Error } from "./s3-errors.ts";

/** Query parameters of a GET that set response headers (S3's `response-*` overrides, used by presigned links). */
const RESPONSE_OVERRIDES: Readonly<Record<string, string>> = {
  "response-content-type": "content-type",
  "response-content-disposition": "content-disposition",
  "response-content-encoding": "content-encoding",
  "response-content-language": "content-language",
  "response-cache-control": "cache-control",
  "response-expires": "expires",
};

/** `GET` and `HEAD` of an object: one committed version, pinned for the whole body. */
export async function getObject(ctx: S3Context): Promise<Response> {
  const version = await ctx.catalog.resolve(ctx.key);
  const etag = etagOf(version.root);
  const partNumber = ctx.query.get("partNumber");
  if (partNumber !== undefined && partNumber !== "1") {
    throw new S3Error("InvalidPartNumber", "The requested partnumber is not satisfiable");
  }
  const headers: Record<string, string> = {
    etag,
    "last-modified": version.lastModified.toUTCString(),
    "accept-ranges": "bytes",
    "content-type": "application/octet-stream",
  };
  const headers304 = { etag: headers.etag!, "last-modified": headers["last-modified"]! };
  if (evaluateReadPreconditions(ctx.request.headers, etag, version.lastModified) === "not-modified") {
    return new Response(null, { status: 304, headers: headers304 });
  }
  const range = ifRangeMatches(ctx.request.headers, etag, version.lastModified)
    ? parseRange(ctx.request.headers.get("range"), version.size)
    : null;
  const start = range?.start ?? 0;
  const end = range?.end ?? version.size;
  headers["content-length"] = String(end - start);
  if (range) headers["content-range"] = `bytes ${start}-${end - 1}/${version.size}`;
  for (const [param, header] of Object.entries(RESPONSE_OVERRIDES)) {
    const value = ctx.query.get(param);
    if (value !== undefined) headers[header] = value;
  }
  const status = range ? 206 : 200;
  if (ctx.request.method === "HEAD" || end === start) return new Response(null, { status, headers });
  const reader = ctx.catalog.openReader(version);
  const body = versionStream(reader, start, end, (err) =>
    console.error(`gateway S3: reading "${version.key}" (${version.root}) failed mid-body`, err),
  );
  return new Response(body, { status, headers });
}

/** `PUT` of an object: imports the body as image `key` (created, or replaced if not attached). */
export async function putObject(ctx: S3Context): Promise<Response> {
  if (ctx.request.headers.has("x-amz-copy-source")) {
    throw new S3Error(
      "NotImplemented",
      "CopyObject is not supported: download and upload, or clone a snapshot through the HTTP API",
    );
  }
  const image = imageOfWritableKey(ctx.key);
  const condition = writePreconditions(ctx.request.headers);
  if (condition.ifNoneMatch) await refuseIfExists(ctx, image);
  const session = await ctx.catalog.beginImport(image);
  const body = new VerifiedBody(ctx.request, ctx.auth.payload);
  const budget = ctx.uploads.budget();
  try {
    const part = await stagePart(session, body, 0, budget.take);
    const { blocks, size } = await assembleBlocks(session, [part]);
    const version = await session.commit(blocks, size, condition);
    return new Response(null, { status: 200, headers: { etag: etagOf(version.root), ...body.checksums } });
  } finally {
    budget.release();
  }
}

/** `DELETE` of an object: a snapshot, or an unattached image; a missing key is fine (204). */
export async function deleteObject(ctx: S3Context): Promise<Response> {
  await deleteKey(ctx, ctx.key);
  return new Response(null, { status: 204 });
}

/** The image a write to `key` targets; snapshots are read-only. */
export function imageOfWritableKey(key: string): string {
  const { image, snapshot } = parseKey(key);
  if (snapshot !== undefined) {
    throw new S3Error(
      "InvalidRequest",
      `"${key}" is a snapshot, which is read-only; upload to "${image}" instead`,
    );
  }
  return image;
}

/** Fails early (before the body is read) when `If-None-Match: *` cannot hold; the commit checks again. */
export async function refuseIfExists(ctx: S3Context, image: string): Promise<void> {
  try {
    await ctx.catalog.resolve(image);
  } catch (err) {
    if (err instanceof ImageNotFoundError) return;
    throw err;
  }
  throw new S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", {
    fields: { Condition: "If-None-Match" },
  });
}
