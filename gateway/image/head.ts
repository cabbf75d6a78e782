/**
 * The head: the small record naming an image's current version, its owner and its replica
 * state, kept in the register as `head.<image>` (gateway/register/). Heads change only
 * through `head-writer.ts`.
 *
 * FROZEN format 2 (add fields, never rename):
 * - `incarnation`: made new by every create, so a delete and a re-create under the same
 *   name are distinct and nothing of the old one (a connection, a cache, a commit) can
 *   touch the new one.
 * - `generation`: bumped by every change of the head, never reset while the name has a head
 *   or a tombstone (a re-create continues from its tombstone's; once garbage collection
 *   removed the tombstone, a re-create starts at 1: the incarnation tells them apart).
 * - `epoch`, `owner`: the gateway that may commit data, and the epoch it took ownership at.
 *   Ownership moves only when another gateway writes (takeover: epoch + 1).
 * - `synced[store]`: the last generation at which that store held, in full, every chunk
 *   placed on it of every root the head named then (current root and snapshots), and the
 *   store identity it was recorded for. An entry for another identity than the store has
 *   now (a replaced disk) counts as nothing, and so does one for another placement epoch
 *   (`placement`, absent: 0): after the store set changed, what is placed on a store did.
 * - `tails[store]`: a heal is under way: every content commit from generation `from` on
 *   reached the store in full (commits keep or drop it), so once the heal has copied the
 *   version it started from, the store holds the current one too.
 * - `leaving`: the stores in maintenance when the head was last stamped; commits count
 *   no copy on them toward minReplicas.
 * - `commitId`, `recentCommits`: a unique id per change, and the last few, so that a
 *   change retried after an uncertain outcome recognises itself.
 * - `gcEpoch`: the last garbage collection barrier stamped into the head (gateway/gc/).
 * - `gcPending`: present while content that arrived without the head (a clone, an import
 *   into a new head) is not yet confirmed against the barrier: the epoch read before it was put.
 * A deleted image leaves a tombstone (`deleted: true`) that only a create replaces, until
 * a garbage collection pass removes it from the register (gateway/gc/collector.ts).
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { isHash } from "../../chunkstore/hash.ts";
import { ZERO_HASH } from "./block-map.ts";

/** What a store held in full at a generation. */
export interface SyncedVersion {
  readonly generation: number;
  readonly root: Hash;
  readonly size: number;
  readonly identity: string;
  /** The placement epoch (cluster record) it was held under; absent: 0. */
  readonly placement?: number;
}

/** A heal in progress on a store: every content commit since `from` reached it. */
export interface Tail {
  readonly from: number;
  readonly identity: string;
  /** The placement epoch the heal copies under; commits under another break the tail. Absent: 0. */
  readonly placement?: number;
}

/** What a synced entry must match to count now: the store's identity and the placement epoch. */
export interface HolderNow {
  readonly identity: string | undefined;
  readonly placement: number;
}

/** A frozen version of an image. */
export interface Snapshot {
  readonly root: Hash;
  readonly size: number;
  /** The head's generation when the snapshot was taken (it is named from the next one on). */
  readonly generation: number;
  readonly createdAt: string;
}

/** A live image's head. */
export interface Head {
  readonly format: 2;
  readonly name: string;
  readonly incarnation: string;
  readonly size: number;
  readonly chunkSize: number;
  readonly root: Hash;
  readonly generation: number;
  readonly epoch: number;
  readonly owner: string | null;
  readonly synced: Readonly<Record<string, SyncedVersion>>;
  readonly tails: Readonly<Record<string, Tail>>;
  readonly snapshots: Readonly<Record<string, Snapshot>>;
  readonly leaving: readonly string[];
  readonly commitId: string;
  readonly recentCommits: readonly string[];
  readonly createdAt: string;
  readonly updatedAt: string;
  /** `image@snapshot` this image was cloned from. */
  readonly clonedFrom?: string;
  /**
   * The garbage collection barrier this head was stamped with (the cluster record's
   * `gcEpoch`): a content commit whose chunk puts came before it must put them again.
   */
  readonly gcEpoch?: number;
  /**
   * Set while the head's content is unconfirmed: it was put before the head existed, under
   * barrier `gcPending`. {@link import("./head-writer.ts").confirmHead} clears it.
   */
  readonly gcPending?: number;
}

/** What a delete leaves: only a create replaces it, and nothing of the old incarnation can commit. */
export interface Tombstone {
  readonly format: 2;
  readonly name: string;
  readonly deleted: true;
  readonly incarnation: string;
  readonly generation: number;
  readonly epoch: number;
  readonly commitId: string;
  readonly recentCommits: readonly string[];
  readonly deletedAt: string;
  readonly deletedBy: string;
}

