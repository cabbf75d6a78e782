/**
 * FROZEN: the backup repository format, version 1. These names and numbers are what a
 * bucket written by one blockmend is read with by another, years later: never change a
 * value; a new layout is a new `REPOSITORY_VERSION` (readers refuse versions they do not
 * know). The layout is described in `README.md` beside this file and in docs/design.md.
 */

/** `format` of the `config` object. */
export const REPOSITORY_FORMAT = "blockmend-backup-repository" as const;

/** The one version this code writes and reads. */
export const REPOSITORY_VERSION = 1 as const;

/** `format` of index and manifest objects (their own version, checked on read). */
export const OBJECT_FORMAT = 1 as const;

/** Object keys under the repository prefix. */
export const KEYS = {
  /** The repository's self-description (plain JSON, even when encrypted). */
  config: "config",
  /** `index/NAME`: which chunks each pack holds. */
  index: "index/",
  /** `packs/XX/NAME`: chunk bytes, many chunks per object (XX = NAME's first two characters). */
  packs: "packs/",
  /** `manifests/NAME`: one backup (immutable). */
  manifests: "manifests/",
  /** `locks/exclusive` (prune) and `locks/shared-TOKEN` (a backup running). */
  locks: "locks/",
  exclusiveLock: "locks/exclusive",
  sharedLockPrefix: "locks/shared-",
} as const;

/** What a pack holds: map pages (`tree`, small, read to walk versions) or data chunks. */
export const PACK_KIND = { data: "data", tree: "tree" } as const;
export type PackKind = (typeof PACK_KIND)[keyof typeof PACK_KIND];

/**
 * Encryption scheme of version 1: a 32-byte key file; HKDF-SHA256 over it with the
 * repository's random salt derives an AES-256-GCM key (info {@link HKDF_INFO.data}) and an
 * HMAC-SHA256 key (info {@link HKDF_INFO.names}). Every pack blob, index, manifest and the
 * key check is sealed as `nonce (12 random bytes) || ciphertext || tag (16)`; a pack blob's
 * additional data is its chunk's raw 32-byte hash, so blobs cannot be swapped. Object names
 * are hex HMAC-SHA256 of `KIND:ID`, so the bucket sees no image name, time or chunk hash.
 */
export const ENCRYPTION_SCHEME = "AES-256-GCM+HKDF-SHA256+HMAC-SHA256-names" as const;

export const HKDF_INFO = {
  data: "blockmend-backup v1 data",
  names: "blockmend-backup v1 names",
} as const;

/** Plain text sealed into `config.encryption.keyCheck`: opening it proves the key. */
export const KEY_CHECK_PLAINTEXT = "blockmend-backup key check v1" as const;

/** Bytes of a key file's key, of a GCM nonce, of a GCM tag, of the config's HKDF salt. */
export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const SALT_BYTES = 16;

/** Packs are closed at this size (a chunk never straddles two packs). */
export const PACK_TARGET_BYTES = 16 * 1024 * 1024;
