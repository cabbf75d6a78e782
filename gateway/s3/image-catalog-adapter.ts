/**
 * The S3 endpoint's port ({@link S3ImageCatalog}) over today's image layer: ImageService
 * for the catalogue and attachment, HeadStore for heads, StoreSet for chunks, BlockMap
 * for versions, the worker pool for hashing. The one file to re-point when the image
 * layer changes; it uses the layer's public members only (plus ImageService.isAttached
 * and ImageService.forget, added for it).
 *
 * Last-Modified: today's head records when an image was created but not when its current
 * version was committed. The adapter reports, for an image's current version, the time
 * this gateway first saw that root (the gateway's start, or the creation if later, for a
 * version already there at start). A changed image therefore always looks modified after
 * any date a client got from this gateway, which is the direction conditional requests
 * need; after a restart versions look newer than they are. Snapshots have their exact time.
 */
import pLimit from "p-limit";
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { HASH_BYTES, toHex } from "../../chunkstore/hash.ts";
import { MAX_BATCH_HASHES } from "../../chunkstore/limits.ts";
import { ImageExistsError, ImageNotFoundError } from "../errors.ts";
import { BlockMap, ZERO_HASH } from "../image/block-map.ts";
import { blockSpans } from "../image/block-spans.ts";
import {
  assertImageName,
  assertImageSize,
  blockCount,
  DEFAULT_CHUNK_SIZE,
  type Head,
  newHead,
  type SyncedVersion,
} from "../image/head.ts";
import type { ImageContext } from "../image/image.ts";
import type { ImageService } from "../image/image-service.ts";
import {
  type CommittedVersion,
  ImageAttachedError,
  ImageHasSnapshotsError,
  type ImportCondition,
  type ImportSession,
  parseKey,
  type S3ImageCatalog,
  VersionChangedError,
  type VersionReader,
} from "./image-catalog.ts";

/** Heads read at once when listing (as the HTTP API does). */
const LIST_CONCURRENCY = 16;
/** Attempts at committing an import's head when another writer moves it meanwhile. */
const COMMIT_ATTEMPTS = 3;

/** {@link S3ImageCatalog} over an {@link ImageService}. */
export class ImageCatalogAdapter implements S3ImageCatalog {
  readonly #images: ImageService;
  readonly #startedAt: number;
  /** Per image: the root last seen and since when (see the module comment). */
  readonly #seen = new Map<string, { root: Hash; at: Date }>();

  constructor(images: ImageService, options: { startedAt?: number } = {}) {
    this.#images = images;
    this.#startedAt = options.startedAt ?? Date.now();
  }

