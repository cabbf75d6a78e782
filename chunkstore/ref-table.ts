/**
 * Refs kept in memory with integer versions: the compare-and-set logic shared by the
 * memory backend and (with persistence around it) the file backend.
 */
import type { CasResult, RefEntry, RefGuard, RefPage } from "./chunk-store.ts";
import { MAX_REF_BYTES, SCAN_REFS_DEFAULT_LIMIT, SCAN_REFS_MAX_LIMIT } from "./limits.ts";
import { assertRefName } from "./ref-name.ts";

/** Validates a ref write's arguments (name, value size). */
export function assertRefWrite(name: string, value: string): void {
  assertRefName(name);
  if (typeof value !== "string") throw new TypeError(`Ref "${name}" value must be a string`);
  const size = new TextEncoder().encode(value).byteLength;
  if (size > MAX_REF_BYTES)
    throw new RangeError(`Ref "${name}" is ${size} bytes; the limit is ${MAX_REF_BYTES}`);
}

/** Validates a guard: another valid ref name, a version string or null. */
export function assertGuard(name: string, guard: RefGuard): void {
  if (guard === null || typeof guard !== "object")
    throw new TypeError(`Ref "${name}" guard must be {name, version}`);
  assertRefName(guard.name);
  if (guard.name === name) throw new TypeError(`Ref "${name}" cannot guard itself`);
  if (guard.version !== null && typeof guard.version !== "string")
    throw new TypeError(`Ref "${name}" guard version must be a string or null`);
}

/** In-memory ref map with compare-and-set; versions are increasing integers as strings. */
export class RefTable {
  readonly #refs = new Map<string, RefEntry>();

  get(name: string): RefEntry | null {
    assertRefName(name);
    return this.#refs.get(name) ?? null;
  }

  /** Returns the entry a successful CAS would store, or the conflict; does not change anything. */
  prepare(name: string, expected: string | null, value: string, guard?: RefGuard): RefEntry | CasResult {
    assertRefWrite(name, value);
    if (guard !== undefined) assertGuard(name, guard);
    const current = this.#refs.get(name) ?? null;
    if ((current?.version ?? null) !== expected) return { ok: false, current };
    if (guard && (this.#refs.get(guard.name)?.version ?? null) !== guard.version)
      return { ok: false, current };
    const version = String(Number(current?.version ?? "0") + 1);
    return { value, version };
  }

  set(name: string, entry: RefEntry): void {
    this.#refs.set(name, entry);
  }

  remove(name: string): void {
    this.#refs.delete(name);
  }

  /** One page of refs starting with `prefix`, after `after`, in name order. */
  scan(prefix: string, options: { after?: string; limit?: number } = {}): RefPage {
    const limit = scanLimit(options);
    const names = this.names(prefix).filter((n) => options.after === undefined || n > options.after);
    const page = names.slice(0, limit);
    return {
      refs: page.map((name) => ({ name, ...this.#refs.get(name)! })),
      next: names.length > limit ? page[page.length - 1]! : null,
    };
  }

  /** Sorted names that start with `prefix`. */
  names(prefix = ""): string[] {
    return [...this.#refs.keys()].filter((n) => n.startsWith(prefix)).sort();
  }
}

/** Validates scanRefs options; returns the page size. */
export function scanLimit(options: { after?: string; limit?: number } = {}): number {
  const limit = options.limit ?? SCAN_REFS_DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > SCAN_REFS_MAX_LIMIT)
    throw new RangeError(`Ref scan limit ${limit} must be an integer from 1 to ${SCAN_REFS_MAX_LIMIT}`);
  if (options.after !== undefined && typeof options.after !== "string")
    throw new TypeError("Ref scan `after` must be a ref name");
  return limit;
}

/** Type guard: a prepared entry rather than a conflict. */
export function isPrepared(result: RefEntry | CasResult): result is RefEntry {
  return "value" in result;
}
