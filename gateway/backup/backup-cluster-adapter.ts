/**
 * {@link BackupCluster} over the image layer: ImageService for snapshots, StoreSet for
 * chunks (batched reads from the first placement store, any replica on a miss), the head
 * writer for a restored image's head (`importContent`, as the S3 import). The one file to
 * re-point when the image layer changes.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { ImageExistsError, ImageNotFoundError } from "../errors.ts";
import { confirmContent } from "../image/gc-barrier.ts";
import { assertImageName, type Head } from "../image/head.ts";
import { importContent, NeedMoreCopiesError, type PutReport } from "../image/head-writer.ts";
import type { ImageService } from "../image/image-service.ts";
import { PutOutcomes } from "../replication/store-set.ts";
import type { BackupCluster, BackupVersion, RestoreSession } from "./backup-cluster.ts";

/** Times a restored image's head is tried again after stores entered maintenance meanwhile. */
const COMMIT_ATTEMPTS = 3;

/** The cluster of one gateway, as backups see it. */
export class BackupClusterAdapter implements BackupCluster {
  readonly #images: ImageService;

  constructor(images: ImageService) {
    this.#images = images;
  }

  get gatewayId(): string {
    return this.#images.ctx.gatewayId;
  }

  async snapshotVersion(image: string, snapshot: string): Promise<BackupVersion> {
    const head = await this.#images.info(image);
    return versionOf(head, snapshot);
  }

  async takeSnapshot(image: string, snapshot: string): Promise<BackupVersion> {
    return versionOf(await this.#images.snapshot(image, snapshot), snapshot);
  }

  async removeSnapshot(image: string, snapshot: string): Promise<void> {
    await this.#images.deleteSnapshot(image, snapshot);
  }

  async readChunks(hashes: readonly Hash[]): Promise<Uint8Array[]> {
    const stores = this.#images.ctx.stores;
    const out: (Uint8Array | undefined)[] = new Array(hashes.length);
    const byStore = new Map<string, number[]>();
    hashes.forEach((h, i) => {
      const id = stores.placement(h)[0]!;
      const list = byStore.get(id) ?? [];
      byStore.set(id, list);
      list.push(i);
    });
    await Promise.all(
      [...byStore].map(async ([id, idx]) => {
        const got = await stores
          .member(id)!
          .store.getMany(idx.map((i) => hashes[i]!))
          .catch(() => idx.map(() => undefined));
        for (const [k, i] of idx.entries()) out[i] = got[k];
      }),
    );
    // A miss on the first placement store (down, lagging, damaged): any replica, verified, with read-repair.
    await Promise.all(
      out.map(async (b, i) => {
        if (b === undefined) out[i] = await stores.getChunk(hashes[i]!);
      }),
    );
    return out as Uint8Array[];
  }

  async holds(hash: Hash): Promise<boolean> {
    const stores = this.#images.ctx.stores;
    for (const id of stores.placement(hash)) {
      const yes = await stores
        .member(id)
        ?.store.has([hash])
        .then(([h]) => h === true)
        .catch(() => false);
      if (yes) return true;
    }
    return false;
  }

  async beginRestore(image: string): Promise<RestoreSession> {
    assertImageName(image);
    const exists = await this.#images.info(image).then(
      () => true,
      (err) => {
        if (err instanceof ImageNotFoundError) return false;
        throw err;
      },
    );
    if (exists) throw new ImageExistsError(image);
    // Read before the restore's first existence check or put: see gateway/image/gc-barrier.ts.
    const { gcEpoch } = await this.#images.ctx.cluster.freshState();
    return new StoreRestoreSession(this.#images, image, gcEpoch);
  }
}

function versionOf(head: Head, snapshot: string): BackupVersion {
  const snap = head.snapshots[snapshot];
  if (!snap) throw new ImageNotFoundError(`${head.name}@${snapshot}`);
  return { image: head.name, snapshot, root: snap.root, size: snap.size, chunkSize: head.chunkSize };
}

/** A restore's puts and its head. */
class StoreRestoreSession implements RestoreSession {
  readonly #images: ImageService;
  readonly #image: string;
  readonly #puts = new PutOutcomes();
  /** Chunks found on every placement store: copies counted where they were found. */
  readonly #present = new Map<Hash, Set<string>>();
  /** Stores whose existence check failed: they may lack chunks this restore skipped. */
  readonly #unchecked = new Set<string>();
  /** The placement epoch when the session began: chunks were checked and put under it. */
  readonly #placementEpoch: number;
  readonly #all: Hash[] = [];
  /** The cluster's gcEpoch read before the first check or put. */
  readonly #gcEpoch: number;

