/**
 * Images of one gateway: create, list, clone, delete, and opening them for I/O. All
 * connections to one image share one open {@link Image} (one cache), which is what makes
 * NBD multi-conn safe. Opening an image for writing bumps its owner epoch (fencing).
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { ImageExistsError, ImageNotFoundError } from "../errors.ts";
import type { HeadState } from "../replication/head-store.ts";
import { growRoot, levelsFor, ZERO_HASH } from "./block-map.ts";
import {
  advanceSynced,
  assertChunkSize,
  assertImageName,
  assertImageSize,
  blockCount,
  DEFAULT_CHUNK_SIZE,
  type Head,
  newHead,
} from "./head.ts";
import { Image, type ImageContext } from "./image.ts";

/** Options of {@link ImageService.create}. */
export interface CreateImageOptions {
  readonly chunkSize?: number;
  /** Clone source, `image@snapshot`. */
  readonly from?: string;
}

/** Splits `image@snapshot`. */
export function parseExportName(name: string): { image: string; snapshot?: string } {
  const at = name.indexOf("@");
  if (at < 0) return { image: name };
  return { image: name.slice(0, at), snapshot: name.slice(at + 1) };
}

/** The image catalogue and the registry of open images. */
export class ImageService {
  readonly #open = new Map<string, { image: Promise<Image>; refs: number }>();
  /** The open writable images whose opening finished: their heads are current at every commit. */
  readonly #ready = new Map<string, Image>();

