/**
 * Schemas of every JSON body and query the gateway's HTTP API takes (zod), and the one
 * way routes apply them ({@link valid}). Objects are strict: an unknown key is refused.
 * A failure is a 400 naming the field: `bad_request` for a wrong type or an unknown key,
 * `out_of_range` for an absurd value (through `http-errors.ts`, like every error).
 *
 * @module
 */
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import { MAX_CONCURRENCY, MIN_RATE } from "../heal/throttle.ts";
import { MAX_CHUNK_SIZE, MAX_IMAGE_SIZE, MIN_CHUNK_SIZE } from "../image/head.ts";
import { parseSizeText, SIZE_UNITS_HELP } from "../image/size-text.ts";

/** Image and snapshot names (as `assertImageName` in `image/head.ts`). */
const name = (what: string) =>
  z.string({ error: `must be a ${what} name (a string)` }).regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, {
    error: `must be a ${what} name: 1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit`,
  });

/** A byte count: a safe non-negative integer. */
const bytes = z
  .number({ error: "must be a number of bytes" })
  .int({ error: "must be a whole number of bytes" });

/**
 * A size as a number of bytes, or as text with a unit ("10G", "10GiB"; "10GB" is refused
 * with a hint): the CLI's parser, `image/size-text.ts`.
 */
const sizeValue = z.unknown().transform((value, ctx) => {
  if (typeof value === "number") return value;
  if (typeof value === "string") {
    try {
      return parseSizeText(value);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      ctx.addIssue({ code: "invalid_format", format: "size", input: value, message });
      return z.NEVER;
    }
  }
  ctx.addIssue({
    code: "invalid_type",
    expected: "number",
    input: value,
    message: `must be ${SIZE_UNITS_HELP}`,
  });
  return z.NEVER;
});

/** An image size: whole 512-byte sectors, at most MAX_IMAGE_SIZE (1 PiB). */
const imageSize = sizeValue.pipe(
  bytes
    .min(0, { error: "must not be negative" })
    .max(MAX_IMAGE_SIZE, { error: `must be at most ${MAX_IMAGE_SIZE} bytes (1 PiB)` })
    .multipleOf(512, { error: "must be a whole number of 512-byte sectors" }),
);

/** A chunk size: a power of two from MIN_CHUNK_SIZE to MAX_CHUNK_SIZE. */
const chunkSize = bytes
  .min(MIN_CHUNK_SIZE, { error: `must be at least ${MIN_CHUNK_SIZE}` })
  .max(MAX_CHUNK_SIZE, { error: `must be at most ${MAX_CHUNK_SIZE}` })
  .refine((n) => (n & (n - 1)) === 0, { error: "must be a power of two" });

/**
 * The largest heal or scrub rate accepted: 1 TiB/s, beyond any store; a larger number is
 * a typo (or 1e300), not a limit.
 */
export const MAX_RATE = 2 ** 40;

const rate = bytes
  .min(MIN_RATE, { error: `must be at least ${MIN_RATE} bytes per second` })
  .max(MAX_RATE, { error: `must be at most ${MAX_RATE} bytes per second (1 TiB/s)` });

/** `POST /v1/images`: a new image, or a clone with `from: "image@snapshot"`. */
export const CreateImageBody = z.strictObject({
  name: name("image"),
  size: imageSize.optional(),
  chunkSize: chunkSize.optional(),
  from: z
    .string({ error: 'must be "image@snapshot"' })
    .regex(/^[^@]+@[^@]+$/, { error: 'must be "image@snapshot"' })
    .optional(),
});

/** `PATCH /v1/images/{name}`: grow to `size`. */
export const ResizeBody = z.strictObject({ size: imageSize });

/** `POST /v1/images/{name}/snapshots`. */
export const SnapshotBody = z.strictObject({ name: name("snapshot") });

/** `PUT /v1/stores/{id}/maintenance`. */
export const MaintenanceBody = z.strictObject({ on: z.boolean({ error: "must be true or false" }) });

