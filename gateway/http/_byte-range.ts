/**
 * `Range` and `Content-Range` headers of the image data routes (RFC 9110 sections 14.2
 * and 14.4), single byte ranges only. Malformed headers are refused (TypeError, 400)
 * rather than ignored: a tool that asked for a range must not get the whole image.
 */
import { RangeNotSatisfiableError } from "./http-errors.ts";

/** A byte range; `end` is exclusive. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/**
 * The range a `Range: bytes=a-b` (or `a-`, or suffix `-n`) header asks of an image of
 * `size` bytes, clipped to the image; null without a header. Throws
 * RangeNotSatisfiableError (416) when it starts past the end.
 */
export function parseRangeHeader(header: string | undefined, size: number): ByteRange | null {
  if (header === undefined) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) {
    throw new TypeError(
      `Range "${header}" is not one byte range "bytes=FIRST-LAST" (multiple ranges are not supported)`,
    );
  }
  const first = m[1] === "" ? null : Number(m[1]);
  const last = m[2] === "" ? null : Number(m[2]);
  if (first === null) {
    // Suffix range: the last `last` bytes.
    if (last === 0 || size === 0) throw new RangeNotSatisfiableError(header, size);
    return { start: Math.max(0, size - last!), end: size };
  }
  if (last !== null && last < first) throw new TypeError(`Range "${header}" ends before it starts`);
  if (first >= size) throw new RangeNotSatisfiableError(header, size);
  return { start: first, end: last === null ? size : Math.min(last + 1, size) };
}

/** The range a `Content-Range: bytes a-b/total` (total may be `*`) header names. */
export function parseContentRange(header: string): ByteRange {
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(header);
  const start = Number(m?.[1]);
  const last = Number(m?.[2]);
  if (!m || !Number.isSafeInteger(start) || !Number.isSafeInteger(last) || last < start) {
    throw new TypeError(`Content-Range "${header}" is not "bytes FIRST-LAST/TOTAL" (TOTAL may be *)`);
  }
  return { start, end: last + 1 };
}
