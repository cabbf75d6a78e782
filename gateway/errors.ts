/** Errors of the image layer that callers (NBD, HTTP API, CLI) catch and map. */

/** No image (or snapshot) of that name. */
export class ImageNotFoundError extends Error {
  override readonly name = "ImageNotFoundError";
  readonly image: string;

  constructor(image: string) {
    super(`Image "${image}" does not exist`);
    this.image = image;
  }
}

/** An image of that name exists already. */
export class ImageExistsError extends Error {
  override readonly name = "ImageExistsError";
  readonly image: string;

  constructor(image: string) {
    super(`Image "${image}" already exists`);
    this.image = image;
  }
}

/** A write to a snapshot or another read-only view. */
export class ReadOnlyError extends Error {
  override readonly name = "ReadOnlyError";
  readonly image: string;

  constructor(image: string) {
    super(`Image "${image}" is read-only`);
    this.image = image;
  }
}

/**
 * Another gateway took the image over (it wrote to it, so the owner epoch moved past ours):
 * this gateway may not commit. Its unflushed writes are lost, as a disk's volatile cache
 * is when another host takes the disk.
 */
export class StaleEpochError extends Error {
  override readonly name = "StaleEpochError";
  readonly image: string;
  readonly ours: number;
  readonly theirs: number;
  readonly owner: string | null;

  constructor(image: string, ours: number, theirs: number, owner: string | null = null) {
    super(
      `Image "${image}" is now owned by ${owner ? `gateway ${owner}` : "another gateway"} (epoch ${theirs} > ours ${ours}); this gateway may not commit`,
    );
    this.image = image;
    this.ours = ours;
    this.theirs = theirs;
    this.owner = owner;
  }
}

/**
 * The image this connection, cache or commit belongs to was deleted (and perhaps created
 * again under the same name: another incarnation). Nothing of the old one may touch it.
 */
export class ImageDeletedError extends Error {
  override readonly name = "ImageDeletedError";
  readonly image: string;
  readonly incarnation: string;

  constructor(image: string, incarnation: string, detail = "") {
    super(
      `Image "${image}" (incarnation ${incarnation.slice(0, 8)}) was deleted${detail ? `: ${detail}` : ""}; this connection can no longer use it`,
    );
    this.image = image;
    this.incarnation = incarnation;
  }
}

/** Not enough stores accepted a write: fewer than minReplicas data copies or no head majority. */
export class NotEnoughReplicasError extends Error {
  override readonly name = "NotEnoughReplicasError";
  constructor(detail: string, options?: ErrorOptions) {
    super(`Not enough stores accepted the write: ${detail}`, options);
  }
}
