/**
 * Bucket-level operations of the one bucket: ListBuckets, HeadBucket, GetBucketLocation,
 * CreateBucket (it exists already), ListObjectsV2, ListObjects (v1), DeleteObjects.
 */
import { ImageNotFoundError } from "../errors.ts";
import { type CommittedVersion, parseKey } from "./image-catalog.ts";
import { compareUtf8, type ListPage, listPage, MAX_LIST_KEYS } from "./list-objects.ts";
import { etagOf, type S3Context, xmlResponse } from "./s3-context.ts";
import { S3Error, s3ErrorOf } from "./s3-errors.ts";
import { parseXmlBody, type XmlObject } from "./xml.ts";

/** Largest DeleteObjects body: 1000 keys (S3's limit) of up to 1 KiB each. */
const MAX_DELETE_BODY_BYTES = 2 * 1024 * 1024;
/** Keys per DeleteObjects request: S3's limit. */
const MAX_DELETE_KEYS = 1000;

const OWNER = { ID: "blockmend", DisplayName: "blockmend" };

/** `GET /`: the one bucket. */
export function listBuckets(ctx: S3Context, createdAt: Date): Response {
  return xmlResponse("ListAllMyBucketsResult", {
    Owner: OWNER,
    Buckets: { Bucket: [{ Name: ctx.settings.bucket, CreationDate: createdAt.toISOString() }] },
  });
}

/** `HEAD /bucket`. */
export function headBucket(ctx: S3Context): Response {
  return new Response(null, { status: 200, headers: { "x-amz-bucket-region": ctx.settings.region } });
}

/** `GET /bucket?location`: empty for us-east-1, as S3 answers. */
export function getBucketLocation(ctx: S3Context): Response {
  const region = ctx.settings.region === "us-east-1" ? "" : ctx.settings.region;
  return xmlResponse("LocationConstraint", { "#text": region });
}

/** `PUT /bucket`: the bucket always exists. */
export function createBucket(ctx: S3Context): never {
  throw new S3Error(
    "BucketAlreadyOwnedByYou",
    "Your previous request to create the named bucket succeeded and you already own it.",
    {
      fields: { BucketName: ctx.settings.bucket },
    },
  );
}

function maxKeys(ctx: S3Context): number {
  const raw = ctx.query.get("max-keys");
  if (raw === undefined) return MAX_LIST_KEYS;
  if (!/^\d+$/.test(raw))
    throw new S3Error("InvalidArgument", `max-keys "${raw}" is not a non-negative integer`);
  return Math.min(Number(raw), MAX_LIST_KEYS);
}

/** `encoding-type=url` asks for keys and prefixes URL-encoded (aws-cli does). */
function encoderFor(ctx: S3Context): (s: string) => string {
  const type = ctx.query.get("encoding-type");
  if (type === undefined) return (s) => s;
  if (type !== "url")
    throw new S3Error("InvalidArgument", `Invalid Encoding Method specified in Request: "${type}"`);
  return (s) => encodeURIComponent(s).replace(/%2F/g, "/");
}

function contentsOf(page: ListPage<CommittedVersion>, enc: (s: string) => string): XmlObject {
  return {
    Contents: page.contents.map((v) => ({
      Key: enc(v.key),
      LastModified: v.lastModified.toISOString(),
      ETag: etagOf(v.root),
      Size: v.size,
      StorageClass: "STANDARD",
    })),
    CommonPrefixes: page.commonPrefixes.map((p) => ({ Prefix: enc(p) })),
  };
}

/** `GET /bucket?list-type=2`. */
export async function listObjectsV2(ctx: S3Context): Promise<Response> {
  const prefix = ctx.query.get("prefix") ?? "";
  const delimiter = ctx.query.get("delimiter") ?? "";
  const token = ctx.query.get("continuation-token");
  const startAfter = ctx.query.get("start-after");
  let after = startAfter ?? "";
  if (token !== undefined) {
    try {
      after = Buffer.from(token, "base64url").toString("utf8");
      if (!after.startsWith("k:")) throw new Error("bad token");
      after = after.slice(2);
    } catch {
      throw new S3Error("InvalidArgument", "The continuation token provided is incorrect");
    }
  }
  const max = maxKeys(ctx);
  const page = listPage(await ctx.catalog.list(), { prefix, delimiter, after, maxKeys: max });
  const enc = encoderFor(ctx);
  return xmlResponse("ListBucketResult", {
    Name: ctx.settings.bucket,
    Prefix: enc(prefix),
    Delimiter: delimiter === "" ? undefined : enc(delimiter),
    MaxKeys: max,
    KeyCount: page.contents.length + page.commonPrefixes.length,
    IsTruncated: page.isTruncated,
    ContinuationToken: token,
    NextContinuationToken:
      page.isTruncated && page.last !== null
        ? Buffer.from(`k:${page.last}`).toString("base64url")
        : undefined,
    StartAfter: startAfter === undefined ? undefined : enc(startAfter),
    EncodingType: ctx.query.get("encoding-type"),
    ...contentsOf(page, enc),
  });
}

