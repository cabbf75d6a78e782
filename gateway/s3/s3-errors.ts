/**
 * S3 error codes and the one mapping from errors thrown while serving an S3 request to
 * an S3 XML error response. Handlers throw (domain errors from the image layer, or an
 * {@link S3Error} for protocol faults); the app's `onError` calls {@link s3ErrorResponse};
 * nothing else builds error responses.
 */
import { AccessRefusedError } from "../../access/access-errors.ts";
import {
  ChunkCorruptError,
  ChunkNotFoundError,
  StoreFullError,
  StoreUnavailableError,
} from "../../chunkstore/errors.ts";
import {
  ImageExistsError,
  ImageNotFoundError,
  NotEnoughReplicasError,
  ReadOnlyError,
  StaleEpochError,
} from "../errors.ts";
import { ImageAttachedError, ImageHasSnapshotsError, VersionChangedError } from "./image-catalog.ts";
import { toXml } from "./xml.ts";

/**
 * S3 error codes this endpoint answers, with the HTTP status each travels with (as AWS
 * documents them in "Error responses", S3 API reference). `ImageAttached` and
 * `ImageHasSnapshots` are blockmend's own: S3 has no attached objects.
 */
export const S3_ERROR_STATUS = {
  AccessDenied: 403,
  AuthorizationHeaderMalformed: 400,
  AuthorizationQueryParametersError: 400,
  BadDigest: 400,
  BucketAlreadyOwnedByYou: 409,
  EntityTooLarge: 400,
  ImageAttached: 409,
  ImageHasSnapshots: 409,
  IncompleteBody: 400,
  InsufficientStorage: 507,
  InternalError: 500,
  InvalidAccessKeyId: 403,
  InvalidArgument: 400,
  InvalidDigest: 400,
  InvalidPart: 400,
  InvalidPartNumber: 416,
  InvalidPartOrder: 400,
  InvalidRange: 416,
  InvalidRequest: 400,
  MalformedXML: 400,
  MethodNotAllowed: 405,
  MissingContentLength: 411,
  NoSuchBucket: 404,
  NoSuchKey: 404,
  NoSuchUpload: 404,
  NotImplemented: 501,
  OperationAborted: 409,
  PreconditionFailed: 412,
  RequestTimeTooSkewed: 403,
  ServiceUnavailable: 503,
  SignatureDoesNotMatch: 403,
  SlowDown: 503,
  XAmzContentSHA256Mismatch: 400,
} as const;

/** An S3 error code. */
export type S3ErrorCode = keyof typeof S3_ERROR_STATUS;

/** A protocol-level refusal with its S3 code; `fields` become extra elements of `<Error>`. */
export class S3Error extends Error {
  override readonly name = "S3Error";
  readonly code: S3ErrorCode;
  readonly fields: Readonly<Record<string, string>>;
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    code: S3ErrorCode,
    message: string,
    extra: { fields?: Record<string, string>; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.code = code;
    this.fields = extra.fields ?? {};
    this.headers = extra.headers ?? {};
  }
}

/** What an error becomes on the wire. */
export interface S3WireError {
  readonly status: number;
  readonly code: S3ErrorCode;
  readonly message: string;
  readonly fields: Readonly<Record<string, string>>;
  readonly headers: Readonly<Record<string, string>>;
}

/** The one mapping from a thrown value to an S3 error. Unknown errors are InternalError (500) and logged. */
export function s3ErrorOf(err: unknown): S3WireError {
  const message = err instanceof Error ? err.message : String(err);
  const wire = (code: S3ErrorCode, extra: Partial<S3WireError> = {}): S3WireError => ({
    status: S3_ERROR_STATUS[code],
    code,
    message,
    fields: {},
    headers: {},
    ...extra,
  });
  if (err instanceof S3Error) return wire(err.code, { fields: err.fields, headers: err.headers });
  if (err instanceof AccessRefusedError) return wire("AccessDenied");
  if (err instanceof ImageNotFoundError) return wire("NoSuchKey", { fields: { Key: err.image } });
  // Only a conditional create (If-None-Match: *) can meet an existing image.
  if (err instanceof ImageExistsError)
    return wire("PreconditionFailed", { fields: { Condition: "If-None-Match" } });
  if (err instanceof ImageAttachedError) return wire("ImageAttached", { fields: { Key: err.image } });
  if (err instanceof ImageHasSnapshotsError) return wire("ImageHasSnapshots", { fields: { Key: err.image } });
  if (err instanceof VersionChangedError)
    return wire("PreconditionFailed", { fields: { Condition: "If-Match" } });
  if (err instanceof ReadOnlyError) return wire("InvalidRequest");
  if (err instanceof StaleEpochError) return wire("OperationAborted");
  // Transient: S3 clients retry a 503.
  if (
    err instanceof NotEnoughReplicasError ||
    err instanceof StoreUnavailableError ||
    err instanceof ChunkNotFoundError ||
    err instanceof ChunkCorruptError
  ) {
    return wire("ServiceUnavailable");
  }
  if (err instanceof StoreFullError) return wire("InsufficientStorage");
  if (err instanceof RangeError || err instanceof TypeError) return wire("InvalidArgument");
  console.error("gateway S3: unexpected error", err);
  return wire("InternalError", { message: `Internal error: ${message}` });
}

/**
 * The response for `err`: S3 XML `<Error>` (no body for HEAD, as S3 answers). `resource`
 * is the request path; `requestId` the id also sent as `x-amz-request-id`.
 */
export function s3ErrorResponse(
  err: unknown,
  request: { method: string; resource: string; requestId: string },
): Response {
  const e = s3ErrorOf(err);
  const headers: Record<string, string> = { ...e.headers, "x-amz-request-id": request.requestId };
  if (request.method === "HEAD") return new Response(null, { status: e.status, headers });
  const body = toXml("Error", {
    Code: e.code,
    Message: e.message,
    ...e.fields,
    Resource: request.resource,
    RequestId: request.requestId,
  });
  headers["content-type"] = "application/xml";
  return new Response(body, { status: e.status, headers });
}
