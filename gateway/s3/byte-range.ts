/**
 * The `Range` header of GetObject, as S3 reads it: one byte range (`bytes=a-b`, `bytes=a-`,
 * `bytes=-n`). A header S3 would not understand (another unit, several ranges, bad
 * syntax) is ignored and the whole object is sent, as S3 does; a range that starts past
 * the end is InvalidRange (416).
 */
import { S3Error } from "./s3-errors.ts";

/** A byte range; `end` is exclusive. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/** The range `header` asks of an object of `size` bytes, clipped to it; null for the whole object. */
export function parseRange(header: string | null | undefined, size: number): ByteRange | null {
  if (header === null || header === undefined) return null;
  const m = /^\s*bytes=(\d*)-(\d*)\s*$/.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) return null;
  const first = m[1] === "" ? null : Number(m[1]);
  const last = m[2] === "" ? null : Number(m[2]);
  if ((first !== null && !Number.isSafeInteger(first)) || (last !== null && !Number.isSafeInteger(last)))
    return null;
  const unsatisfiable = () =>
    new S3Error("InvalidRange", "The requested range is not satisfiable", {
      fields: { RangeRequested: header.trim(), ActualObjectSize: String(size) },
      headers: { "content-range": `bytes */${size}` },
    });
  if (first === null) {
    if (last === 0 || size === 0) throw unsatisfiable();
    return { start: Math.max(0, size - last!), end: size };
  }
  if (last !== null && last < first) return null; // RFC 9110: an invalid range is ignored
  if (first >= size) throw unsatisfiable();
  return { start: first, end: last === null ? size : Math.min(last + 1, size) };
}
