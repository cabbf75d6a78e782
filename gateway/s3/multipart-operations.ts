/**
 * Multipart upload of an image: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
 * AbortMultipartUpload, ListParts. Parts are staged into chunks as they arrive; the
 * image appears (or is replaced) only at completion.
 */
import { assembleBlocks } from "./block-assembly.ts";
import { MAX_PARTS } from "./multipart-uploads.ts";
import { imageOfWritableKey } from "./object-operations.ts";
import type { StagedPart } from "./part-stager.ts";
import { stagePart } from "./part-stager.ts";
import { writePreconditions } from "./preconditions.ts";
import { VerifiedBody } from "./request-body.ts";
import { etagOf, type S3Context, xmlResponse } from "./s3-context.ts";
import { S3Error } from "./s3-errors.ts";
import { parseXmlBody } from "./xml.ts";

/** Largest CompleteMultipartUpload body: 10,000 parts of a few hundred bytes each. */
export const MAX_COMPLETE_BODY_BYTES = 8 * 1024 * 1024;

function uploadOf(ctx: S3Context) {
  return ctx.uploads.get(ctx.key, ctx.query.get("uploadId") ?? "");
}

/** `POST /bucket/key?uploads`. */
export async function createMultipartUpload(ctx: S3Context): Promise<Response> {
  const image = imageOfWritableKey(ctx.key);
  const session = await ctx.catalog.beginImport(image);
  const upload = ctx.uploads.create(ctx.key, session);
  const algorithm = ctx.request.headers.get("x-amz-checksum-algorithm");
  return xmlResponse(
    "InitiateMultipartUploadResult",
    { Bucket: ctx.settings.bucket, Key: ctx.key, UploadId: upload.id },
    200,
    algorithm ? { "x-amz-checksum-algorithm": algorithm } : {},
  );
}

/** `PUT /bucket/key?partNumber=N&uploadId=ID`. */
export async function uploadPart(ctx: S3Context): Promise<Response> {
  if (ctx.request.headers.has("x-amz-copy-source"))
    throw new S3Error("NotImplemented", "UploadPartCopy is not supported");
  const raw = ctx.query.get("partNumber") ?? "";
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > MAX_PARTS) {
    throw new S3Error(
      "InvalidArgument",
      `Part number must be an integer between 1 and ${MAX_PARTS}, inclusive`,
    );
  }
  const upload = uploadOf(ctx);
  const body = new VerifiedBody(ctx.request, ctx.auth.payload);
  const budget = ctx.uploads.budget();
  upload.active++;
  try {
    const part = await stagePart(upload.session, body, ctx.uploads.phaseFor(upload, n), budget.take);
    if (!ctx.uploads.recordPart(upload, n, part)) {
      budget.release();
      throw new S3Error("NoSuchUpload", "The upload was aborted or completed while this part was sent");
    }
    return new Response(null, { status: 200, headers: { etag: part.etag, ...part.checksums } });
  } catch (err) {
    budget.release();
    throw err;
  } finally {
    upload.active--;
  }
}

/** `POST /bucket/key?uploadId=ID`. */
export async function completeMultipartUpload(ctx: S3Context, body: Uint8Array): Promise<Response> {
  const upload = uploadOf(ctx);
  if (body.byteLength > MAX_COMPLETE_BODY_BYTES)
    throw new S3Error("MalformedXML", "The CompleteMultipartUpload document is too large");
  const doc = parseXmlBody(new TextDecoder().decode(body));
  const listed =
    (doc.CompleteMultipartUpload as { Part?: Record<string, unknown>[] } | undefined)?.Part ?? [];
  if (listed.length === 0)
    throw new S3Error("MalformedXML", "CompleteMultipartUpload must list at least one part");
  const parts: StagedPart[] = [];
  let previous = 0;
  for (const p of listed) {
    const n = Number(p.PartNumber);
    if (!Number.isInteger(n) || n <= previous) {
      throw new S3Error(
        "InvalidPartOrder",
        "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
      );
    }
    previous = n;
    const staged = upload.parts.get(n);
    const etag = String(p.ETag ?? "").trim();
    const quoted = etag.startsWith('"') ? etag : `"${etag}"`;
    if (!staged || quoted !== staged.etag) {
      throw new S3Error("InvalidPart", `Part ${n} was not uploaded, or its ETag does not match`, {
        fields: { PartNumber: String(n), ETag: etag },
      });
    }
    for (const [header, value] of Object.entries(staged.checksums)) {
      const field = `Checksum${header.slice("x-amz-checksum-".length).toUpperCase()}`;
      if (p[field] !== undefined && String(p[field]) !== value) {
        throw new S3Error("InvalidPart", `The ${field} of part ${n} does not match the part's`, {
          fields: { PartNumber: String(n) },
        });
      }
    }
    parts.push(staged);
  }
  if (upload.completing)
    throw new S3Error("OperationAborted", "This upload is being completed by another request");
  const condition = writePreconditions(ctx.request.headers);
  upload.completing = true;
  upload.active++;
  try {
    const { blocks, size } = await assembleBlocks(upload.session, parts);
    const version = await upload.session.commit(blocks, size, condition);
    ctx.uploads.remove(upload);
    return xmlResponse("CompleteMultipartUploadResult", {
      Location: `/${ctx.settings.bucket}/${encodeURIComponent(ctx.key)}`,
      Bucket: ctx.settings.bucket,
      Key: ctx.key,
      ETag: etagOf(version.root),
    });
  } finally {
    upload.completing = false;
    upload.active--;
  }
}

/** `DELETE /bucket/key?uploadId=ID`. */
export function abortMultipartUpload(ctx: S3Context): Response {
  ctx.uploads.remove(uploadOf(ctx));
  return new Response(null, { status: 204 });
}

/** `GET /bucket/key?uploadId=ID`. */
export function listParts(ctx: S3Context): Response {
  const upload = uploadOf(ctx);
  const marker = Number(ctx.query.get("part-number-marker") ?? "0") || 0;
  const max = Math.min(Number(ctx.query.get("max-parts") ?? "1000") || 1000, 1000);
  const numbers = [...upload.parts.keys()].filter((n) => n > marker).sort((a, b) => a - b);
  const shown = numbers.slice(0, max);
  const truncated = numbers.length > shown.length;
  return xmlResponse("ListPartsResult", {
    Bucket: ctx.settings.bucket,
    Key: ctx.key,
    UploadId: upload.id,
    StorageClass: "STANDARD",
    PartNumberMarker: marker,
    NextPartNumberMarker: shown.at(-1) ?? marker,
    MaxParts: max,
    IsTruncated: truncated,
    Part: shown.map((n) => {
      const p = upload.parts.get(n)!;
      return { PartNumber: n, LastModified: p.lastModified.toISOString(), ETag: p.etag, Size: p.size };
    }),
  });
}
