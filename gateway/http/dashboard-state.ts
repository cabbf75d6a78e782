/**
 * What the dashboard shows, read in one go: the answers of `/v1/stores`, `/v1/heal`, and
 * safe-to-remove for every store, plus every image, all from ONE read of the cluster
 * record and the heads (`ClusterStatus.inputs`), so the panels agree with each other.
 * Safe-to-remove here is as of the last probe (the probe loop runs about once a second);
 * `GET /v1/stores/{id}/safe-to-remove` probes again before it answers, and is what a
 * procedure should act on.
 *
 * Beside them, read at the same moment: garbage collection as `GET /v1/gc` answers it (the
 * pass running on this gateway, the last finished pass of any gateway: one register read),
 * and this gateway's backup jobs as `GET /v1/backups/jobs` lists them (in memory: the
 * running ones and the most recent finished ones, without their results).
 *
 * Allocated bytes per image are not here: no counter of them exists, and walking every
 * block map each second would cost more than the dashboard is worth.
 */
import type { BackupJobStatus, BackupJobs } from "../backup/backup-jobs.ts";
import type { Collector } from "../gc/collector.ts";
import type { ClusterStatus, StoreAnswer, StoreHealAnswer } from "../heal/cluster-status.ts";
import type { SafeToRemove } from "../heal/safe-to-remove.ts";
import type { ScrubStatus } from "../heal/scrub.ts";
import type { HealLimits } from "../heal/throttle.ts";
import { type GcStatus, readGcStatus } from "./gc-api.ts";
import { type ImageInfo, imageInfo } from "./http-wire.ts";

/** Finished backup jobs the dashboard shows (the running ones are always shown). */
export const DASHBOARD_FINISHED_JOBS = 10;

/** An image as the dashboard lists it. */
export interface DashboardImage {
  readonly name: string;
  readonly size: number;
  readonly chunkSize: number;
  readonly generation: number;
  /** The gateway that owns it (the last one to write), or null. */
  readonly owner: string | null;
  readonly updatedAt: string;
  readonly clonedFrom: string | null;
  readonly snapshots: readonly { readonly name: string; readonly size: number; readonly createdAt: string }[];
}

/**
 * A backup job as the dashboard shows it: its status without `result` (what the CLI
 * prints at the end; the page shows bytes, rate and ETA, and the backup id).
 */
export type DashboardBackupJob = Omit<BackupJobStatus, "result">;

/** The sections of the dashboard's state; each is sent again whenever it changes. */
export interface DashboardState {
  readonly stores: {
    readonly replicas: number;
    readonly minReplicas: number;
    readonly stores: StoreAnswer[];
  };
  readonly heal: {
    readonly healing: boolean;
    readonly limits: HealLimits;
    readonly stores: StoreHealAnswer[];
    readonly scrub: ScrubStatus[];
    readonly repairedChunks: number;
  };
  readonly images: DashboardImage[];
  /** Per store id. */
  readonly safeToRemove: Record<string, SafeToRemove>;
  /** As `GET /v1/gc` answers. */
  readonly gc: GcStatus;
  /** This gateway's jobs, newest first: every running one, then the last DASHBOARD_FINISHED_JOBS finished. */
  readonly backups: DashboardBackupJob[];
}

/** What the state is read from: the gateway's layers. */
export interface DashboardSources {
  readonly status: Pick<ClusterStatus, "inputs" | "stores" | "heal" | "safeToRemove">;
  readonly gc: Pick<Collector, "current" | "lastReport">;
  readonly backups: Pick<BackupJobs, "list">;
}

/** The dashboard's view of an image. */
export function dashboardImage(info: ImageInfo): DashboardImage {
  return {
    name: info.name,
    size: info.size,
    chunkSize: info.chunkSize,
    generation: info.generation,
    owner: info.owner,
    updatedAt: info.updatedAt,
    clonedFrom: info.clonedFrom,
    snapshots: info.snapshots.map((s) => ({ name: s.name, size: s.size, createdAt: s.createdAt })),
  };
}

/** The jobs the dashboard shows, from `BackupJobs.list()` (newest first). */
export function dashboardBackupJobs(jobs: readonly BackupJobStatus[]): DashboardBackupJob[] {
  let finished = 0;
  return jobs
    .filter((j) => j.state === "running" || ++finished <= DASHBOARD_FINISHED_JOBS)
    .map(({ result: _result, ...job }) => job);
}

/** Reads the whole state from one fresh read of the record and the heads (and gc's report beside it). */
export async function readDashboardState(src: DashboardSources): Promise<DashboardState> {
  const { status } = src;
  const [inputs, gc] = await Promise.all([status.inputs(), readGcStatus(src.gc)]);
  const [stores, heal] = await Promise.all([status.stores(inputs), status.heal(inputs)]);
  const safe: Record<string, SafeToRemove> = {};
  for (const s of stores.stores) safe[s.id] = await status.safeToRemove(s.id, inputs);
  const images = inputs.heads
    .map((head) => dashboardImage(imageInfo(head)))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { stores, heal, images, safeToRemove: safe, gc, backups: dashboardBackupJobs(src.backups.list()) };
}
