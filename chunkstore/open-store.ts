/**
 * Opens a store from its URL: `memory:`, `file:DIR`, `http(s)://host:port`,
 * `s3://bucket/prefix?endpoint=...&region=...`. Backends load lazily, so a gateway
 * without S3 stores never loads the AWS SDK.
 */
import type { ChunkStore } from "./chunk-store.ts";

/** Options passed to the backend that the URL selects. */
export interface OpenStoreOptions {
  /** Bearer token for `http(s)://` stores. */
  readonly token?: string;
  /** CA (PEM) an `https://` store's certificate must chain to. */
  readonly ca?: string;
  /** Per-request timeout for remote stores, in milliseconds. */
  readonly timeoutMs?: number;
  /** Free-space reserve for `file:` stores, in bytes. */
  readonly reserveBytes?: number;
}

/** Opens the store named by `url`; throws a TypeError for an unknown scheme. */
export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<ChunkStore> {
  if (url === "memory:") {
    const { MemoryStore } = await import("./memory-store.ts");
    return new MemoryStore();
  }
  if (url.startsWith("file:")) {
    const { FileStore } = await import("./file-store.ts");
    const dir = url.startsWith("file://") ? new URL(url).pathname : url.slice("file:".length);
    if (!dir) throw new TypeError(`Store URL "${url}" names no directory: use file:DIR`);
    return FileStore.open(dir, { reserveBytes: options.reserveBytes });
  }
  if (url.startsWith("http://") || url.startsWith("https://")) {
    // No request yet: a gateway starts while a store is down (ChunkStore.probe asks later).
    const { HttpStore } = await import("./http-store.ts");
    return new HttpStore(url, {
      token: options.token,
      timeoutMs: options.timeoutMs,
      ...(options.ca !== undefined && url.startsWith("https://") ? { ca: options.ca } : {}),
    });
  }
  if (url.startsWith("s3://")) {
    const { S3Store } = await import("./s3-store.ts");
    return S3Store.fromUrl(url, { timeoutMs: options.timeoutMs });
  }
  throw new TypeError(
    `Unknown store URL "${url}": use memory:, file:DIR, http(s)://HOST:PORT or s3://BUCKET/PREFIX`,
  );
}