  constructor(images: ImageService, image: string, gcEpoch: number) {
    this.#images = images;
    this.#image = image;
    this.#gcEpoch = gcEpoch;
    this.#placementEpoch = images.ctx.stores.view.epoch;
  }

  async lacking(hashes: readonly Hash[]): Promise<Hash[]> {
    this.#all.push(...hashes);
    const { stores, cluster } = this.#images.ctx;
    const { present, lacking, unchecked } = await stores.placedCopies(hashes, cluster.leaving());
    for (const [h, have] of present) this.#present.set(h, have);
    for (const id of unchecked) this.#unchecked.add(id);
    return lacking;
  }

  async put(chunks: readonly { hash: Hash; bytes: Uint8Array }[]): Promise<void> {
    if (chunks.length === 0) return;
    const outcome = await this.#images.ctx.stores.putChunks(chunks, this.#images.ctx.cluster.leaving());
    this.#puts.add(outcome);
  }

  #report(): PutReport {
    const ctx = this.#images.ctx;
    const outcome = this.#puts.any ? this.#puts.outcome : null;
    const present = this.#present;
    const identities = new Map(
      ctx.stores.dataMembers
        .map((m) => [m.id, ctx.cluster.identity(m.id)] as const)
        .filter((e): e is readonly [string, string] => e[1] !== null),
    );
    const complete = new Map<string, string>();
    // Placement moved during the session (a store added or drained): no store is known
    // to hold all placed on it under one placement.
    const epoch = ctx.stores.view.epoch;
    const moved = epoch !== this.#placementEpoch || (outcome !== null && outcome.placementEpoch !== epoch);
    if (!moved)
      for (const [id, identity] of outcome ? outcome.complete : identities)
        if (!this.#unchecked.has(id)) complete.set(id, identity);
    return {
      complete,
      placementEpoch: epoch,
      enoughCopies: (leaving, min) =>
        (outcome?.enoughCopies(leaving, min) ?? true) &&
        [...present.values()].every((s) => [...s].filter((id) => !leaving.has(id)).length >= min),
    };
  }

  /**
   * Every chunk of the restore put again past `leaving`, read back from the stores: after
   * stores entered maintenance, or after a collection passed the barrier (it may have
   * condemned chunks this restore found stored and skipped). A chunk swept already makes
   * this throw: the restore fails, it never lands short.
   */
  async #reput(leaving: ReadonlySet<string>): Promise<void> {
    const ctx = this.#images.ctx;
    for (let i = 0; i < this.#all.length; i += 64) {
      const batch = this.#all.slice(i, i + 64);
      const bytes = await Promise.all(batch.map((h) => ctx.stores.getChunk(h)));
      const again = await ctx.stores.putChunks(
        batch.map((hash, k) => ({ hash, bytes: bytes[k]! })),
        leaving,
      );
      this.#puts.add(again);
    }
    this.#present.clear();
  }

  async commit(version: { root: Hash; size: number; chunkSize: number }): Promise<void> {
    const ctx = this.#images.ctx;
    for (let attempt = 1; ; attempt++) {
      try {
        const { head } = await ctx.heads.change(
          this.#image,
          importContent({
            name: this.#image,
            ...version,
            owner: ctx.gatewayId,
            put: this.#report(),
            leaving: await ctx.cluster.freshLeaving(),
            minReplicas: ctx.stores.options.minReplicas,
            gcEpoch: this.#gcEpoch,
            check: (current) => {
              if (current) throw new ImageExistsError(this.#image);
            },
          }),
        );
        const created = head as Head;
        // A new image: confirmed against the barrier now that its head exists.
        if (created.gcPending !== undefined)
          await confirmContent(ctx, this.#image, created.incarnation, () =>
            this.#reput(ctx.cluster.leaving()),
          );
        return;
      } catch (err) {
        if (!(err instanceof NeedMoreCopiesError) || attempt >= COMMIT_ATTEMPTS) throw err;
        // Stores entered maintenance during the restore: put every chunk again past them.
        await this.#reput(err.leaving);
      }
    }
  }
}
