/**
 * Backups run as jobs in the gateway, so they outlive the command that started them and
 * show in status (`GET /v1/backups/jobs`) with bytes done, rate and ETA. A job holds the
 * target's credentials and key in memory only, for its own run: they are never written
 * to disk, logged, or part of its status. A gateway that stops forgets its jobs; running
 * one again skips what the killed run had uploaded (its packs are indexed as they land).
 */
import { Buffer } from "node:buffer";
import type { BackupCluster, VersionPins } from "./backup-cluster.ts";
import { type CreateParams, type CreateResult, createBackup } from "./backup-create.ts";
import type { Manifest } from "./backup-manifest.ts";
import { type PruneParams, type PruneResult, pruneRepository } from "./backup-prune.ts";
import { type RestoreResult, restoreBackup } from "./backup-restore.ts";
import { type BackupTarget, parseBackupTarget, type TargetCredentials } from "./backup-target.ts";
import { type VerifyResult, verifyBackup } from "./backup-verify.ts";
import type { JobProgress } from "./job-progress.ts";
import type { ObjectStore } from "./object-store.ts";
import { Repository } from "./repository.ts";
import type { LockOptions } from "./repository-lock.ts";
import { S3ObjectStore } from "./s3-object-store.ts";

/** Jobs running at once per gateway: each holds up to ~100 MiB of packs in flight. */
export const MAX_RUNNING_JOBS = 4;
/** Finished jobs kept for status. */
const FINISHED_KEPT = 50;

/** What a job does. */
export type JobRequest =
  | ({ readonly kind: "create" } & CreateParams & JobTarget)
  | ({ readonly kind: "restore"; readonly backup: string; readonly image: string } & JobTarget)
  | ({ readonly kind: "verify"; readonly backup: string } & JobTarget)
  | ({ readonly kind: "prune" } & PruneParams & JobTarget);

/** Where, and with what secrets (held in memory for the run only). */
export interface JobTarget {
  readonly target: string;
  readonly credentials?: TargetCredentials;
  readonly key?: Uint8Array;
}

/** A job as status shows it: no credentials, no key. */
export interface BackupJobStatus {
  readonly id: string;
  readonly kind: JobRequest["kind"];
  readonly state: "running" | "done" | "failed";
  readonly phase: string;
  readonly target: string;
  readonly image: string | null;
  readonly backup: string | null;
  readonly gateway: string;
  readonly startedAt: string;
  readonly finishedAt: string | null;
  readonly bytesDone: number;
  readonly bytesTotal: number;
  readonly rateBytesPerSecond: number;
  readonly etaSeconds: number | null;
  readonly result: CreateResult | RestoreResult | VerifyResult | PruneResult | null;
  readonly error: string | null;
}

/** Too many jobs run on this gateway now. */
export class TooManyJobsError extends Error {
  override readonly name = "TooManyJobsError";
}

/** What the jobs need. */
export interface BackupJobsDeps {
  readonly cluster: BackupCluster;
  readonly pins: VersionPins;
  readonly log: (line: string) => void;
  /** Opens a target's objects (default: S3). */
  readonly openStore?: (target: BackupTarget, credentials?: TargetCredentials) => ObjectStore;
  /** Lock settings (tests shorten them). */
  readonly lock?: Partial<LockOptions>;
}

interface Job {
  status: BackupJobStatus;
  transferStartedMs: number | null;
}

/** The backup jobs of one gateway. */
export class BackupJobs {
  readonly #deps: BackupJobsDeps;
  readonly #jobs = new Map<string, Job>();

  constructor(deps: BackupJobsDeps) {
    this.#deps = deps;
  }

  #open(t: JobTarget): ObjectStore {
    const target = parseBackupTarget(t.target);
    return (this.#deps.openStore ?? ((tg, c) => new S3ObjectStore(tg, c)))(target, t.credentials);
  }