/** What the register holds for an image. */
export type HeadValue = Head | Tombstone;

/** Image names: safe in a register key, a URL, an NBD export name; `@` is kept for snapshots. */
export const IMAGE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Smallest and largest chunk size (DESIGN.md): powers of two from 4 KiB to 4 MiB. */
export const MIN_CHUNK_SIZE = 4 * 1024;
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024;
export const DEFAULT_CHUNK_SIZE = 64 * 1024;

/** Largest image: 2^50 bytes (1 PiB); beyond, block indexes and offsets approach 2^53. */
export const MAX_IMAGE_SIZE = 2 ** 50;

/** Commit ids kept in a head to recognise a retried change. */
export const RECENT_COMMITS = 8;

/** Register key prefix of heads. */
export const HEAD_PREFIX = "head.";

/** Register key of an image's head. */
export function headKey(image: string): string {
  return `${HEAD_PREFIX}${image}`;
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

/** Throws a RangeError unless `size` is a usable image size. */
export function assertImageSize(size: number): void {
  if (!Number.isSafeInteger(size) || size < 0 || size % 512 !== 0 || size > MAX_IMAGE_SIZE) {
    throw new RangeError(
      `Invalid image size ${size}: use a whole number of 512-byte sectors, at most ${MAX_IMAGE_SIZE} (1 PiB)`,
    );
  }
}

/** True for a tombstone. */
export function isTombstone(value: HeadValue | null): value is Tombstone {
  return value !== null && (value as Tombstone).deleted === true;
}

/** The live head in `value`, or null for none or a tombstone. */
export function liveHead(value: HeadValue | null): Head | null {
  return value === null || isTombstone(value) ? null : value;
}

/** Parses and validates a head or tombstone from the register; throws a TypeError otherwise. */
export function decodeHead(value: unknown): HeadValue {
  const h = value as Partial<Head & Tombstone> | null;
  const bad = (why: string) =>
    new TypeError(`Malformed image head (${why}): ${JSON.stringify(value).slice(0, 200)}`);
  if (!h || typeof h !== "object" || h.format !== 2) throw bad("expected format 2");
  if (typeof h.name !== "string" || typeof h.incarnation !== "string") throw bad("name, incarnation");
  if (!Number.isSafeInteger(h.generation) || !Number.isSafeInteger(h.epoch)) throw bad("generation, epoch");
  if (h.deleted === true) return h as Tombstone;
  if (!isHash(h.root) || !Number.isSafeInteger(h.size) || !Number.isSafeInteger(h.chunkSize))
    throw bad("root, size");
  if (typeof h.synced !== "object" || typeof h.snapshots !== "object" || typeof h.tails !== "object")
    throw bad("synced, tails, snapshots");
  if (!Array.isArray(h.leaving) || !Array.isArray(h.recentCommits)) throw bad("leaving, recentCommits");
  return h as Head;
}

/** Number of chunks in an image. */
export function blockCount(head: Pick<Head, "size" | "chunkSize">): number {
  return Math.ceil(head.size / head.chunkSize);
}

/**
 * Whether `store` holds, in full, what `head` names (its current root and every snapshot),
 * as far as the head says: recorded at the head's generation, for `identity` (the identity
 * the store has now). Damage known elsewhere (the cluster record) is for the caller to add.
 */
export function holdsCurrent(head: Head, store: string, now: HolderNow): boolean {
  const s = head.synced[store];
  return s !== undefined && s.generation === head.generation && matches(s, now);
}

/** What `store` holds for certain, per `head`, its identity and the placement now: that version, or nothing. */
export function heldVersion(head: Head, store: string, now: HolderNow): SyncedVersion | null {
  const s = head.synced[store];
  return s && matches(s, now) ? s : null;
}

function matches(s: SyncedVersion, now: HolderNow): boolean {
  return now.identity !== undefined && s.identity === now.identity && (s.placement ?? 0) === now.placement;
}

/** The snapshots of `head` that a store holding `held` may lack (taken at or after its generation). */
export function snapshotsNotHeld(head: Head, held: SyncedVersion | null): [string, Snapshot][] {
  return Object.entries(head.snapshots).filter(([, s]) => held === null || s.generation >= held.generation);
}

/** Every root `head` names: the current one and every snapshot's. */
export function rootsOf(head: Head): Hash[] {
  return [head.root, ...Object.values(head.snapshots).map((s) => s.root)].filter((r) => r !== ZERO_HASH);
}
