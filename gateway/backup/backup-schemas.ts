/**
 * zod schemas of the backup routes' request bodies (`backup-routes.ts`); a failure is a
 * 400 naming the field, through `valid()` of `http/schemas.ts`. Unknown fields are refused.
 */
import { z } from "zod";
import { BACKUP_ID_PATTERN } from "./backup-manifest.ts";

const text = (what: string) => z.string({ error: `must be ${what}` }).min(1, { error: "must not be empty" });

/** `{accessKeyId, secretAccessKey, sessionToken?}`: the target's credentials, from the CLI's environment. */
const Credentials = z.strictObject({
  accessKeyId: text("a string"),
  secretAccessKey: z.string({ error: "must be a string" }),
  sessionToken: z.string({ error: "must be a string" }).optional(),
});

/** What every request names: the target, its credentials, the repository key (hex). */
const target = {
  target: text("a target URL s3://BUCKET/PREFIX?endpoint=URL&region=R"),
  credentials: Credentials.optional(),
  key: z.string({ error: "must be the key file's text" }).max(4096).optional(),
};

const backupId = z
  .string({ error: "must be a backup id" })
  .regex(BACKUP_ID_PATTERN, { error: "is not a backup id (YYYYMMDD-HHMMSS-xxxxxxxx)" });

const count = z
  .number({ error: "must be a number" })
  .int({ error: "must be a whole number" })
  .min(0, { error: "must be at least 0" })
  .max(1_000_000, { error: "is too large" })
  .optional();

/** `POST /v1/backups/jobs`. */
export const BackupJobBody = z.discriminatedUnion(
  "kind",
  [
    z.strictObject({
      kind: z.literal("create"),
      ...target,
      image: text("an image name"),
      snapshot: text("a snapshot name").optional(),
      keepSnapshot: z.boolean({ error: "must be true or false" }).optional(),
    }),
    z.strictObject({ kind: z.literal("restore"), ...target, backup: backupId, image: text("an image name") }),
    z.strictObject({ kind: z.literal("verify"), ...target, backup: backupId }),
    z.strictObject({
      kind: z.literal("prune"),
      ...target,
      keepLast: count,
      keepDaily: count,
      repackBelow: z
        .number({ error: "must be a number" })
        .min(0, { error: "must be between 0 and 1" })
        .max(1, { error: "must be between 0 and 1" })
        .optional(),
    }),
  ],
  { error: 'must be "create", "restore", "verify" or "prune"' },
);

/** `POST /v1/backups/list`. */
export const BackupListBody = z.strictObject(target);
