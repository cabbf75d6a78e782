/**
 * Store identities: a random UUID made when a store is first initialised and kept with
 * its data. It is what "in sync" is recorded against: a wiped or replaced disk at the same
 * address answers with another identity and so holds nothing it held before.
 */
import { StoreIdentityError } from "./errors.ts";

/** UUIDs, lower case (RFC 9562 text form). */
const IDENTITY_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A new identity. */
export function newIdentity(): string {
  return crypto.randomUUID();
}

/** True for a well-formed identity. */
export function isIdentity(value: unknown): value is string {
  return typeof value === "string" && IDENTITY_PATTERN.test(value);
}

/**
 * The identity a caller expects of a store (set with `expectIdentity`). In-process stores
 * know their own identity and check it on every call; remote ones send it along.
 */
export class IdentityExpectation {
  #expected: string | null = null;

  get expected(): string | null {
    return this.#expected;
  }

  set(identity: string | null): void {
    if (identity !== null && !isIdentity(identity))
      throw new TypeError(`Invalid store identity ${JSON.stringify(identity)}: expected a UUID`);
    this.#expected = identity;
  }

  /** Throws StoreIdentityError unless `actual` is the expected identity (or nothing is expected). */
  check(store: string, actual: string | null): void {
    if (this.#expected !== null && actual !== this.#expected)
      throw new StoreIdentityError(store, this.#expected, actual);
  }
}