/** `POST /v1/stores`: a data store to add, by id and URL (as `--store ID=URL`). */
export const AddStoreBody = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, "must be 1-32 of A-Z a-z 0-9 _ -"),
  url: z.string().min(1).max(2048),
});

/** `PUT /v1/heal/limits`: any of the limits. */
export const HealLimitsBody = z.strictObject({
  rateBytesPerSecond: rate.optional(),
  floorBytesPerSecond: rate.optional(),
  ceilingBytesPerSecond: rate.optional(),
  concurrency: z
    .number({ error: "must be a number" })
    .int({ error: "must be a whole number" })
    .min(1, { error: "must be at least 1" })
    .max(MAX_CONCURRENCY, { error: `must be at most ${MAX_CONCURRENCY}` })
    .optional(),
  scrubBytesPerSecond: rate.optional(),
});

/** `POST /v1/gc`: the grace of the pass in seconds (default: the gateway's, 300). */
export const GcBody = z.strictObject({
  graceSeconds: z
    .number({ error: "must be a number of seconds" })
    .min(0, { error: "must be at least 0" })
    .max(30 * 86400, { error: "must be at most 30 days" })
    .optional(),
});

/** `POST /v1/gc?wait=1`: answer when the pass ends. */
export const GcQuery = z.strictObject({ wait: z.enum(["0", "1"], { error: "must be 0 or 1" }).optional() });

/** A query parameter holding a non-negative integer (an offset or a length in bytes). */
const queryBytes = z
  .string()
  .regex(/^\d{1,16}$/, { error: "must be a non-negative integer" })
  .transform(Number)
  .refine(Number.isSafeInteger, { error: "is too large" });

/** `POST /v1/images/{name}/zero?offset&length`. */
export const ZeroQuery = z.strictObject({ offset: queryBytes, length: queryBytes });

/** `PUT /v1/images/{name}/data?offset` (or a Content-Range header instead). */
export const WriteQuery = z.strictObject({ offset: queryBytes.optional() });

/** `GET /v1/images/{name}/map?offset&length`. */
export const MapQuery = z.strictObject({ offset: queryBytes.optional(), length: queryBytes.optional() });

/** Issue codes that mean "a value out of range" (400 `out_of_range`); the rest are `bad_request`. */
const RANGE_ISSUES = new Set(["too_big", "too_small", "not_multiple_of", "custom"]);

/** A failed validation as the error the one mapping turns into a 400 naming the field. */
export function validationError(where: "body" | "query", issues: readonly z.core.$ZodIssue[]): Error {
  const parts = issues.map((i) => {
    if (i.code === "unrecognized_keys")
      return `unknown ${where === "body" ? "field" : "parameter"} ${i.keys.map((k) => `"${k}"`).join(", ")}`;
    const field = i.path.length ? `"${i.path.join(".")}"` : where;
    return `${field} ${i.message}`;
  });
  const message = `Invalid request ${where}: ${parts.join("; ")}`;
  return issues.every((i) => RANGE_ISSUES.has(i.code)) ? new RangeError(message) : new TypeError(message);
}

/** True if the request says its body is JSON. */
function isJson(contentType: string | undefined): boolean {
  return (contentType ?? "").split(";")[0]!.trim().toLowerCase() === "application/json";
}

/**
 * The validator middleware of a route (hono's zod validator with the hook that turns a
 * failure into our error): `valid("json", CreateImageBody)`; the handler reads the parsed
 * value with `c.req.valid("json")`. A JSON body needs `Content-Type: application/json`.
 */
export function valid<T extends z.ZodType, K extends "json" | "query">(target: K, schema: T) {
  const where = target === "json" ? "body" : "query";
  return zValidator(target, schema, (result, c) => {
    if (target === "json" && !isJson(c.req.header("content-type"))) {
      throw new TypeError(
        `Invalid request body: send JSON with Content-Type: application/json (got ${c.req.header("content-type") || "no Content-Type"})`,
      );
    }
    if (!result.success) throw validationError(where, result.error.issues);
  });
}