  get #ctx(): ImageContext {
    return this.#images.ctx;
  }

  async list(): Promise<CommittedVersion[]> {
    const read = pLimit(LIST_CONCURRENCY);
    const heads = await Promise.all(
      (await this.#images.list()).map((name) =>
        read(() =>
          this.#images.info(name).catch((err) => {
            if (err instanceof ImageNotFoundError) return null; // deleted meanwhile
            throw err;
          }),
        ),
      ),
    );
    const out: CommittedVersion[] = [];
    for (const head of heads) {
      if (!head) continue;
      out.push(this.#current(head));
      for (const snap of Object.keys(head.snapshots)) out.push(this.#snapshot(head, snap));
    }
    return out;
  }

  async resolve(key: string): Promise<CommittedVersion> {
    const { image, snapshot } = parseKey(key);
    try {
      assertImageName(image);
      if (snapshot !== undefined) assertImageName(snapshot, "snapshot");
    } catch {
      throw new ImageNotFoundError(key);
    }
    const head = await this.#images.info(image);
    if (snapshot === undefined) return this.#current(head);
    if (!head.snapshots[snapshot]) throw new ImageNotFoundError(key);
    return this.#snapshot(head, snapshot);
  }

  openReader(version: CommittedVersion): VersionReader {
    return new StoreVersionReader(this.#ctx, version);
  }

  async beginImport(image: string): Promise<ImportSession> {
    assertImageName(image);
    if (this.#images.isAttached(image)) throw new ImageAttachedError(image, "replace");
    const existing = await this.#images.info(image).catch((err) => {
      if (err instanceof ImageNotFoundError) return null;
      throw err;
    });
    return new StoreImportSession(this, this.#ctx, image, existing?.chunkSize ?? DEFAULT_CHUNK_SIZE);
  }

  async deleteSnapshot(image: string, snapshot: string): Promise<void> {
    await this.#images.withImage(image, (img) => img.deleteSnapshot(snapshot));
  }

  async deleteImage(image: string): Promise<void> {
    if (this.#images.isAttached(image)) throw new ImageAttachedError(image, "delete");
    const head = await this.#images.info(image);
    const snapshots = Object.keys(head.snapshots);
    if (snapshots.length > 0) throw new ImageHasSnapshotsError(image, snapshots);
    await this.#images.remove(image);
    this.#seen.delete(image);
  }

  isAttached(image: string): boolean {
    return this.#images.isAttached(image);
  }

  /**
   * Commits an import's head: creates the image, or replaces the current version of an
   * unattached one (generation and owner epoch bumped, so a gateway still holding the old
   * head is fenced; snapshots kept). Stores that failed a put during the import stay at
   * their previous `synced` version, so heal catches them up.
   */
  async commitHead(
    image: string,
    version: { root: Hash; size: number; chunkSize: number },
    failedStores: ReadonlySet<string>,
    condition: ImportCondition,
  ): Promise<CommittedVersion> {
    const { heads, stores } = this.#ctx;
    const dataIds = stores.dataMembers.map((m) => m.id);
    const syncedFor = (generation: number, prev: Head["synced"]) => {
      const synced: Record<string, SyncedVersion> = {};
      for (const id of dataIds) {
        synced[id] = failedStores.has(id)
          ? (prev[id] ?? { generation: 0, root: ZERO_HASH, size: 0 })
          : { generation, root: version.root, size: version.size };
      }
      return synced;
    };
    for (let attempt = 1; ; attempt++) {
      const state = await heads.read(image);
      let head: Head;
      try {
        if (!state) {
          if (condition.ifMatch !== undefined) throw new ImageNotFoundError(image);
          const base = newHead(image, version.size, version.chunkSize, version.root);
          head = { ...base, synced: syncedFor(1, {}) };
          await heads.commit(null, head);
        } else {
          const prev = state.head;
          if (condition.ifNoneMatch) throw new ImageExistsError(image);
          if (condition.ifMatch !== undefined && prev.root !== condition.ifMatch) {
            throw new VersionChangedError(image, condition.ifMatch, prev.root);
          }
          if (this.#images.isAttached(image)) throw new ImageAttachedError(image, "replace");
          if (prev.chunkSize !== version.chunkSize) {
            throw new RangeError(
              `Image "${image}" was re-created with chunk size ${prev.chunkSize} during the upload (the upload used ${version.chunkSize}); upload it again`,
            );
          }
          // The open (unattached) image holds the old head: close it so the next open reads the new one.
          await this.#images.forget(image);
          const generation = prev.generation + 1;
          head = {
            ...prev,
            root: version.root,
            size: version.size,
            generation,
            epoch: prev.epoch + 1,
            synced: syncedFor(generation, prev.synced),
          };
          await heads.commit(state, head);
        }
      } catch (err) {
        const decided =
          err instanceof ImageExistsError ||
          err instanceof ImageNotFoundError ||
          err instanceof VersionChangedError ||
          err instanceof ImageAttachedError ||
          err instanceof RangeError;
        // Otherwise the head moved (or appeared) while we wrote it: read it again and decide again.
        if (decided || attempt >= COMMIT_ATTEMPTS) throw err;
        continue;
      }
      const at = new Date(Math.floor(Date.now() / 1000) * 1000);
      this.#seen.set(image, { root: head.root, at });
      return this.#current(head);
    }
  }

  #current(head: Head): CommittedVersion {
    let seen = this.#seen.get(head.name);
    if (!seen || seen.root !== head.root) {
      const since = seen ? Date.now() : Math.max(this.#startedAt, Date.parse(head.createdAt) || 0);
      seen = { root: head.root, at: new Date(Math.floor(since / 1000) * 1000) };
      this.#seen.set(head.name, seen);
    }
    return {
      key: head.name,
      image: head.name,
      root: head.root,
      size: head.size,
      chunkSize: head.chunkSize,
      generation: head.generation,
      lastModified: seen.at,
    };
  }

  #snapshot(head: Head, name: string): CommittedVersion {
    const snap = head.snapshots[name]!;
    return {
      key: `${head.name}@${name}`,
      image: head.name,
      snapshot: name,
      root: snap.root,
      size: snap.size,
      chunkSize: head.chunkSize,
      generation: snap.generation,
      lastModified: new Date(Math.floor((Date.parse(snap.createdAt) || 0) / 1000) * 1000),
    };
  }
}

/** Reads one committed version through its block map and the stores (and clean chunks already cached). */
class StoreVersionReader implements VersionReader {
  readonly version: CommittedVersion;
  readonly #ctx: ImageContext;
  readonly #map: BlockMap;
  #pins = 0;

  constructor(ctx: ImageContext, version: CommittedVersion) {
    this.version = version;
    this.#ctx = ctx;
    const blocks = Math.max(1, blockCount(version));
    this.#map = new BlockMap((h) => ctx.stores.getChunk(h), version.root, blocks);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.version.size) {
      throw new RangeError(
        `Range ${offset}+${length} is outside "${this.version.key}" of ${this.version.size} bytes`,
      );
    }
    const out = new Uint8Array(length);
    const jobs: Promise<void>[] = [];
    for (const s of blockSpans(offset, length, this.version.chunkSize)) {
      jobs.push(
        (async () => {
          const hash = await this.#map.get(s.index);
          if (hash === ZERO_HASH) return; // a hole: zeros, no store asked
          // Clean chunks by hash are immutable; a scan does not fill the cache (it would evict VM data).
          const bytes = this.#ctx.chunkCache.get(hash) ?? (await this.#ctx.stores.getChunk(hash));
          out.set(bytes.subarray(s.inBlock, s.inBlock + s.length), s.at);
        })(),
      );
    }
    await Promise.all(jobs);
    return out;
  }

  // No garbage collection exists yet, so a pin is a count only; GC will consult it.
  pin(): void {
    this.#pins++;
  }

  unpin(): void {
    if (this.#pins === 0) throw new RangeError(`Unbalanced unpin of "${this.version.key}"`);
    this.#pins--;
  }
}

/** An import into one image name: chunks go to the stores as parts arrive; the head is written at commit. */
class StoreImportSession implements ImportSession {
  readonly image: string;
  readonly chunkSize: number;
  readonly #catalog: ImageCatalogAdapter;
  readonly #ctx: ImageContext;
  /** Stores that failed any put of this import: their `synced` must not advance. */
  readonly #failed = new Set<string>();

  constructor(catalog: ImageCatalogAdapter, ctx: ImageContext, image: string, chunkSize: number) {
    this.#catalog = catalog;
    this.#ctx = ctx;
    this.image = image;
    this.chunkSize = chunkSize;
  }

  async hashBlocks(data: Uint8Array, blockSize: number): Promise<{ hashes: Uint8Array; data: Uint8Array }> {
    return this.#ctx.pool.run(
      "hashBlocks",
      { data, blockSize, zeroIsHole: true },
      { transfer: [data.buffer as ArrayBuffer] },
    );
  }

  async putChunks(chunks: readonly { hash: Hash; bytes: Uint8Array }[]): Promise<void> {
    if (chunks.length === 0) return;
    const stores = this.#ctx.stores;
    // Ask each placement store which chunks it holds; a chunk on all of them is not sent again.
    const asked = new Map<string, Hash[]>();
    for (const c of chunks) {
      for (const id of stores.placement(c.hash)) {
        const list = asked.get(id) ?? [];
        asked.set(id, list);
        list.push(c.hash);
      }
    }
    const copies = new Map<Hash, number>();
    await Promise.all(
      [...asked].map(async ([id, hashes]) => {
        const member = stores.member(id);
        if (!member || stores.health.isDown(id)) return;
        for (let i = 0; i < hashes.length; i += MAX_BATCH_HASHES) {
          const batch = hashes.slice(i, i + MAX_BATCH_HASHES);
          const has = await member.store.has(batch).catch(() => batch.map(() => false));
          has.forEach((present, k) => {
            if (present) copies.set(batch[k]!, (copies.get(batch[k]!) ?? 0) + 1);
          });
        }
      }),
    );
    const missing = chunks.filter((c) => (copies.get(c.hash) ?? 0) < stores.placement(c.hash).length);
    if (missing.length === 0) return;
    const outcome = await stores.putChunks(missing);
    for (const id of outcome.failedStores) this.#failed.add(id);
  }

  readChunk(hash: Hash): Promise<Uint8Array> {
    return this.#ctx.stores.getChunk(hash);
  }

  async commit(blocks: Uint8Array, size: number, condition: ImportCondition): Promise<CommittedVersion> {
    assertImageSize(size);
    const count = blockCount({ size, chunkSize: this.chunkSize });
    if (blocks.byteLength !== count * HASH_BYTES) {
      throw new RangeError(`${blocks.byteLength / HASH_BYTES} block hashes for an image of ${count} blocks`);
    }
    const map = new BlockMap((h) => this.#ctx.stores.getChunk(h), ZERO_HASH, Math.max(1, count));
    for (let i = 0; i < count; i++) {
      const entry = blocks.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
      if (entry.some((b) => b !== 0)) await map.set(i, toHex(entry));
    }
    const { root, pages } = await map.commit();
    const outcome = await this.#ctx.stores.putChunks(pages);
    for (const id of outcome.failedStores) this.#failed.add(id);
    return this.#catalog.commitHead(
      this.image,
      { root, size, chunkSize: this.chunkSize },
      this.#failed,
      condition,
    );
  }
}
