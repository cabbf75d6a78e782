/** Errors of backups that callers (the jobs, the HTTP routes, the CLI) catch and map. */

/**
 * The backup target refused or failed a request: wrong credentials, no such bucket,
 * unreachable endpoint. The message names the target and what it answered, never a secret.
 */
export class BackupTargetError extends Error {
  override readonly name = "BackupTargetError";
  readonly target: string;
  /** HTTP status the target answered, or 0 when it could not be reached. */
  readonly status: number;
  /** True when the credentials were refused (403 InvalidAccessKeyId, SignatureDoesNotMatch, ...). */
  readonly credentials: boolean;

  constructor(target: string, message: string, status: number, credentials = false, options?: ErrorOptions) {
    super(message, options);
    this.target = target;
    this.status = status;
    this.credentials = credentials;
  }
}

/** The repository is not one this code can read (no config, another format or version). */
export class RepositoryFormatError extends Error {
  override readonly name = "RepositoryFormatError";
}

/** The key given does not open the repository, or one is needed and none was given. */
export class RepositoryKeyError extends Error {
  override readonly name = "RepositoryKeyError";
}

/** No backup with that id in the repository. */
export class BackupNotFoundError extends Error {
  override readonly name = "BackupNotFoundError";
  readonly id: string;

  constructor(target: string, id: string) {
    super(`No backup "${id}" in ${target}`);
    this.id = id;
  }
}

/** The repository is locked by another operation (a prune, or running backups for a prune). */
export class RepositoryLockedError extends Error {
  override readonly name = "RepositoryLockedError";
}

/** A conditional write lost (the object exists, or changed). */
export class PreconditionFailedError extends Error {
  override readonly name = "PreconditionFailedError";
}
