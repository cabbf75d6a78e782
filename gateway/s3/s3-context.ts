/** What every S3 operation handler gets: the authenticated request, its target, and the endpoint's parts. */
import type { S3ImageCatalog } from "./image-catalog.ts";
import type { MultipartUploads } from "./multipart-uploads.ts";
import type { Authenticated } from "./sigv4-verifier.ts";
import { S3_XMLNS, toXml, type XmlObject } from "./xml.ts";

/** Settings of one S3 endpoint. */
export interface S3EndpointSettings {
  /** The one bucket, holding every image and snapshot. */
  readonly bucket: string;
  readonly region: string;
  /** Base domain for virtual-host style (`BUCKET.DOMAIN`); path style always works. */
  readonly domain?: string;
}

/** One request being served. */
export interface S3Context {
  readonly catalog: S3ImageCatalog;
  readonly uploads: MultipartUploads;
  readonly settings: S3EndpointSettings;
  readonly request: Request;
  /** Query parameters, decoded; a parameter without `=` has the value "". */
  readonly query: ReadonlyMap<string, string>;
  /** Object key, decoded; "" for bucket operations. */
  readonly key: string;
  readonly auth: Authenticated;
  readonly requestId: string;
}

/** A 200 (or `status`) XML response whose root element carries the S3 namespace. */
export function xmlResponse(
  root: string,
  body: XmlObject,
  status = 200,
  headers: Record<string, string> = {},
): Response {
  return new Response(toXml(root, { "@_xmlns": S3_XMLNS, ...body }), {
    status,
    headers: { "content-type": "application/xml", ...headers },
  });
}

/** The quoted ETag of a version (its root hash). */
export function etagOf(root: string): string {
  return `"${root}"`;
}