/** `GET /bucket` (ListObjects, version 1: `marker`). */
export async function listObjectsV1(ctx: S3Context): Promise<Response> {
  const prefix = ctx.query.get("prefix") ?? "";
  const delimiter = ctx.query.get("delimiter") ?? "";
  const marker = ctx.query.get("marker") ?? "";
  const max = maxKeys(ctx);
  const page = listPage(await ctx.catalog.list(), { prefix, delimiter, after: marker, maxKeys: max });
  const enc = encoderFor(ctx);
  return xmlResponse("ListBucketResult", {
    Name: ctx.settings.bucket,
    Prefix: enc(prefix),
    Marker: enc(marker),
    // S3 sends NextMarker only with a delimiter; clients use the last key otherwise.
    NextMarker: page.isTruncated && delimiter !== "" && page.last !== null ? enc(page.last) : undefined,
    MaxKeys: max,
    Delimiter: delimiter === "" ? undefined : enc(delimiter),
    IsTruncated: page.isTruncated,
    EncodingType: ctx.query.get("encoding-type"),
    ...contentsOf(page, enc),
  });
}

/** Deletes `key`: a snapshot, or an unattached image without snapshots. A key that does not exist counts as deleted (as in S3). */
export async function deleteKey(ctx: S3Context, key: string): Promise<void> {
  try {
    await ctx.catalog.resolve(key);
  } catch (err) {
    if (err instanceof ImageNotFoundError) return;
    throw err;
  }
  const { image, snapshot } = parseKey(key);
  try {
    if (snapshot !== undefined) await ctx.catalog.deleteSnapshot(image, snapshot);
    else await ctx.catalog.deleteImage(image);
  } catch (err) {
    if (!(err instanceof ImageNotFoundError)) throw err;
  }
}

/** `POST /bucket?delete`. */
export async function deleteObjects(ctx: S3Context, body: Uint8Array): Promise<Response> {
  if (body.byteLength > MAX_DELETE_BODY_BYTES)
    throw new S3Error("MalformedXML", "The Delete document is too large");
  const doc = parseXmlBody(new TextDecoder().decode(body));
  const del = doc.Delete as { Object?: { Key?: unknown }[]; Quiet?: unknown } | undefined;
  const objects = del?.Object ?? [];
  if (!del || objects.length === 0 || objects.length > MAX_DELETE_KEYS) {
    throw new S3Error("MalformedXML", `The Delete document must name 1 to ${MAX_DELETE_KEYS} objects`);
  }
  const quiet = String(del.Quiet ?? "false").toLowerCase() === "true";
  const deleted: XmlObject[] = [];
  const errors: XmlObject[] = [];
  for (const o of objects) {
    const key = String(o.Key ?? "");
    try {
      await deleteKey(ctx, key);
      if (!quiet) deleted.push({ Key: key });
    } catch (err) {
      const e = s3ErrorOf(err);
      errors.push({ Key: key, Code: e.code, Message: e.message });
    }
  }
  return xmlResponse("DeleteResult", { Deleted: deleted, Error: errors });
}

/** Uploads in key order for ListMultipartUploads. */
export function listMultipartUploads(ctx: S3Context): Response {
  const prefix = ctx.query.get("prefix") ?? "";
  const uploads = ctx.uploads.list().filter((u) => u.key.startsWith(prefix));
  uploads.sort((a, b) => compareUtf8(a.key, b.key));
  return xmlResponse("ListMultipartUploadsResult", {
    Bucket: ctx.settings.bucket,
    KeyMarker: ctx.query.get("key-marker") ?? "",
    UploadIdMarker: ctx.query.get("upload-id-marker") ?? "",
    Prefix: prefix,
    MaxUploads: MAX_LIST_KEYS,
    IsTruncated: false,
    Upload: uploads.map((u) => ({
      Key: u.key,
      UploadId: u.id,
      Initiator: OWNER,
      Owner: OWNER,
      StorageClass: "STANDARD",
      Initiated: u.initiated.toISOString(),
    })),
  });
}
