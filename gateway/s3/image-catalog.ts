/**
 * The port: everything the S3 endpoint needs from the image layer, and nothing more.
 * `image-catalog-adapter.ts` implements it over today's image service; a new image
 * layer only needs a new adapter. Keys are `NAME` (an image's current committed
 * version) and `NAME@SNAP` (a snapshot).
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";

/** One committed, immutable version of an image: what an object key names at one moment. */
export interface CommittedVersion {
  /** `NAME` or `NAME@SNAP`. */
  readonly key: string;
  readonly image: string;
  /** Set for a snapshot. */
  readonly snapshot?: string;
  /** Root hash of the block map: the version's identity (the object's ETag). */
  readonly root: Hash;
  /** Bytes. */
  readonly size: number;
  readonly chunkSize: number;
  /** The head generation that committed this version. */
  readonly generation: number;
  /** When this version was committed (as well as the layer knows: see the adapter). */
  readonly lastModified: Date;
}

/**
 * Reads one committed version: over its block map and the stores, never an image's
 * write-back cache. Holes read as zeros without asking a store.
 */
export interface VersionReader {
  readonly version: CommittedVersion;
  /** Bytes `[offset, offset + length)`; the range must lie inside the version. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * Keeps the version's chunks from garbage collection until {@link unpin}. Pins
   * nest; a reader is pinned for the whole of a GET.
   */
  pin(): void;
  unpin(): void;
}

/** Conditions on an import's commit. */
export interface ImportCondition {
  /** `If-None-Match: *`: only if no image of that name exists. */
  readonly ifNoneMatch?: boolean;
  /** `If-Match`: only if the image's current root is this one. */
  readonly ifMatch?: Hash;
}

/**
 * One import into an image name: stage chunks as parts arrive, then commit the block
 * list in one step (the image appears, or is replaced, only then). Staged chunks that
 * no commit references are left to garbage collection.
 */
export interface ImportSession {
  readonly image: string;
  /** Block size of the image the import makes (the existing image's, or the default). */
  readonly chunkSize: number;
  /**
   * BLAKE3 of each `blockSize` block of `data` (the last may be short), in the worker
   * pool; all-zero blocks get the zero hash (a hole). `data` must own its whole
   * ArrayBuffer: it moves to the worker and comes back in the result.
   */
  hashBlocks(data: Uint8Array, blockSize: number): Promise<{ hashes: Uint8Array; data: Uint8Array }>;
  /**
   * Stores chunks on their placement stores, skipping those already on all of them.
   * `settled` resolves once no store put still reads the bytes (a straggler may outlive
   * the call): the caller may then reuse their buffer.
   */
  putChunks(chunks: readonly { hash: Hash; bytes: Uint8Array }[]): Promise<{ settled: Promise<void> }>;
  /** Reads a staged chunk back (for seams between parts). */
  readChunk(hash: Hash): Promise<Uint8Array>;
  /**
   * Builds the block map from `blocks` (32 raw hash bytes per block, zero = hole) and
   * creates the image of `size` bytes, or replaces the current version of an existing one
   * that no client has attached. Throws ImageExistsError (If-None-Match), VersionChangedError
   * (If-Match), ImageAttachedError.
   */
  commit(blocks: Uint8Array, size: number, condition: ImportCondition): Promise<CommittedVersion>;
}

/** What the S3 endpoint needs from the image layer. */
export interface S3ImageCatalog {
  /** Every image's current version and every snapshot, in no particular order. */
  list(): Promise<CommittedVersion[]>;
  /** The committed version `key` names now. Throws ImageNotFoundError. */
  resolve(key: string): Promise<CommittedVersion>;
  /** A reader over exactly `version`. */
  openReader(version: CommittedVersion): VersionReader;
  /** Starts an import into image `image`. Throws ImageAttachedError at once if it is attached. */
  beginImport(image: string): Promise<ImportSession>;
  /** Deletes snapshot `image@snapshot`. Throws ImageNotFoundError. */
  deleteSnapshot(image: string, snapshot: string): Promise<void>;
  /** Deletes image `image`. Throws ImageAttachedError, ImageHasSnapshotsError, ImageNotFoundError. */
  deleteImage(image: string): Promise<void>;
  /** True while a client (an NBD connection, an HTTP request) has `image` open for writing. */
  isAttached(image: string): boolean;
}

/** The image is attached for writing: replacing or deleting it is refused. */
export class ImageAttachedError extends Error {
  override readonly name = "ImageAttachedError";
  readonly image: string;

  constructor(image: string, action: string) {
    super(
      `Cannot ${action} image "${image}": a client has it attached for writing (an NBD connection or an HTTP request on this gateway); detach it first`,
    );
    this.image = image;
  }
}

/** Deleting an image that has snapshots would delete those objects too: refused. */
export class ImageHasSnapshotsError extends Error {
  override readonly name = "ImageHasSnapshotsError";
  readonly image: string;

  constructor(image: string, snapshots: readonly string[]) {
    super(
      `Cannot delete image "${image}": it has snapshots (${snapshots.map((s) => `${image}@${s}`).join(", ")}); delete them first`,
    );
    this.image = image;
  }
}

/** An `If-Match` condition on a write failed: the image's current version is another one. */
export class VersionChangedError extends Error {
  override readonly name = "VersionChangedError";
  readonly image: string;

  constructor(image: string, expected: Hash, actual: Hash) {
    super(`Image "${image}" is at version ${actual}, not ${expected}`);
    this.image = image;
  }
}

/** Splits an object key `NAME[@SNAP]` (the catalog validates the names). */
export function parseKey(key: string): { image: string; snapshot?: string } {
  const at = key.indexOf("@");
  return at < 0 ? { image: key } : { image: key.slice(0, at), snapshot: key.slice(at + 1) };
}
