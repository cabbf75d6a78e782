/**
 * Where backups go: `s3://BUCKET/PREFIX?endpoint=URL&region=R`. Credentials never go in
 * the URL (it is shown in job status and logs); they travel beside it, in memory only.
 */

/** A parsed target. */
export interface BackupTarget {
  /** The URL as given, normalised: what status and messages show. */
  readonly url: string;
  readonly bucket: string;
  /** Key prefix without leading or trailing slash ("" for the bucket root). */
  readonly prefix: string;
  readonly endpoint?: string;
  readonly region?: string;
}

/** Static S3 credentials, as the CLI's environment (or profile) resolved them. */
export interface TargetCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

const BUCKET_PATTERN = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Parses a target URL; throws a TypeError naming what is wrong. */
export function parseBackupTarget(url: string): BackupTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError(`Invalid backup target "${url}": use s3://BUCKET/PREFIX?endpoint=URL&region=R`);
  }
  if (u.protocol !== "s3:") throw new TypeError(`Invalid backup target "${url}": the scheme must be s3:`);
  if (u.username || u.password || u.port)
    throw new TypeError(
      `Invalid backup target "${url}": credentials come from the environment, the server from ?endpoint=`,
    );
  const bucket = decodeURIComponent(u.hostname);
  if (!BUCKET_PATTERN.test(bucket))
    throw new TypeError(
      `Invalid backup target "${url}": "${bucket}" is not a bucket name (3-63 of a-z 0-9 . -)`,
    );
  for (const key of u.searchParams.keys())
    if (key !== "endpoint" && key !== "region")
      throw new TypeError(
        `Invalid backup target "${url}": unknown parameter "${key}" (known: endpoint, region)`,
      );
  const parts = decodeURIComponent(u.pathname)
    .split("/")
    .filter((p) => p !== "");
  if (parts.some((p) => p === "." || p === ".."))
    throw new TypeError(`Invalid backup target "${url}": "." and ".." are not allowed in the prefix`);
  const endpoint = u.searchParams.get("endpoint") ?? undefined;
  if (endpoint !== undefined && !/^https?:\/\/[^/]+/.test(endpoint))
    throw new TypeError(`Invalid backup target "${url}": endpoint must be an http:// or https:// URL`);
  const region = u.searchParams.get("region") ?? undefined;
  const prefix = parts.join("/");
  // Shown as given (an endpoint URL in a query reads better unescaped; URL parses it back).
  const q = [endpoint && `endpoint=${endpoint}`, region && `region=${region}`].filter(Boolean).join("&");
  return {
    url: `s3://${bucket}${prefix ? `/${prefix}` : ""}${q ? `?${q}` : ""}`,
    bucket,
    prefix,
    ...(endpoint !== undefined && { endpoint }),
    ...(region !== undefined && { region }),
  };
}

/** Checks a credentials object from a request body; throws a TypeError (never echoing values). */
export function parseCredentials(value: unknown): TargetCredentials | undefined {
  if (value === undefined || value === null) return undefined;
  const c = value as Record<string, unknown>;
  if (
    typeof c !== "object" ||
    typeof c.accessKeyId !== "string" ||
    typeof c.secretAccessKey !== "string" ||
    c.accessKeyId === "" ||
    (c.sessionToken !== undefined && typeof c.sessionToken !== "string")
  )
    throw new TypeError('"credentials" must be {"accessKeyId", "secretAccessKey", "sessionToken"?} strings');
  return {
    accessKeyId: c.accessKeyId,
    secretAccessKey: c.secretAccessKey,
    ...(typeof c.sessionToken === "string" && c.sessionToken !== "" && { sessionToken: c.sessionToken }),
  };
}
