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
import { bodyLimit } from "hono/body-limit";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { PathItem } from "../http/openapi.ts";
import {
  BackupNotFoundError,
  BackupTargetError,
  RepositoryFormatError,
  RepositoryKeyError,
  RepositoryLockedError,
} from "./backup-errors.ts";
import { type BackupJobs, type JobRequest, TooManyJobsError } from "./backup-jobs.ts";
import { BACKUP_ID_PATTERN } from "./backup-manifest.ts";
import { parseCredentials } from "./backup-target.ts";
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
  const limit = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: (c) => c.json({ error: { code: "payload_too_large", message: "Request body too large" } }, 413),
  });
  const mapped = (c: Context, err: unknown): Response => {
    const m = backupErrorOf(err);
    if (!m) throw err;
    return c.json({ error: { code: m.code, message: (err as Error).message } }, m.status);
  };

  app.post("/v1/backups/jobs", limit, async (c) => {
    const req = jobRequest(await body(c));
    try {
      return c.json(await jobs.start(req), 202);
    } catch (err) {
      return mapped(c, err);
    }
  });

  app.get("/v1/backups/jobs", (c) => c.json({ jobs: jobs.list() }));

  app.get("/v1/backups/jobs/:id", (c) => {
    const s = jobs.status(c.req.param("id"));
    if (!s)
      return c.json(
        { error: { code: "backup_job_not_found", message: `No backup job "${c.req.param("id")}"` } },
        404,
      );
    return c.json(s);
  });

  app.post("/v1/backups/list", limit, async (c) => {
    const b = await body(c);
    try {
      return c.json({ backups: await jobs.listBackups(target(b)) });
    } catch (err) {
      return mapped(c, err);
    }
  });
}

async function body(c: Context): Promise<Record<string, unknown>> {
  const b = await c.req.json().catch(() => null);
  if (typeof b !== "object" || b === null || Array.isArray(b))
    throw new TypeError("Request body must be a JSON object");
  return b as Record<string, unknown>;
}

function str(b: Record<string, unknown>, key: string, required: true): string;
function str(b: Record<string, unknown>, key: string, required: false): string | undefined;
function str(b: Record<string, unknown>, key: string, required: boolean): string | undefined {
  const v = b[key];
  if (v === undefined || v === null) {
    if (required) throw new TypeError(`"${key}" is required`);
    return undefined;
  }
  if (typeof v !== "string") throw new TypeError(`"${key}" must be a string`);
  return v;
}

function num(b: Record<string, unknown>, key: string): number | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw new TypeError(`"${key}" must be a number`);
  return v;
}

function target(b: Record<string, unknown>) {
  const key = str(b, "key", false);
  return {
    target: str(b, "target", true),
    credentials: parseCredentials(b.credentials),
    ...(key !== undefined && { key: parseKeyFile(key) }),
  };
}

function backupId(b: Record<string, unknown>): string {
  const id = str(b, "backup", true);
  if (!BACKUP_ID_PATTERN.test(id))
    throw new TypeError(`"${id}" is not a backup id (YYYYMMDD-HHMMSS-xxxxxxxx)`);
  return id;
}

function jobRequest(b: Record<string, unknown>): JobRequest {
  const t = target(b);
  switch (b.kind) {
    case "create":
      return {
        kind: "create",
        ...t,
        image: str(b, "image", true),
        snapshot: str(b, "snapshot", false),
        keepSnapshot: b.keepSnapshot === true,
      };
    case "restore":
      return { kind: "restore", ...t, backup: backupId(b), image: str(b, "image", true) };
    case "verify":
      return { kind: "verify", ...t, backup: backupId(b) };
    case "prune": {
      const count = (k: string) => {
        const n = num(b, k);
        if (n !== undefined && (!Number.isInteger(n) || n < 0))
          throw new TypeError(`"${k}" must be a whole number`);
        return n;
      };
      return {
        kind: "prune",
        ...t,
        keepLast: count("keepLast"),
        keepDaily: count("keepDaily"),
        repackBelow: num(b, "repackBelow"),
      };
    }
    default:
      throw new TypeError(
        `"kind" must be "create", "restore", "verify" or "prune"; got ${JSON.stringify(b.kind)}`,
      );
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
