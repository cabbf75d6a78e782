import { describe, expect, test } from "bun:test";
import { ChunkNotFoundError, StoreFullError } from "../../../chunkstore/errors.ts";
import {
  ImageExistsError,
  ImageNotFoundError,
  NotEnoughReplicasError,
  ReadOnlyError,
  StaleEpochError,
} from "../../../gateway/errors.ts";
import {
  ImageAttachedError,
  ImageHasSnapshotsError,
  VersionChangedError,
} from "../../../gateway/s3/image-catalog.ts";
import { S3Error, s3ErrorOf, s3ErrorResponse } from "../../../gateway/s3/s3-errors.ts";

describe("S3 error mapping", () => {
  test("domain errors map to S3 codes and statuses", () => {
    const cases: [unknown, string, number][] = [
      [new ImageNotFoundError("a"), "NoSuchKey", 404],
      [new ImageExistsError("a"), "PreconditionFailed", 412],
      [new ImageAttachedError("a", "replace"), "ImageAttached", 409],
      [new ImageHasSnapshotsError("a", ["s"]), "ImageHasSnapshots", 409],
      [new VersionChangedError("a", "1", "2"), "PreconditionFailed", 412],
      [new ReadOnlyError("a@s"), "InvalidRequest", 400],
      [new StaleEpochError("a", 1, 2), "OperationAborted", 409],
      [new NotEnoughReplicasError("x"), "ServiceUnavailable", 503],
      [new ChunkNotFoundError("s", "h"), "ServiceUnavailable", 503],
      [new StoreFullError("s", "full"), "InsufficientStorage", 507],
      [new RangeError("bad size"), "InvalidArgument", 400],
      [new TypeError("bad name"), "InvalidArgument", 400],
      [new S3Error("SignatureDoesNotMatch", "no"), "SignatureDoesNotMatch", 403],
      [new S3Error("NotImplemented", "no"), "NotImplemented", 501],
    ];
    for (const [err, code, status] of cases) expect(s3ErrorOf(err)).toMatchObject({ code, status });
  });

  test("an unexpected error is InternalError (500) and its message is kept", () => {
    const quiet = console.error;
    console.error = () => {};
    try {
      expect(s3ErrorOf(new Error("boom"))).toMatchObject({
        code: "InternalError",
        status: 500,
        message: "Internal error: boom",
      });
    } finally {
      console.error = quiet;
    }
  });

  test("the response is S3 XML with code, message, extra fields, resource and request id; HEAD has no body", async () => {
    const err = new S3Error("InvalidRange", "no", {
      fields: { ActualObjectSize: "5" },
      headers: { "content-range": "bytes */5" },
    });
    const res = s3ErrorResponse(err, { method: "GET", resource: "/images/a", requestId: "R1" });
    expect(res.status).toBe(416);
    expect(res.headers.get("content-range")).toBe("bytes */5");
    expect(res.headers.get("x-amz-request-id")).toBe("R1");
    expect(await res.text()).toBe(
      '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidRange</Code><Message>no</Message><ActualObjectSize>5</ActualObjectSize><Resource>/images/a</Resource><RequestId>R1</RequestId></Error>',
    );
    const head = s3ErrorResponse(new ImageNotFoundError("a"), {
      method: "HEAD",
      resource: "/images/a",
      requestId: "R2",
    });
    expect(head.status).toBe(404);
    expect(await head.text()).toBe("");
  });
});
