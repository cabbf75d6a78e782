/**
 * The backup routes of the gateway's HTTP API (mounted by `gateway.ts` beside the status
 * routes). Credentials and keys arrive in request bodies only, are handed to the job, and
 * never come back in an answer.
 *
 *   POST /v1/backups/jobs        {kind, target, credentials?, key?, ...} -> 202 job status
 *        kind "create":  image, snapshot?, keepSnapshot?
 *        kind "restore": backup, image (the new image)
 *        kind "verify":  backup
 *        kind "prune":   keepLast?, keepDaily?, repackBelow?
 *   GET  /v1/backups/jobs        {"jobs": [status...]} newest first (bytes done, rate, ETA)
 *   GET  /v1/backups/jobs/{id}   status
 *   POST /v1/backups/list        {target, credentials?, key?} -> {"backups": [manifest...]}
 *
 * Errors are the API's `{"error": {"code", "message"}}`; backup errors map here, in
 * {@link backupErrorOf}, everything else goes to the app's one mapping.
 */
import type { Context, Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import { limit, noBody } from "../http/_body-limits.ts";
import type { PathItem } from "../http/openapi.ts";
import { valid } from "../http/schemas.ts";
import {
  BackupNotFoundError,
  BackupTargetError,
  RepositoryFormatError,
  RepositoryKeyError,
  RepositoryLockedError,
} from "./backup-errors.ts";
import { type BackupJobs, type JobRequest, TooManyJobsError } from "./backup-jobs.ts";
import { BackupJobBody, BackupListBody } from "./backup-schemas.ts";
import { parseKeyFile } from "./repository-crypto.ts";

/** Largest request body: a few strings and a key. */
const MAX_BODY_BYTES = 64 * 1024;

/** Status and code for a backup error, or null for errors the app maps. */
export function backupErrorOf(err: unknown): { status: ContentfulStatusCode; code: string } | null {
  if (err instanceof BackupTargetError) {
    if (err.credentials) return { status: 403, code: "backup_target_credentials" };
    if (err.status === 404) return { status: 404, code: "backup_target_not_found" };
    return { status: 502, code: "backup_target_unavailable" };
  }
  if (err instanceof RepositoryKeyError) return { status: 403, code: "backup_key" };
  if (err instanceof RepositoryFormatError) return { status: 404, code: "backup_repository_not_found" };
  if (err instanceof BackupNotFoundError) return { status: 404, code: "backup_not_found" };
  if (err instanceof RepositoryLockedError) return { status: 409, code: "backup_repository_locked" };
  if (err instanceof TooManyJobsError) return { status: 429, code: "backup_too_many_jobs" };
  return null;
}

/** Mounts the backup routes on `app`. */
export function mountBackupRoutes(app: Hono, jobs: BackupJobs): void {
  const limited = limit(MAX_BODY_BYTES);
  const mapped = (c: Context, err: unknown): Response => {
    const m = backupErrorOf(err);
    if (!m) throw err;
    return c.json({ error: { code: m.code, message: (err as Error).message } }, m.status);
  };

  app.post("/v1/backups/jobs", limited, valid("json", BackupJobBody), async (c) => {
    const req = jobRequest(c.req.valid("json"));
    try {
      return c.json(await jobs.start(req), 202);
    } catch (err) {
      return mapped(c, err);
    }
  });

  app.get("/v1/backups/jobs", noBody, (c) => c.json({ jobs: jobs.list() }));

  app.get("/v1/backups/jobs/:id", noBody, (c) => {
    const s = jobs.status(c.req.param("id"));
    if (!s)
      return c.json(
        { error: { code: "backup_job_not_found", message: `No backup job "${c.req.param("id")}"` } },
        404,
      );
    return c.json(s);
  });

  app.post("/v1/backups/list", limited, valid("json", BackupListBody), async (c) => {
    try {
      return c.json({ backups: await jobs.listBackups(target(c.req.valid("json"))) });
    } catch (err) {
      return mapped(c, err);
    }
  });
}

/** The target part of a validated body: the key file's text parsed (a bad key is a 400). */
function target(b: z.infer<typeof BackupListBody>) {
  return {
    target: b.target,
    ...(b.credentials && {
      credentials: {
        accessKeyId: b.credentials.accessKeyId,
        secretAccessKey: b.credentials.secretAccessKey,
        ...(b.credentials.sessionToken && { sessionToken: b.credentials.sessionToken }),
      },
    }),
    ...(b.key !== undefined && { key: parseKeyFile(b.key) }),
  };
}

function jobRequest(b: z.infer<typeof BackupJobBody>): JobRequest {
  const t = target(b);
  switch (b.kind) {
    case "create":
      return {
        kind: "create",
        ...t,
        image: b.image,
        snapshot: b.snapshot,
        keepSnapshot: b.keepSnapshot === true,
      };
    case "restore":
      return { kind: "restore", ...t, backup: b.backup, image: b.image };
    case "verify":
      return { kind: "verify", ...t, backup: b.backup };
    case "prune":
      return {
        kind: "prune",
        ...t,
        keepLast: b.keepLast,
        keepDaily: b.keepDaily,
        repackBelow: b.repackBelow,
      };
  }
}

const jsonOk = (description: string) => ({
  description,
  content: { "application/json": { schema: { type: "object" } } },
});

/** OpenAPI path items of the backup routes. */
export const BACKUP_OPENAPI_PATHS: Record<string, PathItem> = {
  "/v1/backups/jobs": {
    get: {
      summary:
        "Backup jobs on this gateway, newest first: kind, state, phase, bytesDone, bytesTotal, rateBytesPerSecond, etaSeconds, result, error",
      responses: { "200": jsonOk("{jobs}") },
    },
    post: {
      summary:
        "Start a backup job: {kind: create|restore|verify|prune, target: s3://BUCKET/PREFIX?endpoint=&region=, credentials?: {accessKeyId, secretAccessKey, sessionToken?}, key?: hex, ...}",
      requestBody: { content: { "application/json": { schema: { type: "object" } } } },
      responses: {
        "202": jsonOk("The job's status"),
        "400": jsonOk("Bad request"),
        "403": jsonOk("The target refused the credentials, or the key is wrong"),
        "404": jsonOk("No repository or backup"),
      },
    },
  },
  "/v1/backups/jobs/{id}": {
    get: {
      summary: "One backup job's status",
      parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
      responses: { "200": jsonOk("Status"), "404": jsonOk("No such job") },
    },
  },
  "/v1/backups/list": {
    post: {
      summary: "The backups in a target (its manifests), oldest first",
      requestBody: { content: { "application/json": { schema: { type: "object" } } } },
      responses: { "200": jsonOk("{backups}"), "403": jsonOk("Credentials or key refused") },
    },
  },
};
