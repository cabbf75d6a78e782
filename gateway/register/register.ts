/**
 * The register: small named JSON values (image heads, the cluster record, leases) that
 * every gateway reads and changes linearizably. One interface, so the embedded default (a
 * quorum of the ref-holding stores, `quorum-register.ts`) and an etcd backend for large
 * clusters are interchangeable.
 *
 * A change is a pure function of the current value: the register runs it against the
 * value it holds and writes its answer atomically, running it again if another writer got
 * there first. Nothing is ever written from a stale read.
 */

/** A JSON value as the register holds it (null means "no value"). */
export type RegisterValue = unknown;

/** What a change decided: write `value`, or keep the current one; `result` goes to the caller. */
export type Decision<T> =
  | { readonly write: RegisterValue; readonly result: T }
  | { readonly keep: true; readonly result: T };

/**
 * Computes the next value from `current` (null when the key has none). Must be pure: it
 * may run several times, against different values, before one of its answers is written.
 * Throwing aborts the update with that error.
 */
export type Change<T> = (current: RegisterValue | null) => Decision<T>;

/** Write `value`, returning `result`. */
export function write<T>(value: RegisterValue, result: T): Decision<T> {
  return { write: value, result };
}

/** Leave the current value, returning `result`. */
export function keep<T>(result: T): Decision<T> {
  return { keep: true, result };
}

/** Linearizable named values with atomic read-modify-write. */
export interface Register {
  /** The current value of `key`, or null. Sees every update that completed before the call. */
  read(key: string): Promise<RegisterValue | null>;
  /**
   * Runs `change` against the current value and writes its decision atomically. Resolves
   * with the decision's result once the write (if any) is durable on the register.
   */
  update<T>(key: string, change: Change<T>): Promise<T>;
  /** Every key that starts with `prefix` and has a value, with that value (each read as by `read`). */
  scan(prefix: string): Promise<Map<string, RegisterValue>>;
  /**
   * Removes `key` for good when its value is one nothing can tell from no value (an image's
   * tombstone): `collectable` decides on the current value. Resolves true once removed;
   * false when the value is not collectable or moved meanwhile. Absent: the backend keeps
   * every key.
   */
  collect?(key: string, collectable: (value: RegisterValue | null) => boolean): Promise<boolean>;
  /** Why {@link collect} cannot run now (a member down, excluded or without ref guards), or null. */
  collectBlocker?(): string | null;
}

/** The register could not reach enough of its members (no majority answered in time). */
export class RegisterUnavailableError extends Error {
  override readonly name = "RegisterUnavailableError";
  constructor(detail: string, options?: ErrorOptions) {
    super(`The register is unavailable: ${detail}`, options);
  }
}
