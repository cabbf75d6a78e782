/**
 * The one interface every chunk store backend implements: content-addressed chunks
 * (immutable, verified on write and on read) plus small named refs written with
 * compare-and-set (image heads live there).
 *
 * Backends: `memory-store.ts`, `file-store.ts`, `http-store.ts`, `s3-store.ts`; all pass
 * the shared conformance suite in `test/chunkstore/conformance.ts`.
 */

/** A chunk address: BLAKE3-256 of the content, 64 lowercase hex characters. */
export type Hash = string;

/** What a backend can do; callers (gateway, heal, server) decide from this, not from its type. */
export interface StoreCapabilities {
  /** Holds chunks. False for a witness, which keeps refs only. */
  readonly chunks: boolean;
  /** Holds refs (heads). False for S3 buckets: heads live on file, http and witness stores. */
  readonly refs: boolean;
  /** Survives a restart of the process that holds it (false only for memory). */
  readonly persistent: boolean;
  /**
   * Garbage collection can delete from it safely (condemn, revive on put, sweep). False for
   * S3 buckets (no atomic "delete unless written since"): they are never swept.
   */
  readonly sweep?: boolean;
  /**
   * In this process (file, memory): a put of a chunk it holds costs one index lookup and
   * no transfer, so asking `has` first only doubles the lookups. Never learned from a
   * remote store's answer.
   */
  readonly local?: boolean;
  /**
   * A compare-and-set honours a {@link RefGuard} (checked in the same atomic step). The
   * register collects deleted keys only when every member can (gateway/register/).
   */
  readonly refGuards?: boolean;
}

/**
 * A second ref that a compare-and-set checks in the same atomic step: the write happens
 * only if ref `name` is at `version` (null: it must not exist).
 */
export interface RefGuard {
  readonly name: string;
  readonly version: string | null;
}

/** A ref as read: its value and the opaque version to pass to {@link ChunkStore.casRef}. */
export interface RefEntry {
  readonly value: string;
  readonly version: string;
}

/** Outcome of a compare-and-set on a ref. On conflict, `current` is what the store holds now. */
export type CasResult =
  | { readonly ok: true; readonly version: string }
  | { readonly ok: false; readonly current: RefEntry | null };

/** Counters of a store. `freeBytes` is null where the backend cannot know (S3). */
export interface StoreStats {
  readonly chunks: number;
  readonly bytes: number;
  readonly freeBytes: number | null;
  /** Bytes on disk held by deleted chunks, freed by compaction (file stores). */
  readonly reclaimableBytes?: number;
  /**
   * The store is at its high-water mark and takes no new chunks now (file stores: free
   * space within {@link import("./file-store.ts").FULL_MARGIN_BYTES} of the reserve, or a put
   * was just refused for space). Absent: the store cannot tell (S3), never full.
   */
  readonly full?: boolean;
}

/** What a sweep deleted. */
export interface SweepResult {
  readonly deleted: number;
  readonly bytes: number;
}

/** One chunk to write. */
export interface ChunkPut {
  readonly hash: Hash;
  readonly bytes: Uint8Array;
}

/** A ref with its name, as {@link ChunkStore.scanRefs} returns it. */
export interface NamedRef extends RefEntry {
  readonly name: string;
}

/** One page of {@link ChunkStore.scanRefs}. */
export interface RefPage {
  readonly refs: readonly NamedRef[];
  /** Pass as `after` for the next page; null when this was the last. */
  readonly next: string | null;
}

/** What {@link ChunkStore.probe} learns from the store itself. */
export interface StoreProbe {
  /**
   * The store's identity: a random UUID created when the store was first initialised and
   * kept with its data (a file, an object, the server's directory). A wiped or replaced
   * disk answers with another one: it holds nothing it held before.
   */
  readonly identity: string;
  readonly capabilities: StoreCapabilities;
}

