/**
 * The image catalogue of a gateway: create, list, clone, delete, snapshot, and the
 * registry of open images. All connections of this gateway to one image share one open
 * {@link Image} (one cache), which is what makes NBD multi-conn safe. Opening, reading,
 * listing and inspecting never change ownership; only a write does (image.ts).
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { ImageNotFoundError } from "../errors.ts";
import { growRoot, levelsFor, ZERO_HASH } from "./block-map.ts";
import { confirmContent, reviveTree } from "./gc-barrier.ts";
import {
  assertChunkSize,
  assertImageName,
  assertImageSize,
  blockCount,
  DEFAULT_CHUNK_SIZE,
  type Head,
  type HeadValue,
  liveHead,
} from "./head.ts";
import { addSnapshot, createHead, deleteHead, inheritedSynced, removeSnapshot } from "./head-writer.ts";
import { Image } from "./image.ts";
import type { ImageContext, InflightCommit } from "./image-context.ts";

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
  readonly ctx: ImageContext;
  /** The instance new connections to a writable image get. */
  readonly #open = new Map<string, Promise<Image>>();
  /** Users of each writable instance, and its close timer once it has none. */
  readonly #users = new Map<Image, { refs: number; linger?: ReturnType<typeof setTimeout> }>();
  /** Blocks folded by images that have closed since. */
  #foldedByClosed = 0;
  /** Users of each image name, across instances (attachment as other layers ask about it). */
  readonly #attached = new Map<string, number>();

  constructor(ctx: ImageContext) {
    this.ctx = ctx;
  }

  /** Creates an empty image, or a clone of `from` (`image@snapshot`) in O(1). */
  async create(name: string, size: number | undefined, options: CreateImageOptions = {}): Promise<Head> {
    assertImageName(name);
    let root: Hash = ZERO_HASH;
    let chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    let synced: Record<string, { identity: string; placement: number }>;
    const identities = new Map<string, string>();
    for (const m of this.ctx.stores.dataMembers) {
      const identity = this.ctx.cluster.identity(m.id);
      if (identity) identities.set(m.id, identity);
    }
    // The gc barrier, read before the clone's source is read (gc-barrier.ts).
    const { gcEpoch } = await this.ctx.cluster.freshState();
    const placement = this.ctx.stores.view.epoch;
    if (options.from) {
      const { image, snapshot } = parseExportName(options.from);
      if (!snapshot)
        throw new TypeError(`Clone source "${options.from}" must name a snapshot: image@snapshot`);
      const src = await this.#live(image);
      const snap = src.snapshots[snapshot];
      if (!snap) throw new ImageNotFoundError(options.from);
      if (options.chunkSize && options.chunkSize !== src.chunkSize) {
        throw new RangeError(`A clone keeps its source's chunk size (${src.chunkSize})`);
      }
      chunkSize = src.chunkSize;
      size = Math.max(size ?? snap.size, snap.size);
      assertImageSize(size);
      // A clone larger than its snapshot needs a taller block map over the same root.
      const levels = (bytes: number) => levelsFor(Math.max(1, blockCount({ size: bytes, chunkSize })));
      const grown = growRoot(snap.root, levels(snap.size), levels(size));
      const put = grown.pages.length
        ? await this.ctx.stores.putChunks(grown.pages, this.ctx.cluster.leaving())
        : null;
      root = grown.root;
      synced = inheritedSynced(src, snap, identities, placement, put);
    } else {
      // Every store holds the empty image, under any placement.
      synced = Object.fromEntries([...identities].map(([id, identity]) => [id, { identity, placement }]));
    }
    if (size === undefined) throw new TypeError("An image needs a size in bytes");
    assertImageSize(size);
    assertChunkSize(chunkSize);
    const { head } = await this.ctx.heads.change(
      name,
      createHead({
        name,
        size,
        chunkSize,
        root,
        synced,
        ...(options.from ? { clonedFrom: options.from } : {}),
        gcObserved: gcEpoch,
      }),
    );
    const created = head as Head;
    // An empty image stays unconfirmed until its first commit confirms it (one head write
    // then, none now: image-context's commit pipeline). A clone is confirmed now.
    if (!options.from) return created;
    // A collection that listed the heads before this one existed and ran while the clone
    // was made may have condemned the source's chunks: then they are put again here.
    try {
      await confirmContent(this.ctx, name, created.incarnation, () =>
        reviveTree(this.ctx, { root: created.root, size: created.size, chunkSize: created.chunkSize }),
      );
    } catch (err) {
      // Never leave a clone that may lack content: it goes (a tombstone), the caller retries.
      await this.ctx.heads
        .change(name, deleteHead(name, this.ctx.gatewayId, created.incarnation))
        .catch(() => {});
      throw err;
    }
    return (liveHead(await this.ctx.heads.read(name)) ?? created) as Head;
  }

  /** Names of all images (tombstones left out). */
  async list(): Promise<string[]> {
    return [...(await this.heads())].filter(([, h]) => liveHead(h)).map(([n]) => n);
  }

  /** Every image's head or tombstone, read fresh from the register. */
  heads(): Promise<Map<string, HeadValue>> {
    return this.ctx.heads.scan();
  }

  /** The current head of an image, read fresh from the register (never takes it over). */
  info(name: string): Promise<Head> {
    return this.#live(name);
  }

  async #live(name: string): Promise<Head> {
    assertImageName(name);
    const head = liveHead(await this.ctx.heads.read(name));
    if (!head) throw new ImageNotFoundError(name);
    return head;
  }

  /** True while a client (an NBD connection, an HTTP request) has image `name` open for writing here. */
  isAttached(name: string): boolean {
    return (this.#attached.get(name) ?? 0) > 0;
  }

  /**
   * Closes image `name` if it is open here but unattached, so the next open reads its head
   * again (after the head was replaced underneath, by an S3 import). Refused while attached.
   */
  async forget(name: string): Promise<void> {
    const open = this.#open.get(name);
    const image = open ? await open.catch(() => null) : null;
    if (!image) return;
    if ((this.#users.get(image)?.refs ?? 0) > 0)
      throw new RangeError(`Image "${name}" is attached; it cannot be closed`);
    this.#open.delete(name);
    await this.#close(image);
  }

  /**
   * Deletes an image: a tombstone in the register that a head holder down now cannot undo.
   * Connections still open to it (here or on other gateways) can never commit again.
   */
  async remove(name: string): Promise<void> {
    assertImageName(name);
    await this.ctx.heads.change(name, deleteHead(name, this.ctx.gatewayId));
    const open = this.#open.get(name);
    if (open) {
      this.#open.delete(name);
      const image = await open.catch(() => null);
      image?.deleted();
    }
  }

  /** Freezes the current version of `name` as `snapshot` (after a flush if this gateway owns it). */
  async snapshot(name: string, snapshot: string): Promise<Head> {
    assertImageName(snapshot, "snapshot");
    const open = this.#open.get(name);
    const image = open ? await open.catch(() => null) : null;
    if (image && !image.fenced) return image.snapshot(snapshot);
    const head = await this.#live(name);
    return (await this.ctx.heads.change(name, addSnapshot(name, head.incarnation, snapshot))).head as Head;
  }

  /** Removes snapshot `snapshot` of `name`. */
  async deleteSnapshot(name: string, snapshot: string): Promise<Head> {
    const head = await this.#live(name);
    return (await this.ctx.heads.change(name, removeSnapshot(name, head.incarnation, snapshot))).head as Head;
  }

  /**
   * Opens `image` (shared, writable: a follower until its first write) or `image@snapshot`
   * (read-only). Every open must be paired with {@link release}.
   */
  async open(exportName: string): Promise<Image> {
    const { image, snapshot } = parseExportName(exportName);
    if (snapshot !== undefined) {
      const head = await this.#live(image);
      const snap = head.snapshots[snapshot];
      if (!snap) throw new ImageNotFoundError(exportName);
      return new Image(this.ctx, head, { readOnly: true, view: { root: snap.root, size: snap.size } });
    }
    let opening = this.#open.get(image);
    if (opening) {
      const current = await opening.catch(() => null);
      // Taken over elsewhere or deleted: a new connection gets a new instance (which may take it back).
      if (!current || current.fenced) {
        if (this.#open.get(image) === opening) this.#open.delete(image);
        opening = undefined;
      }
    }
    if (!opening) {
      const created = this.#live(image).then((head) => new Image(this.ctx, head, { readOnly: false }));
      opening = created;
      this.#open.set(image, created);
      created.catch(() => {
        if (this.#open.get(image) === created) this.#open.delete(image);
      });
    }
    const img = await opening;
    const users = this.#users.get(img) ?? { refs: 0 };
    users.refs++;
    this.#attached.set(image, (this.#attached.get(image) ?? 0) + 1);
    clearTimeout(users.linger);
    users.linger = undefined;
    this.#users.set(img, users);
    return img;
  }

  /**
   * Releases an image from {@link open}. The last release of a writable image flushes it
   * (if this gateway owns it); it stays open a while (its cache warm, and for as long as
   * it has patch stacks left to fold), then closes. An
   * instance that new connections no longer get (fenced, deleted) closes at once.
   */
  async release(image: Image): Promise<void> {
    if (image.readOnly) return image.close();
    const users = this.#users.get(image);
    if (!users) return;
    const attached = (this.#attached.get(image.name) ?? 1) - 1;
    if (attached > 0) this.#attached.set(image.name, attached);
    else this.#attached.delete(image.name);
    if (--users.refs > 0) return;
    const current = (await this.#open.get(image.name)?.catch(() => null)) === image;
    if (!current) return this.#close(image);
    await image.flush().catch(() => {});
    const linger = () => {
      users.linger = setTimeout(() => {
        if (users.refs > 0) return;
        // An image that still has patch stacks to fold stays open until they are folded.
        const f = image.folding;
        if (f && !image.fenced && (f.pending > 0 || f.scanning)) return linger();
        void (async () => {
          if ((await this.#open.get(image.name)?.catch(() => null)) === image) this.#open.delete(image.name);
          await this.#close(image);
        })();
      }, this.ctx.cache.lingerMs);
      (users.linger as { unref?: () => void }).unref?.();
    };
    linger();
  }

  async #close(image: Image): Promise<void> {
    const users = this.#users.get(image);
    clearTimeout(users?.linger);
    this.#users.delete(image);
    await image.close().catch(() => {});
    this.#foldedByClosed += image.folding?.folded ?? 0;
  }

  /**
   * Folding of patch stacks (stack-folder.ts) on this gateway: blocks known to carry a
   * stack in the open images, and blocks folded since the gateway started.
   */
  folding(): { pendingBlocks: number; foldedBlocks: number } {
    let pendingBlocks = 0;
    let foldedBlocks = this.#foldedByClosed;
    for (const image of this.#users.keys()) {
      pendingBlocks += image.folding?.pending ?? 0;
      foldedBlocks += image.folding?.folded ?? 0;
    }
    return { pendingBlocks, foldedBlocks };
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

  /** Commits in flight on this gateway now (safe-to-remove counts their pending stores as behind). */
  inflight(): InflightCommit[] {
    const out: InflightCommit[] = [];
    for (const image of this.#users.keys()) {
      const c = image.inflight;
      if (c) out.push(c);
    }
    return out;
  }

  /** Writes acknowledged but not yet committed, over the open images (what a close flushes). */
  unflushed(): { images: number; bytes: number } {
    let images = 0;
    let bytes = 0;
    for (const image of this.#users.keys()) {
      if (image.dirtyBytes === 0) continue;
      images++;
      bytes += image.dirtyBytes;
    }
    return { images, bytes };
  }

  /** Flushes and closes every open image. */
  async close(): Promise<void> {
    const images = [...this.#users.keys()];
    for (const u of this.#users.values()) clearTimeout(u.linger);
    this.#open.clear();
    this.#users.clear();
    await Promise.allSettled(images.map((i) => i.close()));
  }
}
