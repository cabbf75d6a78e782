/**
 * Listing logic of ListObjectsV2 and ListObjects (v1), without I/O: keys in UTF-8 binary
 * order, `prefix`, `delimiter` (common prefixes), a start point (`start-after`, `marker`
 * or a continuation token) and `max-keys`.
 */

/** Most keys one listing returns: S3's limit. */
export const MAX_LIST_KEYS = 1000;

/** One listing request. */
export interface ListQuery {
  readonly prefix: string;
  readonly delimiter: string;
  /** List keys strictly after this one (a common prefix here skips everything under it). */
  readonly after: string;
  readonly maxKeys: number;
}

/** One page of a listing. */
export interface ListPage<T> {
  readonly contents: T[];
  readonly commonPrefixes: string[];
  readonly isTruncated: boolean;
  /** The last key or common prefix returned: where the next page starts. */
  readonly last: string | null;
}

const encoder = new TextEncoder();

/** Compares strings by their UTF-8 bytes (S3's key order), not by UTF-16 code units. */
export function compareUtf8(a: string, b: string): number {
  if (a === b) return 0;
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

/** One page over `objects` (any order) for `query`. */
export function listPage<T extends { readonly key: string }>(
  objects: readonly T[],
  query: ListQuery,
): ListPage<T> {
  const sorted = objects
    .filter((o) => o.key.startsWith(query.prefix) && compareUtf8(o.key, query.after) > 0)
    .sort((a, b) => compareUtf8(a.key, b.key));
  const contents: T[] = [];
  const commonPrefixes: string[] = [];
  let last: string | null = null;
  let isTruncated = false;
  const skipUnder =
    query.delimiter !== "" && query.after.startsWith(query.prefix) && query.after.endsWith(query.delimiter)
      ? query.after
      : null;
  for (const o of sorted) {
    if (skipUnder !== null && o.key.startsWith(skipUnder)) continue;
    let common: string | null = null;
    if (query.delimiter !== "") {
      const at = o.key.indexOf(query.delimiter, query.prefix.length);
      if (at >= 0) common = o.key.slice(0, at + query.delimiter.length);
    }
    if (common !== null && common === commonPrefixes.at(-1)) continue;
    if (contents.length + commonPrefixes.length >= query.maxKeys) {
      isTruncated = true;
      break;
    }
    if (common !== null) {
      commonPrefixes.push(common);
      last = common;
    } else {
      contents.push(o);
      last = o.key;
    }
  }
  return { contents, commonPrefixes, isTruncated, last };
}