  /** Current heads of the images this gateway has open for writing (no I/O). */
  openHeads(): Head[] {
    return [...this.#ready.values()].filter((i) => !i.fenced).map((i) => i.head);
  }

  readonly ctx: ImageContext;

  constructor(ctx: ImageContext) {
    this.ctx = ctx;
  }

  /** Creates an empty image, or a clone of `from` (`image@snapshot`) in O(1). */
  async create(name: string, size: number | undefined, options: CreateImageOptions = {}): Promise<Head> {
    assertImageName(name);
    let root: Hash = ZERO_HASH;
    let chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (options.from) {
      const { image, snapshot } = parseExportName(options.from);
      if (!snapshot)
        throw new TypeError(`Clone source "${options.from}" must name a snapshot: image@snapshot`);
      const src = await this.#read(image);
      const snap = src.head.snapshots[snapshot];
      if (!snap) throw new ImageNotFoundError(options.from);
      if (options.chunkSize && options.chunkSize !== src.head.chunkSize) {
        throw new RangeError(`A clone keeps its source's chunk size (${src.head.chunkSize})`);
      }
      chunkSize = src.head.chunkSize;
      size = Math.max(size ?? snap.size, snap.size);
      // A clone larger than its snapshot may need a taller block map over the same root.
      const levels = (bytes: number) => levelsFor(Math.max(1, blockCount({ size: bytes, chunkSize })));
      const grown = growRoot(snap.root, levels(snap.size), levels(size));
      await this.ctx.stores.putChunks(grown.pages);
      root = grown.root;
    }
    if (size === undefined) throw new TypeError("An image needs a size in bytes");
    assertImageSize(size);
    assertChunkSize(chunkSize);
    const base = newHead(name, size, chunkSize, root);
    // Every data store starts in sync: an empty image (or a clone's shared root) is on all of them.
    const synced = Object.fromEntries(
      this.ctx.stores.dataMembers.map((m) => [m.id, { generation: 1, root }]),
    );
    const head = { ...base, synced };
    const existing = await this.ctx.heads.read(name);
    if (existing) throw new ImageExistsError(name);
    try {
      await this.ctx.heads.commit(null, head);
    } catch (err) {
      if ((await this.ctx.heads.read(name).catch(() => null)) !== null) throw new ImageExistsError(name);
      throw err;
    }
    return head;
  }

  /** Names of all images. */
  list(): Promise<string[]> {
    return this.ctx.heads.list();
  }

  /** The current head of an image (the open image's, if this gateway has it open). */
  async info(name: string): Promise<Head> {
    const open = this.#open.get(name);
    if (open) return (await open.image).head;
    return (await this.#read(name)).head;
  }

  async #read(name: string): Promise<HeadState> {
    assertImageName(name);
    const state = await this.ctx.heads.read(name);
    if (!state) throw new ImageNotFoundError(name);
    return state;
  }

  /** True while a client (an NBD connection, an HTTP request) has image `name` open for writing here. */
  isAttached(name: string): boolean {
    return (this.#open.get(name)?.refs ?? 0) > 0;
  }

  /**
   * Closes image `name` if it is open here but unattached, so the next open reads its head
   * again (used after the head was replaced underneath, by an S3 import). Refused while attached.
   */
  async forget(name: string): Promise<void> {
    const open = this.#open.get(name);
    if (!open) return;
    if (open.refs > 0) throw new RangeError(`Image "${name}" is attached; it cannot be closed`);
    this.#open.delete(name);
    this.#ready.delete(name);
    await (await open.image).close().catch(() => {});
  }

  /** Deletes an image's head; its chunks stay until garbage collection. */
  async remove(name: string): Promise<void> {
    const open = this.#open.get(name);
    if (open) {
      this.#open.delete(name);
      this.#ready.delete(name);
      await (await open.image).close().catch(() => {});
    }
    await this.ctx.heads.remove(await this.#read(name));
  }

  /**
   * Opens `image` (shared, writable) or `image@snapshot` (read-only). Every open must be
   * paired with {@link release}.
   */
  async open(exportName: string): Promise<Image> {
    const { image, snapshot } = parseExportName(exportName);
    if (snapshot !== undefined) {
      const state = await this.#read(image);
      const snap = state.head.snapshots[snapshot];
      if (!snap) throw new ImageNotFoundError(exportName);
      return new Image(this.ctx, state, true, { root: snap.root, size: snap.size });
    }
    let entry = this.#open.get(image);
    if (entry && (await entry.image.catch(() => null))?.fenced) {
      // Fenced by another gateway: opening it again takes ownership back (a new epoch).
      this.#open.delete(image);
      this.#ready.delete(image);
      entry = undefined;
    }
    if (!entry) {
      entry = { image: this.#openWritable(image), refs: 0 };
      this.#open.set(image, entry);
      const opened = entry;
      entry.image.then(
        (img) => {
          if (this.#open.get(image) === opened) this.#ready.set(image, img);
        },
        () => this.#open.delete(image),
      );
    }
    entry.refs++;
    return entry.image;
  }

  /** Bumps the owner epoch on a majority of head holders, then opens the image. */
  async #openWritable(name: string): Promise<Image> {
    const state = await this.#read(name);
    const prev = state.head;
    const generation = prev.generation + 1;
    const dataIds = this.ctx.stores.dataMembers.map((m) => m.id);
    const next: Head = {
      ...prev,
      epoch: prev.epoch + 1,
      generation,
      synced: advanceSynced(prev, { generation, root: prev.root, size: prev.size }, dataIds, new Set()),
    };
    return new Image(this.ctx, await this.ctx.heads.commit(state, next), false);
  }

  /**
   * Releases an image from {@link open}. The last release of a writable image flushes it;
   * it stays open (its cache warm, its epoch held) until removed or the gateway closes,
   * so reconnecting clients and HTTP requests do not bump the epoch each time.
   */
  async release(image: Image): Promise<void> {
    if (image.readOnly) return image.close();
    const entry = this.#open.get(image.name);
    if (!entry || (await entry.image) !== image) return;
    if (--entry.refs === 0) await image.flush();
  }

  /** Runs `fn` on the writable image `name`, opening it for the call if needed. */
  async withImage<T>(name: string, fn: (image: Image) => Promise<T>): Promise<T> {
    assertImageName(name);
    const image = await this.open(name);
    try {
      return await fn(image);
    } finally {
      await this.release(image);
    }
  }

  /**
   * Records store `store` as holding image `name` in full, if `check` confirms it for the
   * version about to be committed. An image open here does it between two of its commits;
   * otherwise the head is compare-and-set directly (a concurrent writer makes it fail:
   * resolves false, and the heal goes round again).
   */
  async markSynced(name: string, store: string, check: (head: Head) => Promise<boolean>): Promise<boolean> {
    const open = this.#open.get(name);
    if (open) return (await open.image).markSynced(store, check);
    const state = await this.#read(name);
    if (!(await check(state.head))) return false;
    const prev = state.head;
    const generation = prev.generation + 1;
    const version = { generation, root: prev.root, size: prev.size };
    const dataIds = this.ctx.stores.dataMembers.map((m) => m.id);
    const synced = { ...advanceSynced(prev, version, dataIds, new Set()), [store]: version };
    try {
      await this.ctx.heads.commit(state, { ...prev, generation, synced });
      return true;
    } catch {
      return false;
    }
  }

  /** Flushes and closes every open image. */
  async close(): Promise<void> {
    const entries = [...this.#open.values()];
    this.#open.clear();
    this.#ready.clear();
    await Promise.allSettled(entries.map(async (e) => (await e.image).close()));
  }
}