  /**
   * Starts a job once the repository opens (so wrong credentials, a missing bucket or a
   * wrong key fail the request itself); resolves with its first status.
   */
  async start(req: JobRequest): Promise<BackupJobStatus> {
    const running = [...this.#jobs.values()].filter((j) => j.status.state === "running").length;
    if (running >= MAX_RUNNING_JOBS)
      throw new TooManyJobsError(
        `${running} backup jobs run on this gateway already (at most ${MAX_RUNNING_JOBS})`,
      );
    const store = this.#open(req);
    let repo: Repository;
    try {
      repo = await Repository.open(store, { key: req.key, create: req.kind === "create" });
    } catch (err) {
      await store.close();
      throw err;
    }
    const id = Buffer.from(crypto.getRandomValues(new Uint8Array(6))).toString("hex");
    const job: Job = {
      transferStartedMs: null,
      status: {
        id,
        kind: req.kind,
        state: "running",
        phase: "starting",
        target: repo.store.name,
        image: "image" in req ? req.image : null,
        backup: "backup" in req ? req.backup : null,
        gateway: this.#deps.cluster.gatewayId,
        startedAt: new Date().toISOString(),
        finishedAt: null,
        bytesDone: 0,
        bytesTotal: 0,
        rateBytesPerSecond: 0,
        etaSeconds: null,
        result: null,
        error: null,
      },
    };
    this.#jobs.set(id, job);
    const progress: JobProgress = {
      phase: (name) => this.#update(job, { phase: name }),
      total: (bytes) => {
        job.transferStartedMs ??= Date.now();
        this.#update(job, { bytesTotal: bytes });
      },
      advance: (bytes) => this.#update(job, { bytesDone: job.status.bytesDone + bytes }),
    };
    const run = async () => {
      const cluster = this.#deps.cluster;
      const lock = this.#deps.lock;
      switch (req.kind) {
        case "create": {
          const r = await createBackup(
            { cluster, repo, pins: this.#deps.pins, progress, lock },
            { image: req.image, snapshot: req.snapshot, keepSnapshot: req.keepSnapshot },
          );
          this.#update(job, { backup: r.id });
          return r;
        }
        case "restore":
          return restoreBackup({ cluster, repo, progress }, { id: req.backup, image: req.image });
        case "verify":
          return verifyBackup({ repo, progress }, { id: req.backup });
        case "prune":
          return pruneRepository({ repo, progress, gateway: cluster.gatewayId, lock }, req);
      }
    };
    this.#deps.log(
      `backup job ${id}: ${req.kind} ${"image" in req ? `${req.image} ` : ""}${repo.store.name} started`,
    );
    void run()
      .then(
        (result) => {
          this.#update(job, { bytesDone: Math.max(job.status.bytesDone, job.status.bytesTotal) });
          this.#finish(job, { state: "done", phase: "done", result });
        },
        (err) => {
          this.#finish(job, {
            state: "failed",
            phase: "failed",
            error: err instanceof Error ? err.message : String(err),
          });
          this.#deps.log(`backup job ${id} failed: ${job.status.error}`);
        },
      )
      .finally(() => store.close());
    return this.status(id)!;
  }

  #update(job: Job, change: Partial<Omit<BackupJobStatus, "id">>): void {
    job.status = { ...job.status, ...change };
  }

  #finish(job: Job, change: Partial<BackupJobStatus>): void {
    this.#update(job, { ...change, finishedAt: new Date().toISOString() });
    const done = [...this.#jobs.values()].filter((j) => j.status.state !== "running");
    for (const old of done.slice(0, Math.max(0, done.length - FINISHED_KEPT)))
      this.#jobs.delete(old.status.id);
  }

  /** One job's status now (rate and ETA computed), or undefined. */
  status(id: string): BackupJobStatus | undefined {
    const job = this.#jobs.get(id);
    if (!job) return undefined;
    const s = job.status;
    const end = s.finishedAt ? Date.parse(s.finishedAt) : Date.now();
    const seconds = job.transferStartedMs === null ? 0 : (end - job.transferStartedMs) / 1000;
    const rate = seconds > 0 ? Math.round(s.bytesDone / seconds) : 0;
    const left = Math.max(0, s.bytesTotal - s.bytesDone);
    return {
      ...s,
      rateBytesPerSecond: rate,
      etaSeconds: s.state !== "running" ? 0 : rate > 0 ? Math.ceil(left / rate) : null,
    };
  }

  /** Every job this gateway knows, newest first. */
  list(): BackupJobStatus[] {
    return [...this.#jobs.keys()].map((id) => this.status(id)!).reverse();
  }

  /** The backups in a target, oldest first. */
  async listBackups(t: JobTarget): Promise<Manifest[]> {
    const store = this.#open(t);
    try {
      return await (await Repository.open(store, { key: t.key })).listManifests();
    } finally {
      await store.close();
    }
  }
}
