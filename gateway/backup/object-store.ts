/**
 * The port a backup repository is written through: a flat namespace of immutable or
 * conditionally written objects (an S3 bucket under a prefix). One backend per file:
 * `s3-object-store.ts` (any S3-compatible server), `memory-object-store.ts` (tests).
 * Keys are relative to the repository's prefix.
 */

/** An object as listed. */
export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
}

/** Conditions on a put (S3 `If-None-Match: *` and `If-Match: ETAG`). */
export interface PutCondition {
  /** Only if no object of that key exists. */
  readonly ifNoneMatch?: boolean;
  /** Only if the object's current ETag is this one. */
  readonly ifMatch?: string;
}

/** Objects of one repository. */
export interface ObjectStore {
  /** `s3://bucket/prefix`, for messages. */
  readonly name: string;
  /** The object's bytes, or null when it does not exist. */
  get(key: string): Promise<Uint8Array | null>;
  /** Bytes `[start, end)` of the object, or null when it does not exist. */
  getRange(key: string, start: number, end: number): Promise<Uint8Array | null>;
  /** ETag and size, or null. */
  head(key: string): Promise<{ etag: string; size: number } | null>;
  /**
   * Writes the object. A failed condition throws PreconditionFailedError; any other
   * failure may have been applied or not (read back where it matters: the lock does).
   */
  put(key: string, bytes: Uint8Array, condition?: PutCondition): Promise<void>;
  /** Removes the object (no error when it is absent). */
  delete(key: string): Promise<void>;
  /** Every object whose key starts with `prefix`, in key order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  close(): Promise<void>;
}
