/**
 * A backup manifest: one backed-up version of an image, immutable once written. The map
 * pages and chunks it names are in the packs (pages in `tree` packs); the manifest holds
 * the image's metadata and the version's root. FROZEN format 1 (add fields, never rename).
 */
import { Buffer } from "node:buffer";
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { isHash } from "../../chunkstore/hash.ts";
import { RepositoryFormatError } from "./backup-errors.ts";
import { OBJECT_FORMAT } from "./repository-format.ts";

/** One backup. */
export interface Manifest {
  readonly format: typeof OBJECT_FORMAT;
  /** `YYYYMMDD-HHMMSS-XXXXXXXX` (UTC time of the start, random suffix). */
  readonly id: string;
  readonly image: string;
  /** The snapshot read (taken for this backup unless the caller named one). */
  readonly snapshot: string;
  /** The snapshot was taken by the backup (and removed after it, unless kept). */
  readonly snapshotTaken: boolean;
  readonly startedAt: string;
  readonly createdAt: string;
  readonly size: number;
  readonly chunkSize: number;
  /** Root of the block map (gateway/image/block-map.ts). */
  readonly root: Hash;
  /** The previous backup of the image this one was diffed against, or null. */
  readonly parent: string | null;
  /** Data blocks that are not holes. */
  readonly dataBlocks: number;
  /** Bytes of the version's data chunks (what a full copy sends). */
  readonly totalBytes: number;
  /** Bytes this backup wrote to the repository in packs and index objects (the manifest aside). */
  readonly uploadedBytes: number;
  /** Bytes of data chunks it did not send (in the repository already, or unchanged). */
  readonly skippedBytes: number;
  /** The gateway that made it. */
  readonly gateway: string;
}

/** A new backup id for a backup started at `at`. */
export function newBackupId(at: Date = new Date()): string {
  const iso = at.toISOString(); // 2026-12-01T10:46:44.123Z
  const stamp = `${iso.slice(0, 10).replace(/-/g, "")}-${iso.slice(11, 19).replace(/:/g, "")}`;
  return `${stamp}-${Buffer.from(crypto.getRandomValues(new Uint8Array(4))).toString("hex")}`;
}

/** Backup ids: safe in object names, URLs and command lines. */
export const BACKUP_ID_PATTERN = /^\d{8}-\d{6}-[0-9a-f]{8}$/;

/** Parses a manifest read from the repository; throws RepositoryFormatError. */
export function decodeManifest(bytes: Uint8Array, where: string): Manifest {
  let m: Partial<Manifest>;
  try {
    m = JSON.parse(new TextDecoder().decode(bytes)) as Partial<Manifest>;
  } catch (err) {
    throw new RepositoryFormatError(`Manifest ${where} is not JSON`, { cause: err });
  }
  if (m.format !== OBJECT_FORMAT)
    throw new RepositoryFormatError(
      `Manifest ${where} has format ${m.format}; this blockmend reads ${OBJECT_FORMAT}`,
    );
  if (
    typeof m.id !== "string" ||
    typeof m.image !== "string" ||
    !isHash(m.root) ||
    !Number.isSafeInteger(m.size) ||
    !Number.isSafeInteger(m.chunkSize)
  )
    throw new RepositoryFormatError(`Manifest ${where} is malformed`);
  return m as Manifest;
}
