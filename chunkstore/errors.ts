/**
 * Errors that callers catch and act on. Everything else (bad arguments) is a
 * built-in TypeError or RangeError. Messages name the store and the value.
 */

/** The chunk is not in this store. */
export class ChunkNotFoundError extends Error {
  override readonly name = "ChunkNotFoundError";
  constructor(
    readonly store: string,
    readonly hash: string,
  ) {
    super(`Cannot read chunk "${hash}": not found in store "${store}"`);
  }
}

/** A stored copy does not match its hash (bit rot, torn write, tampering). Never served. */
export class ChunkCorruptError extends Error {
  override readonly name = "ChunkCorruptError";
  constructor(
    readonly store: string,
    readonly hash: string,
    detail: string,
  ) {
    super(`Cannot read chunk "${hash}" from store "${store}": stored copy is corrupt (${detail})`);
  }
}

/** Bytes offered for a put do not hash to the address given. Nothing was stored. */
export class HashMismatchError extends Error {
  override readonly name = "HashMismatchError";
  constructor(
    readonly store: string,
    readonly hash: string,
    readonly actual: string,
  ) {
    super(`Cannot store chunk "${hash}" in store "${store}": content hashes to "${actual}"`);
  }
}

/** The store would drop below its free-space reserve (or the disk is full). Nothing was stored. */
export class StoreFullError extends Error {
  override readonly name = "StoreFullError";
  constructor(
    readonly store: string,
    detail: string,
  ) {
    super(`Store "${store}" is full: ${detail}`);
  }
}

/** The store could not be reached or answered with a server error; the operation may be retried elsewhere. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
  constructor(
    readonly store: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`Store "${store}" is unavailable: ${detail}`, options);
  }
}

/** The store does not do this (chunk writes on a witness, refs on S3). */
export class UnsupportedOperationError extends Error {
  override readonly name = "UnsupportedOperationError";
  constructor(
    readonly store: string,
    operation: string,
  ) {
    super(`Store "${store}" does not support ${operation}`);
  }
}

/** The request was refused for lack of a valid token. */
export class UnauthorizedError extends Error {
  override readonly name = "UnauthorizedError";
  constructor(readonly store: string) {
    super(`Store "${store}" refused the request: missing or wrong bearer token`);
  }
}
