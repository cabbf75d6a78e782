/**
 * The port: everything backups need from the cluster, and nothing more.
 * `backup-cluster-adapter.ts` implements it over today's image layer.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import type { PinVersion } from "../image/image-context.ts";

/** One committed version of an image, as a backup reads it. */
export interface BackupVersion {
  readonly image: string;
  readonly snapshot: string;
  readonly root: Hash;
  readonly size: number;
  readonly chunkSize: number;
}

/**
 * Keeps a version's chunks from garbage collection while a backup reads it (a pass marks
 * from every gateway's pins, gateway/gc/pins.ts). Resolves, durable, with the release.
 */
export interface VersionPins {
  pin(version: BackupVersion): Promise<() => Promise<void>>;
}

/** Pins that keep nothing (unit tests without a collector). */
export const NO_PINS: VersionPins = { pin: async () => async () => {} };

/** Pins through the gateway's pin set (`ImageContext.pinVersion`); none without one. */
export function backupPins(ctx: { readonly pinVersion?: PinVersion }): VersionPins {
  const pinVersion = ctx.pinVersion;
  if (!pinVersion) return NO_PINS;
  return {
    pin: (v) =>
      pinVersion({
        root: v.root,
        size: v.size,
        chunkSize: v.chunkSize,
        why: `backup ${v.image}@${v.snapshot}`,
      }),
  };
}

/** What backups read from and write to a cluster. */
export interface BackupCluster {
  /** The gateway's id (recorded in manifests and locks). */
  readonly gatewayId: string;
  /** `image@snapshot` now. Throws ImageNotFoundError. */
  snapshotVersion(image: string, snapshot: string): Promise<BackupVersion>;
  /** Takes snapshot `snapshot` of `image`'s current version (after a flush if owned here). */
  takeSnapshot(image: string, snapshot: string): Promise<BackupVersion>;
  removeSnapshot(image: string, snapshot: string): Promise<void>;
  /** Chunks by hash from any replica, verified, in order. */
  readChunks(hashes: readonly Hash[]): Promise<Uint8Array[]>;
  /** True if a placement store of `hash` holds it (a batched `has`; nothing is read or repaired). */
  holds(hash: Hash): Promise<boolean>;
  /** Starts a restore into a new image `image` (refused if it exists). */
  beginRestore(image: string): Promise<RestoreSession>;
}

/** Writing one restored image. */
export interface RestoreSession {
  /** Which of `hashes` the cluster lacks on some placement store (one batched `has` per store). */
  lacking(hashes: readonly Hash[]): Promise<Hash[]>;
  /** Puts chunks on their placement stores. */
  put(chunks: readonly { hash: Hash; bytes: Uint8Array }[]): Promise<void>;
  /** Writes the new image's head through the head writer (the image appears only now). */
  commit(version: { root: Hash; size: number; chunkSize: number }): Promise<void>;
}
