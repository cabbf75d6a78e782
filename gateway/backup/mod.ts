/**
 * Backups of images into S3 buckets: packs, an index, immutable manifests, optional
 * encryption; run as jobs in the gateway. README.md has the repository format.
 */

export { type BackupCluster, backupPins, NO_PINS, type VersionPins } from "./backup-cluster.ts";
export { BackupClusterAdapter } from "./backup-cluster-adapter.ts";
export { type CreateResult, createBackup } from "./backup-create.ts";
export * from "./backup-errors.ts";
export { type BackupJobStatus, BackupJobs, type JobRequest } from "./backup-jobs.ts";
export type { Manifest } from "./backup-manifest.ts";
export { type PruneResult, pruneRepository } from "./backup-prune.ts";
export { type RestoreResult, restoreBackup } from "./backup-restore.ts";
export { BACKUP_OPENAPI_PATHS, mountBackupRoutes } from "./backup-routes.ts";
export { type BackupTarget, parseBackupTarget, type TargetCredentials } from "./backup-target.ts";
export { type VerifyResult, verifyBackup } from "./backup-verify.ts";
export { MemoryObjectStore } from "./memory-object-store.ts";
export type { ObjectStore } from "./object-store.ts";
export { Repository } from "./repository.ts";
export { generateKeyFile, parseKeyFile } from "./repository-crypto.ts";
export { S3ObjectStore } from "./s3-object-store.ts";
