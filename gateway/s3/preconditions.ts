/**
 * Conditional requests (RFC 9110 section 13.2.2, which S3 follows): `If-Match`,
 * `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since`, evaluated in that order,
 * and `If-Range`. ETags are strong (a version's root hash); dates have second precision.
 */
import { S3Error } from "./s3-errors.ts";

/** What the preconditions say about a request. */
export type PreconditionOutcome = "proceed" | "not-modified";

/** Lists of entity tags (`"a", W/"b"`) or `*`; null when absent. */
function tagList(header: string | null): string[] | null {
  if (header === null) return null;
  return header
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t !== "");
}

const stripWeak = (tag: string) => (tag.startsWith("W/") ? tag.slice(2) : tag);
/** Clients send ETags quoted, and some unquoted: compare the quoted form. */
const quoted = (tag: string) => (tag.startsWith('"') ? tag : `"${tag}"`);

function httpDate(header: string | null): number | null {
  if (header === null) return null;
  const t = Date.parse(header);
  return Number.isNaN(t) ? null : t;
}

/**
 * Evaluates the preconditions of a read (`GET`/`HEAD`) of a version with `etag` (quoted)
 * and `lastModified`: resolves "proceed" or "not-modified" (304), throws PreconditionFailed (412).
 */
export function evaluateReadPreconditions(
  headers: Headers,
  etag: string,
  lastModified: Date,
): PreconditionOutcome {
  const modified = Math.floor(lastModified.getTime() / 1000) * 1000;
  const ifMatch = tagList(headers.get("if-match"));
  if (ifMatch !== null) {
    // Strong comparison: a weak tag never matches.
    if (!ifMatch.some((t) => t === "*" || (!t.startsWith("W/") && quoted(t) === etag)))
      throw failed("If-Match");
  } else {
    const since = httpDate(headers.get("if-unmodified-since"));
    if (since !== null && modified > since) throw failed("If-Unmodified-Since");
  }
  const ifNoneMatch = tagList(headers.get("if-none-match"));
  if (ifNoneMatch !== null) {
    if (ifNoneMatch.some((t) => t === "*" || quoted(stripWeak(t)) === etag)) return "not-modified";
  } else {
    const since = httpDate(headers.get("if-modified-since"));
    if (since !== null && modified <= since) return "not-modified";
  }
  return "proceed";
}

/** True when `If-Range` (an ETag or a date) still matches, so a Range applies; absent counts as matching. */
export function ifRangeMatches(headers: Headers, etag: string, lastModified: Date): boolean {
  const value = headers.get("if-range");
  if (value === null) return true;
  if (value.startsWith('"') || value.startsWith("W/")) return value === etag;
  const date = httpDate(value);
  return date !== null && Math.floor(lastModified.getTime() / 1000) * 1000 <= date;
}

/** The conditions of a write: `If-None-Match: *` (create only) and `If-Match: ETAG` (replace only that version). */
export function writePreconditions(headers: Headers): { ifNoneMatch?: boolean; ifMatch?: string } {
  const out: { ifNoneMatch?: boolean; ifMatch?: string } = {};
  const none = headers.get("if-none-match");
  if (none !== null) {
    if (none.trim() !== "*") throw new S3Error("NotImplemented", "If-None-Match on a write supports only *");
    out.ifNoneMatch = true;
  }
  const match = headers.get("if-match");
  if (match !== null) out.ifMatch = stripWeak(match.trim()).replace(/^"|"$/g, "");
  return out;
}

function failed(condition: string): S3Error {
  return new S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", {
    fields: { Condition: condition },
  });
}