/** Options for {@link ChunkStore.list}. */
export interface ListOptions {
  /** Start strictly after this hash (hash order). */
  readonly after?: Hash;
}

/**
 * Content-addressed chunk storage with refs.
 *
 * Invariants every backend keeps (and the conformance suite checks):
 * - `put` verifies the bytes against the hash; on mismatch it throws
 *   {@link import("./errors.ts").HashMismatchError} and stores nothing. (Bytes this process
 *   hashed itself are taken as hashed: `hashed-here.ts`; reads still verify them.)
 * - `get` verifies what it read; a bad copy throws `ChunkCorruptError`, never wrong bytes.
 * - A resolved `put`/`putMany` is durable (for persistent backends).
 * - `list` yields every stored hash exactly once, in ascending hash order.
 */
export interface ChunkStore {
  /** Short name used in error messages and logs (for example `file:/data/a`). */
  readonly name: string;
  readonly capabilities: StoreCapabilities;

  /** Batched existence check: one boolean per hash, in order. */
  has(hashes: readonly Hash[]): Promise<boolean[]>;
  /** Reads and verifies a chunk. Throws `ChunkNotFoundError` or `ChunkCorruptError`. */
  get(hash: Hash): Promise<Uint8Array>;
  /** Batched read: one entry per hash, `undefined` where the chunk is absent. Verified. */
  getMany(hashes: readonly Hash[]): Promise<(Uint8Array | undefined)[]>;
  /** Stores a chunk after verifying it; reports whether it was already there. */
  put(hash: Hash, bytes: Uint8Array): Promise<{ existed: boolean }>;
  /** Batched put: all chunks are verified before any is stored; one result per chunk. */
  putMany(chunks: readonly ChunkPut[]): Promise<{ existed: boolean }[]>;
  /** Removes a chunk (repair of a corrupt copy). Resolves true if it was there. */
  delete(hash: Hash): Promise<boolean>;
  /**
   * Garbage collection, step 1: marks the stored ones of `hashes` as condemned by the pass
   * `token`. Any later put of a condemned chunk revives it. Resolves with how many were
   * condemned. Throws UnsupportedOperationError where `capabilities.sweep` is false.
   */
  condemn(hashes: readonly Hash[], token: string): Promise<number>;
  /** Garbage collection, step 2: deletes those of `hashes` still condemned by pass `token`. */
  sweep(hashes: readonly Hash[], token: string): Promise<SweepResult>;
  /** Every stored hash in ascending order, optionally after a given hash. */
  list(options?: ListOptions): AsyncIterable<Hash>;
  stats(): Promise<StoreStats>;

  /** Reads a ref, or null when it does not exist. */
  getRef(name: string): Promise<RefEntry | null>;
  /**
   * Compare-and-set: writes `value` if the ref's version is `expected`
   * (`null` = the ref must not exist yet), and `guard`, if given, holds too (a failed guard
   * is a conflict like any other). Durable when it resolves `ok`.
   */
  casRef(name: string, expected: string | null, value: string, guard?: RefGuard): Promise<CasResult>;
  /** Deletes a ref if its version is `expected`. */
  deleteRef(name: string, expected: string): Promise<CasResult>;
  /** Names of all refs that start with `prefix`, sorted. */
  listRefs(prefix?: string): Promise<string[]>;

  /** Refs whose names start with `prefix`, with values and versions, in name order, a page at a time. */
  scanRefs(prefix: string, options?: { after?: string; limit?: number }): Promise<RefPage>;

  /** Asks the store who it is and what it can do (a fresh request for remote stores). */
  probe(): Promise<StoreProbe>;
  /**
   * From now on, every request must reach the store whose identity is `identity`: one that
   * answers with another (a wiped or replaced disk behind the same address) fails with
   * `StoreIdentityError` and changes nothing. Null lifts the condition.
   */
  expectIdentity(identity: string | null): void;

  /** Releases files, sockets and timers. The store is unusable afterwards. */
  close(): Promise<void>;
}
