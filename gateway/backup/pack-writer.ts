/**
 * Packs chunks into objects of about PACK_TARGET_BYTES (`tree` pages and `data` chunks in
 * packs of their own), uploads each as it fills with a bounded number in flight, and
 * records finished packs in index objects as they land, so a backup killed midway has
 * its uploaded packs indexed and a rerun skips them.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import type { Repository } from "./repository.ts";
import { PACK_TARGET_BYTES, type PackKind } from "./repository-format.ts";
import type { PackRecord, RepositoryIndex } from "./repository-index.ts";

/** Packs uploading at once: 3 x 16 MiB in flight keeps a link busy with bounded memory. */
export const PACK_UPLOADS_IN_FLIGHT = 6;

interface OpenPack {
  parts: Uint8Array[];
  blobs: [Hash, number, number][];
  bytes: number;
  plainBytes: number;
}

/** What the writer reports per uploaded pack. */
export interface PackUploaded {
  readonly pack: PackRecord;
  /** Bytes of the chunks in it (before sealing). */
  readonly plainBytes: number;
}

/** Writes chunks into packs of one repository. */
export class PackWriter {
  readonly #repo: Repository;
  readonly #index: RepositoryIndex;
  readonly #target: number;
  readonly #onPack: (p: PackUploaded) => void;
  readonly #open = new Map<PackKind, OpenPack>();
  readonly #uploads = new Set<Promise<void>>();
  #failure: unknown = null;
  #unindexed: PackRecord[] = [];
  #indexing: Promise<void> = Promise.resolve();
  /** Bytes written to the repository: packs and index objects. */
  uploadedBytes = 0;
  packs = 0;

  constructor(
    repo: Repository,
    index: RepositoryIndex,
    options: { targetBytes?: number; onPack?: (p: PackUploaded) => void } = {},
  ) {
    this.#repo = repo;
    this.#index = index;
    this.#target = options.targetBytes ?? PACK_TARGET_BYTES;
    this.#onPack = options.onPack ?? (() => {});
  }

  /** Adds a chunk (already known to be absent from the repository); waits while uploads are full. */
  async add(kind: PackKind, hash: Hash, bytes: Uint8Array): Promise<void> {
    this.#throwIfFailed();
    const sealed = await this.#repo.sealBlob(hash, bytes);
    let p = this.#open.get(kind);
    if (!p) {
      p = { parts: [], blobs: [], bytes: 0, plainBytes: 0 };
      this.#open.set(kind, p);
    }
    p.blobs.push([hash, p.bytes, sealed.byteLength]);
    p.parts.push(sealed);
    p.bytes += sealed.byteLength;
    p.plainBytes += bytes.byteLength;
    if (p.bytes >= this.#target) {
      this.#open.delete(kind);
      await this.#upload(kind, p);
    }
  }

  async #upload(kind: PackKind, p: OpenPack): Promise<void> {
    while (this.#uploads.size >= PACK_UPLOADS_IN_FLIGHT) await Promise.race(this.#uploads);
    this.#throwIfFailed();
    const run = (async () => {
      const pack = await this.#repo.putPack(kind, p.parts, p.blobs);
      this.uploadedBytes += pack.bytes;
      this.packs++;
      this.#index.add(pack);
      this.#unindexed.push(pack);
      this.#scheduleIndex();
      this.#onPack({ pack, plainBytes: p.plainBytes });
    })().catch((err) => {
      this.#failure ??= err;
    });
    this.#uploads.add(run);
    void run.finally(() => this.#uploads.delete(run));
  }

  /** One index write at a time; it takes every pack that landed since the last. */
  #scheduleIndex(): void {
    this.#indexing = this.#indexing.then(async () => {
      if (this.#unindexed.length === 0) return;
      const packs = this.#unindexed;
      this.#unindexed = [];
      try {
        const { bytes } = await this.#repo.writeIndex(packs);
        this.uploadedBytes += bytes;
      } catch (err) {
        this.#failure ??= err;
      }
    });
  }

  /** Uploads the partly filled packs, waits for every upload and index write. */
  async finish(): Promise<void> {
    for (const [kind, p] of [...this.#open]) {
      this.#open.delete(kind);
      if (p.blobs.length > 0) await this.#upload(kind, p);
    }
    while (this.#uploads.size > 0) await Promise.race(this.#uploads);
    this.#scheduleIndex();
    await this.#indexing;
    this.#throwIfFailed();
  }

  /** Waits for uploads in flight without throwing (after a failure elsewhere). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.#uploads]);
    await this.#indexing.catch(() => {});
  }

  #throwIfFailed(): void {
    if (this.#failure !== null) throw this.#failure;
  }
}
