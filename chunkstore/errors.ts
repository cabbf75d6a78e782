/**
 * Errors that callers catch and act on. Everything else (bad arguments) is a
 * built-in TypeError or RangeError. Messages name the store and the value.
 */

/** The chunk is not in this store. */
export class ChunkNotFoundError extends Error {
  override readonly name = "ChunkNotFoundError";
  readonly store: string;
  readonly hash: string;

  constructor(store: string, hash: string) {
    super(`Cannot read chunk "${hash}": not found in store "${store}"`);
    this.store = store;
    this.hash = hash;
  }
}

/** A stored copy does not match its hash (bit rot, torn write, tampering). Never served. */
export class ChunkCorruptError extends Error {
  override readonly name = "ChunkCorruptError";
  readonly store: string;
  readonly hash: string;

  constructor(store: string, hash: string, detail: string) {
    super(`Cannot read chunk "${hash}" from store "${store}": stored copy is corrupt (${detail})`);
    this.store = store;
    this.hash = hash;
  }
}

/** Bytes offered for a put do not hash to the address given. Nothing was stored. */
export class HashMismatchError extends Error {
  override readonly name = "HashMismatchError";
  readonly store: string;
  readonly hash: string;
  readonly actual: string;

  constructor(store: string, hash: string, actual: string) {
    super(`Cannot store chunk "${hash}" in store "${store}": content hashes to "${actual}"`);
    this.store = store;
    this.hash = hash;
    this.actual = actual;
  }
}

/** The store would drop below its free-space reserve (or the disk is full). Nothing was stored. */
export class StoreFullError extends Error {
  override readonly name = "StoreFullError";
  readonly store: string;

  constructor(store: string, detail: string) {
    super(`Store "${store}" is full: ${detail}`);
    this.store = store;
  }
}

/** The store could not be reached or answered with a server error; the operation may be retried elsewhere. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
  readonly store: string;

  constructor(store: string, detail: string, options?: ErrorOptions) {
    super(`Store "${store}" is unavailable: ${detail}`, options);
    this.store = store;
  }
}

/** The store does not do this (chunk writes on a witness, refs on S3). */
export class UnsupportedOperationError extends Error {
  override readonly name = "UnsupportedOperationError";
  readonly store: string;

  constructor(store: string, operation: string) {
    super(`Store "${store}" does not support ${operation}`);
    this.store = store;
  }
}

/** The request was refused for lack of a valid token. */
export class UnauthorizedError extends Error {
  override readonly name = "UnauthorizedError";
  readonly store: string;

  constructor(store: string) {
    super(`Store "${store}" refused the request: missing or wrong bearer token`);
    this.store = store;
  }
}

/**
 * The store answered with another identity than the one expected: the disk behind this
 * address was wiped or replaced. Nothing was read or written.
 */
export class StoreIdentityError extends Error {
  override readonly name = "StoreIdentityError";
  readonly store: string;
  readonly expected: string;
  readonly actual: string | null;

  constructor(store: string, expected: string, actual: string | null) {
    super(
      `Store "${store}" is not the store it was: expected identity ${expected}, it answers as ${actual ?? "a store without an identity"} (wiped or replaced)`,
    );
    this.store = store;
    this.expected = expected;
    this.actual = actual;
  }
}

/** The store's directory is in use by another process. */
export class StoreLockedError extends Error {
  override readonly name = "StoreLockedError";
  readonly store: string;
  readonly holder: string;

  constructor(store: string, holder: string) {
    super(`Store "${store}" is in use by another process (${holder}); one store directory, one process`);
    this.store = store;
    this.holder = holder;
  }
}
