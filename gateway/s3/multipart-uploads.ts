/**
 * Multipart uploads in progress, in memory (a gateway restart forgets them; clients see
 * NoSuchUpload and start again). Bounded: at most MAX_UPLOADS uploads, MAX_PARTS parts
 * each, MAX_STAGED_BYTES of staged data across all of them (the state kept is 32 bytes
 * per staged chunk); an upload untouched for UPLOAD_EXPIRY_MS is dropped by a sweep
 * every SWEEP_INTERVAL_MS, like an S3 lifecycle rule for incomplete uploads. Chunks an
 * abandoned upload staged stay in the stores until garbage collection.
 */
import type { ImportSession } from "./image-catalog.ts";
import type { StagedPart, StagingBudget } from "./part-stager.ts";
import { S3Error } from "./s3-errors.ts";

/** Uploads in progress per gateway: far more than parallel image imports need. */
export const MAX_UPLOADS = 1000;
/** Parts per upload: S3's limit. */
export const MAX_PARTS = 10_000;
/** Staged data across uploads (and PUTs in flight): 512 GiB, i.e. at most 256 MiB of hashes at 64 KiB chunks. */
export const MAX_STAGED_BYTES = 512 * 1024 ** 3;
/** An upload with no request for this long is abandoned: a day, a common S3 lifecycle setting. */
export const UPLOAD_EXPIRY_MS = 24 * 3600 * 1000;
/** How often abandoned uploads are looked for. */
export const SWEEP_INTERVAL_MS = 60 * 1000;

/** One multipart upload. */
export interface Upload {
  readonly id: string;
  readonly key: string;
  readonly session: ImportSession;
  readonly initiated: Date;
  lastActivity: number;
  readonly parts: Map<number, StagedPart>;
  /** Part uploads and completions running now (an upload is never swept while busy). */
  active: number;
  completing: boolean;
}

/** The registry of multipart uploads and the staging budget. */
export class MultipartUploads {
  readonly #uploads = new Map<string, Upload>();
  readonly #now: () => number;
  readonly #timer: ReturnType<typeof setInterval>;
  #staged = 0;

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
    this.#timer = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Bytes of staged data held now. */
  get stagedBytes(): number {
    return this.#staged;
  }

  /** A budget for one request: takes bytes as they arrive; `release` gives them all back. */
  budget(): { take: StagingBudget; taken: () => number; release: () => void } {
    let taken = 0;
    return {
      take: (bytes) => {
        if (this.#staged + bytes > MAX_STAGED_BYTES) {
          throw new S3Error(
            "SlowDown",
            `The gateway holds ${this.#staged} bytes of uploads in progress (limit ${MAX_STAGED_BYTES}); complete or abort some`,
          );
        }
        this.#staged += bytes;
        taken += bytes;
      },
      taken: () => taken,
      release: () => {
        this.#staged -= taken;
        taken = 0;
      },
    };
  }

  create(key: string, session: ImportSession): Upload {
    this.sweep();
    if (this.#uploads.size >= MAX_UPLOADS) {
      throw new S3Error(
        "SlowDown",
        `${MAX_UPLOADS} multipart uploads are in progress; complete or abort some first`,
      );
    }
    const id = Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString("base64url");
    const upload: Upload = {
      id,
      key,
      session,
      initiated: new Date(this.#now()),
      lastActivity: this.#now(),
      parts: new Map(),
      active: 0,
      completing: false,
    };
    this.#uploads.set(id, upload);
    return upload;
  }

  /** The upload `id` of `key`; throws NoSuchUpload. */
  get(key: string, id: string): Upload {
    const upload = this.#uploads.get(id);
    if (!upload || upload.key !== key) {
      throw new S3Error(
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
        {
          fields: { UploadId: id },
        },
      );
    }
    upload.lastActivity = this.#now();
    return upload;
  }

  /**
   * Where part `n` is assumed to start, modulo the chunk size: exact when every part
   * before it is here, else the start of a chunk (right whenever the earlier parts are
   * whole chunks, which every common client's part size is).
   */
  phaseFor(upload: Upload, n: number): number {
    let offset = 0;
    for (let i = 1; i < n; i++) {
      const p = upload.parts.get(i);
      if (!p) return 0;
      offset += p.size;
    }
    return offset % upload.session.chunkSize;
  }

  /**
   * Records a staged part (replacing an earlier upload of the same number); false if the
   * upload is gone. The part's bytes, taken from a request budget, stay counted until the upload ends.
   */
  recordPart(upload: Upload, n: number, part: StagedPart): boolean {
    if (this.#uploads.get(upload.id) !== upload) return false;
    const old = upload.parts.get(n);
    if (old) this.#staged -= old.size;
    upload.parts.set(n, part);
    upload.lastActivity = this.#now();
    return true;
  }

  /** Ends an upload (completed or aborted) and frees its staged budget. */
  remove(upload: Upload): void {
    if (this.#uploads.get(upload.id) !== upload) return;
    this.#uploads.delete(upload.id);
    for (const p of upload.parts.values()) this.#staged -= p.size;
  }

  /** Uploads in progress, by key then initiation time. */
  list(): Upload[] {
    return [...this.#uploads.values()].sort((a, b) =>
      a.key === b.key ? a.initiated.getTime() - b.initiated.getTime() : a.key < b.key ? -1 : 1,
    );
  }

  /** Drops uploads idle for longer than UPLOAD_EXPIRY_MS. */
  sweep(): void {
    const now = this.#now();
    for (const u of [...this.#uploads.values()]) {
      if (u.active === 0 && now - u.lastActivity > UPLOAD_EXPIRY_MS) this.remove(u);
    }
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
