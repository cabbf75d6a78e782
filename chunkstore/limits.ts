/**
 * Bounds shared by every backend, the server and its clients. Each has a reason.
 * Changing one changes what peers accept on the wire: raise, never lower.
 */

/** Largest chunk: the largest image chunk size (4 MiB, DESIGN.md) also bounds tree pages. */
export const MAX_CHUNK_BYTES = 4 * 1024 * 1024;

/** Most hashes in one batched has/get request; keeps one JSON body under ~70 KiB. */
export const MAX_BATCH_HASHES = 1024;

/** Largest batched upload or download body: 16 full 4 MiB chunks plus framing. */
export const MAX_BATCH_BYTES = 64 * 1024 * 1024 + 64 * 1024;

/**
 * Largest ref value: heads are JSON documents of a few KiB, growing by ~200 bytes per
 * snapshot and per store; 1 MiB leaves room for thousands of snapshots.
 */
export const MAX_REF_BYTES = 1024 * 1024;

/** Ref names: safe as a file name, a URL path segment and an S3 key part. */
export const REF_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@:=-]{0,199}$/;

/** Refs per scanRefs page: heads are 1-3 KiB, so a page is well under a few MiB. */
export const SCAN_REFS_DEFAULT_LIMIT = 256;

/** Largest scanRefs page a caller may ask for (bounds one answer to MAX_REF_BYTES x 1024). */
export const SCAN_REFS_MAX_LIMIT = 1024;
