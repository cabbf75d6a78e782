/**
 * The head: the small mutable record naming an image's current version, kept as the
 * ref `head.<image>` on every head-holding store and written with compare-and-set.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { isHash } from "../../chunkstore/hash.ts";
import { ZERO_HASH } from "./block-map.ts";

/** What a store is known to hold in full: generation and root of that version. */
export interface SyncedVersion {
  readonly generation: number;
  readonly root: Hash;
  /** Image size of that version (its block map's height follows from it). */
  readonly size?: number;
}

/** A frozen version of an image. */
export interface Snapshot {
  readonly root: Hash;
  readonly size: number;
  readonly generation: number;
  readonly createdAt: string;
}

/** An image head (see DESIGN.md, "Data model"). */
export interface Head {
  readonly name: string;
  readonly size: number;
  readonly chunkSize: number;
  readonly root: Hash;
  /** Bumped on every commit. */
  readonly generation: number;
  /** Owner epoch: bumped when a gateway opens the image for writing (fencing). */
  readonly epoch: number;
  /** Per store id: the last version that store holds in full. */
  readonly synced: Readonly<Record<string, SyncedVersion>>;
  readonly snapshots: Readonly<Record<string, Snapshot>>;
  readonly createdAt: string;
}

/** Image names: safe in a ref name, a URL, an NBD export name; `@` is kept for snapshots. */
export const IMAGE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Smallest and largest chunk size (DESIGN.md): powers of two from 4 KiB to 4 MiB. */
export const MIN_CHUNK_SIZE = 4 * 1024;
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024;
export const DEFAULT_CHUNK_SIZE = 64 * 1024;

/** Ref name of an image's head. */
export function headRef(image: string): string {
  return `head.${image}`;
}

/** Throws a TypeError unless `name` is a valid image or snapshot name. */
export function assertImageName(name: unknown, what = "image"): asserts name is string {
  if (typeof name !== "string" || !IMAGE_NAME_PATTERN.test(name)) {
    throw new TypeError(
      `Invalid ${what} name ${JSON.stringify(name)}: use 1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit`,
    );
  }
}

/** Throws a RangeError unless `chunkSize` is a power of two within bounds. */
export function assertChunkSize(chunkSize: number): void {
  if (
    !Number.isInteger(chunkSize) ||
    chunkSize < MIN_CHUNK_SIZE ||
    chunkSize > MAX_CHUNK_SIZE ||
    (chunkSize & (chunkSize - 1)) !== 0
  ) {
    throw new RangeError(`Invalid chunk size ${chunkSize}: use a power of two from 4096 to 4194304`);
  }
}

/** Throws a RangeError unless `size` is a usable image size for `chunkSize`. */
export function assertImageSize(size: number): void {
  // NBD sizes are u64, but sizes past 2^53 are not exact JavaScript numbers.
  if (!Number.isSafeInteger(size) || size < 0 || size % 512 !== 0) {
    throw new RangeError(`Invalid image size ${size}: use a whole number of 512-byte sectors`);
  }
}

/** A new, empty head. */
export function newHead(name: string, size: number, chunkSize: number, root: Hash = ZERO_HASH): Head {
  return {
    name,
    size,
    chunkSize,
    root,
    generation: 1,
    epoch: 0,
    synced: {},
    snapshots: {},
    createdAt: new Date().toISOString(),
  };
}

/** Serializes a head for storing as a ref. */
export function encodeHead(head: Head): string {
  return JSON.stringify(head);
}

/** Parses and validates a stored head; throws on anything malformed. */
export function decodeHead(value: string): Head {
  const h = JSON.parse(value) as Head;
  if (
    typeof h !== "object" ||
    h === null ||
    !isHash(h.root) ||
    !Number.isSafeInteger(h.size) ||
    !Number.isSafeInteger(h.generation) ||
    !Number.isSafeInteger(h.epoch) ||
    typeof h.synced !== "object" ||
    typeof h.snapshots !== "object"
  ) {
    throw new TypeError(`Malformed image head: ${value.slice(0, 200)}`);
  }
  return h;
}

/** Orders heads by (epoch, generation): the newest one wins when stores disagree. */
export function newer(a: Head, b: Head): boolean {
  return a.epoch !== b.epoch ? a.epoch > b.epoch : a.generation > b.generation;
}

/** Number of chunks in an image. */
export function blockCount(head: Pick<Head, "size" | "chunkSize">): number {
  return Math.ceil(head.size / head.chunkSize);
}

/**
 * `synced` for a new generation: a data store stays in sync only if it held the previous
 * generation in full and none of this commit's writes to it failed.
 */
export function advanceSynced(
  prev: Head,
  next: Pick<Head, "generation" | "root" | "size">,
  dataStoreIds: readonly string[],
  failedStores: ReadonlySet<string>,
): Record<string, SyncedVersion> {
  const synced: Record<string, SyncedVersion> = {};
  for (const id of dataStoreIds) {
    const was = prev.synced[id];
    const inSync = !failedStores.has(id) && was?.generation === prev.generation;
    synced[id] = inSync
      ? { generation: next.generation, root: next.root, size: next.size }
      : (was ?? { generation: 0, root: ZERO_HASH, size: 0 });
  }
  return synced;
}
