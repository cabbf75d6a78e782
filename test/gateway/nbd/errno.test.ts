import { describe, expect, test } from "bun:test";
import { NBD_ERRNO } from "../../../gateway/nbd/constants.ts";
import { errnoFor } from "../../../gateway/nbd/errno.ts";

function named(name: string): Error {
  const e = new Error("x");
  e.name = name;
  return e;
}

describe("errnoFor", () => {
  test.each([
    ["RangeError", new RangeError("bad offset"), NBD_ERRNO.EINVAL],
    ["StoreFullError (by name, no import)", named("StoreFullError"), NBD_ERRNO.ENOSPC],
    ["QuotaExceededError DOMException", new DOMException("full", "QuotaExceededError"), NBD_ERRNO.ENOSPC],
    ["ReadOnlyError", named("ReadOnlyError"), NBD_ERRNO.EPERM],
    ["NotAllowedError DOMException", new DOMException("no", "NotAllowedError"), NBD_ERRNO.EPERM],
    [
      "NotSupportedError DOMException (slow fast-zero)",
      new DOMException("slow", "NotSupportedError"),
      NBD_ERRNO.ENOTSUP,
    ],
    ["StoreUnavailableError", named("StoreUnavailableError"), NBD_ERRNO.EIO],
    ["ChunkCorruptError", named("ChunkCorruptError"), NBD_ERRNO.EIO],
    ["TypeError (a bug)", new TypeError("oops"), NBD_ERRNO.EIO],
    ["a thrown string", "boom", NBD_ERRNO.EIO],
    ["undefined", undefined, NBD_ERRNO.EIO],
  ])("%s", (_label, error, expected) => {
    expect(errnoFor(error)).toBe(expected);
  });
});
