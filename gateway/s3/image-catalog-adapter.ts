/**
 * The S3 endpoint's port ({@link S3ImageCatalog}) over the image layer: ImageService for
 * the catalogue and attachment, the head writer for an import's head (one change,
 * `importContent`), StoreSet for chunks, BlockMap for versions, the worker pool for
 * hashing. The one file to re-point when the image layer changes.
 *
 * Last-Modified: today's head records when an image was created but not when its current
 * version was committed. The adapter reports, for an image's current version, the time
 * this gateway first saw that root (the gateway's start, or the creation if later, for a
 * version already there at start). A changed image therefore always looks modified after
 * any date a client got from this gateway, which is the direction conditional requests
 * need; after a restart versions look newer than they are. Snapshots have their exact time.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { HASH_BYTES, toHex } from "../../chunkstore/hash.ts";
import { ImageExistsError, ImageNotFoundError } from "../errors.ts";
import { BlockMap, ZERO_HASH } from "../image/block-map.ts";
import { blockSpans } from "../image/block-spans.ts";
import { confirmContent } from "../image/gc-barrier.ts";
import {
  assertImageName,
  assertImageSize,
  blockCount,
  DEFAULT_CHUNK_SIZE,
  type Head,
  liveHead,
} from "../image/head.ts";
import { GcBarrierError, importContent, NeedMoreCopiesError, type PutReport } from "../image/head-writer.ts";
import type { ImageContext } from "../image/image-context.ts";
import type { ImageService } from "../image/image-service.ts";
import { blockWithPatches } from "../image/patch-chunk.ts";
import { type PutOutcome, PutOutcomes } from "../replication/store-set.ts";
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

/** Times an import's head is tried again after stores entered maintenance during it. */
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
    const out: CommittedVersion[] = [];
    for (const value of (await this.#images.heads()).values()) {
      const head = liveHead(value);
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
    // The gc barrier, read before the import's first chunk is put (image/gc-barrier.ts).
    const { gcEpoch } = await this.#ctx.cluster.freshState();
    return new StoreImportSession(this, this.#ctx, image, existing?.chunkSize ?? DEFAULT_CHUNK_SIZE, gcEpoch);
  }

  async deleteSnapshot(image: string, snapshot: string): Promise<void> {
    await this.#images.deleteSnapshot(image, snapshot);
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
   * Commits an import's head through the head writer: creates the image, or replaces the
   * current version of an unattached one (the importing gateway becomes the owner, so a
   * gateway still holding the old version is fenced; snapshots kept). Stores that did not
   * receive all of the import stay behind, and heal catches them up.
   */
  async commitHead(
    image: string,
    version: { root: Hash; size: number; chunkSize: number },
    put: PutReport,
    chunks: readonly { hash: Hash; bytes?: Uint8Array }[],
    condition: ImportCondition,
    observedGcEpoch: number,
  ): Promise<CommittedVersion> {
    const ctx = this.#ctx;
    let report = put;
    let gcEpoch = observedGcEpoch;
    let leaving = await ctx.cluster.freshLeaving();
    /**
     * Every chunk the new version references (`chunks`: pages and data) put again past
     * `leaving`, read back where not at hand, 64 at a time. The report is then this put
     * alone: what staging put besides (seam pieces, cut again at assembly) is no part of
     * the version and must not count.
     */
    const reput = async (past: ReadonlySet<string>) => {
      const again = new PutOutcomes();
      for (let i = 0; i < chunks.length; i += REPUT_BATCH) {
        const batch = chunks.slice(i, i + REPUT_BATCH);
        const bytes = await Promise.all(batch.map((c) => c.bytes ?? ctx.stores.getChunk(c.hash)));
        again.add(
          await ctx.stores.putChunks(
            batch.map((c, k) => ({ hash: c.hash, bytes: bytes[k]! })),
            past,
          ),
        );
      }
      report = again.outcome;
    };
    for (let attempt = 1; ; attempt++) {
      try {
        const { head } = await ctx.heads.change(
          image,
          importContent({
            name: image,
            ...version,
            owner: ctx.gatewayId,
            put: report,
            leaving,
            minReplicas: ctx.stores.options.minReplicas,
            gcEpoch,
            check: (current) => {
              if (!current) {
                if (condition.ifMatch !== undefined) throw new ImageNotFoundError(image);
                return;
              }
              if (condition.ifNoneMatch) throw new ImageExistsError(image);
              if (condition.ifMatch !== undefined && current.root !== condition.ifMatch)
                throw new VersionChangedError(image, condition.ifMatch, current.root);
              if (this.#images.isAttached(image)) throw new ImageAttachedError(image, "replace");
            },
          }),
        );
        let h = head as Head;
        if (h.gcPending !== undefined) {
          // A new image: confirmed against the barrier now that its head exists.
          await confirmContent(ctx, image, h.incarnation, () => reput(ctx.cluster.leaving()));
          h = (liveHead(await ctx.heads.read(image)) ?? h) as Head;
        }
        // An open (unattached) instance holds the old head: close it so the next open reads the new one.
        await this.#images.forget(image).catch(() => {});
        this.#seen.set(image, { root: h.root, at: new Date(Math.floor(Date.now() / 1000) * 1000) });
        return this.#current(h);
      } catch (err) {
        if (attempt >= COMMIT_ATTEMPTS) throw err;
        if (err instanceof NeedMoreCopiesError) {
          // Stores entered maintenance during the upload: put the chunks again past them.
          leaving = err.leaving;
          await reput(err.leaving);
        } else if (err instanceof GcBarrierError) {
          // A collection may have condemned chunks the upload found stored: put them again
          // (a chunk swept already makes this throw: the upload fails, it never lands short).
          const state = await ctx.cluster.freshState();
          gcEpoch = state.gcEpoch;
          leaving = new Set([...leaving, ...state.leaving]);
          await reput(leaving);
        } else throw err;
      }
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
  /** The gc pin while pinned (durable once it resolves), and its release. */
  #pinned: Promise<(() => Promise<void>) | null> | null = null;

  constructor(ctx: ImageContext, version: CommittedVersion) {
    this.version = version;
    this.#ctx = ctx;
    const blocks = Math.max(1, blockCount(version));
    this.#map = new BlockMap((h) => ctx.stores.getChunk(h), version.root, blocks);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    // A pinned reader reads only once its pin is durable (a pin that failed: read unpinned).
    if (this.#pinned) await this.#pinned;
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
          const { hash, patches } = await this.#map.entry(s.index);
          if (hash === ZERO_HASH && patches.length === 0) return; // a hole: zeros, no store asked
          // Clean chunks by hash are immutable; a scan does not fill the cache (it would evict VM data).
          const chunk = async (h: Hash) => this.#ctx.chunkCache.get(h) ?? this.#ctx.stores.getChunk(h);
          const [base, stack] = await Promise.all([
            hash === ZERO_HASH ? null : chunk(hash),
            Promise.all(patches.map(chunk)),
          ]);
          const bytes = blockWithPatches(base, stack, this.version.chunkSize)!;
          out.set(bytes.subarray(s.inBlock, s.inBlock + s.length), s.at);
        })(),
      );
    }
    await Promise.all(jobs);
    return out;
  }

  /** Keeps the version's chunks from garbage collection while it is read (gc/pins.ts). */
  pin(): void {
    if (this.#pins++ > 0 || !this.#ctx.pinVersion) return;
    const v = this.version;
    this.#pinned = this.#ctx
      .pinVersion({ root: v.root, size: v.size, chunkSize: v.chunkSize, why: `s3 GET ${v.key}` })
      .catch((err) => {
        this.#ctx.log(
          `s3 GET ${v.key}: could not pin the version (${(err as Error).message}); read unpinned`,
        );
        return null;
      });
  }

  unpin(): void {
    if (this.#pins === 0) throw new RangeError(`Unbalanced unpin of "${this.version.key}"`);
    if (--this.#pins > 0) return;
    const pinned = this.#pinned;
    this.#pinned = null;
    void pinned?.then((release) => release?.());
  }
}

/** Chunks read and put again per batch when an import must put everything again. */
const REPUT_BATCH = 64;

/** An import into one image name: chunks go to the stores as parts arrive; the head is written at commit. */
class StoreImportSession implements ImportSession {
  readonly image: string;
  readonly chunkSize: number;
  readonly #catalog: ImageCatalogAdapter;
  readonly #ctx: ImageContext;
  /** Every put of this import, merged: which stores received all of it, and the copies per chunk. */
  readonly #puts = new PutOutcomes();
  /** Chunks skipped because every placement store had them: counted as copies there. */
  readonly #present = new Map<Hash, Set<string>>();
  /** Stores whose existence check failed: they may lack chunks this import skipped. */
  readonly #unchecked = new Set<string>();
  /** The placement epoch when the session began: chunks were checked and put under it. */
  readonly #placementEpoch: number;

  /** The gc barrier read before this import's first chunk was put. */
  readonly #gcEpoch: number;

  constructor(
    catalog: ImageCatalogAdapter,
    ctx: ImageContext,
    image: string,
    chunkSize: number,
    gcEpoch: number,
  ) {
    this.#catalog = catalog;
    this.#gcEpoch = gcEpoch;
    this.#placementEpoch = ctx.stores.view.epoch;
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

  async putChunks(chunks: readonly { hash: Hash; bytes: Uint8Array }[]): Promise<{ settled: Promise<void> }> {
    const none = { settled: Promise.resolve() };
    if (chunks.length === 0) return none;
    const stores = this.#ctx.stores;
    // Stores in this process deduplicate a put with the one lookup a `has` would cost:
    // asking first would only double the lookups (and a put revives a condemned chunk).
    if (stores.dataMembers.every((m) => m.store.capabilities.local === true)) {
      const outcome = await stores.putChunks(chunks, this.#ctx.cluster.leaving());
      this.#merge(outcome);
      return outcome;
    }
    // Ask each placement store which chunks it holds; a chunk on all of them is not sent again.
    const leaving = this.#ctx.cluster.leaving();
    const { present, lacking, unchecked } = await stores.placedCopies(
      chunks.map((c) => c.hash),
      leaving,
    );
    for (const [h, have] of present) this.#present.set(h, have);
    for (const id of unchecked) this.#unchecked.add(id);
    const wanted = new Set(lacking);
    const missing = chunks.filter((c) => wanted.has(c.hash));
    if (missing.length === 0) return none;
    const outcome = await stores.putChunks(missing, leaving);
    this.#merge(outcome);
    return outcome;
  }

  #merge(outcome: PutOutcome): void {
    this.#puts.add(outcome);
  }

  /** The import's put report: copies of skipped chunks count where they were found. */
  #report(): PutReport {
    const outcome = this.#puts.any ? this.#puts.outcome : null;
    const present = this.#present;
    const unchecked = this.#unchecked;
    const identities = new Map(
      this.#ctx.stores.dataMembers
        .map((m) => [m.id, this.#ctx.cluster.identity(m.id)] as const)
        .filter((e): e is readonly [string, string] => e[1] !== null),
    );
    const complete = new Map<string, string>();
    // Placement moved during the session (a store added or drained): no store is known
    // to hold all placed on it under one placement.
    const epoch = this.#ctx.stores.view.epoch;
    const moved = epoch !== this.#placementEpoch || (outcome !== null && outcome.placementEpoch !== epoch);
    if (!moved)
      for (const [id, identity] of outcome ? outcome.complete : identities)
        if (!unchecked.has(id)) complete.set(id, identity);
    return {
      complete,
      placementEpoch: epoch,
      enoughCopies: (leaving, min) =>
        (outcome?.enoughCopies(leaving, min) ?? true) &&
        [...present.values()].every((s) => [...s].filter((id) => !leaving.has(id)).length >= min),
    };
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
    this.#merge(await this.#ctx.stores.putChunks(pages, this.#ctx.cluster.leaving()));
    const all: { hash: Hash; bytes?: Uint8Array }[] = [...pages];
    for (let i = 0; i < count; i++) {
      const entry = blocks.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
      if (entry.some((b) => b !== 0)) all.push({ hash: toHex(entry) });
    }
    return this.#catalog.commitHead(
      this.image,
      { root, size, chunkSize: this.chunkSize },
      this.#report(),
      all,
      condition,
      this.#gcEpoch,
    );
  }
}
