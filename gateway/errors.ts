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

/** Another gateway opened the image for writing after us (fencing): we may not commit. */
export class StaleEpochError extends Error {
  override readonly name = "StaleEpochError";
  readonly image: string;
  readonly ours: number;
  readonly theirs: number;

  constructor(image: string, ours: number, theirs: number) {
    super(
      `Image "${image}" is now owned by another gateway (epoch ${theirs} > ours ${ours}); this gateway may not commit`,
    );
    this.image = image;
    this.ours = ours;
    this.theirs = theirs;
  }
}

/** Not enough stores accepted a write: fewer than minReplicas data copies or no head majority. */
export class NotEnoughReplicasError extends Error {
  override readonly name = "NotEnoughReplicasError";
  constructor(detail: string, options?: ErrorOptions) {
    super(`Not enough stores accepted the write: ${detail}`, options);
  }
}
