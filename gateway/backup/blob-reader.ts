/**
 * Reads single chunks back from a repository: map pages for tree walks (a whole `tree`
 * pack is fetched once and kept, since a walk reads its neighbours next) and data chunks
 * (one ranged GET each). Every blob is opened and hash-checked.
 */
import { LRUCache } from "lru-cache";
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { BlobCorruptError, type Repository } from "./repository.ts";
import type { BlobLocation, RepositoryIndex } from "./repository-index.ts";

/** Bytes of tree packs kept in memory during one job. */
const TREE_CACHE_BYTES = 64 * 1024 * 1024;

/** Chunk reads from one repository and its loaded index. */
export class BlobReader {
  readonly #repo: Repository;
  readonly #index: RepositoryIndex;
  readonly #packs: LRUCache<string, Promise<Uint8Array | null>>;
  readonly #sizes = new Map<string, number>();

  constructor(repo: Repository, index: RepositoryIndex) {
    this.#repo = repo;
    this.#index = index;
    this.#packs = new LRUCache<string, Promise<Uint8Array | null>>({
      maxSize: TREE_CACHE_BYTES,
      sizeCalculation: (_v, k) => Math.max(1, this.#sizes.get(k) ?? 1),
    });
  }

  has(hash: Hash): boolean {
    return this.#index.has(hash);
  }

  /** The chunk's bytes, verified, from any of its locations; throws BlobCorruptError. */
  async read(hash: Hash): Promise<Uint8Array> {
    const where = this.#index.locations(hash);
    if (where.length === 0) throw new BlobCorruptError(hash, "no pack in the index holds it");
    let last: unknown;
    for (const at of where) {
      try {
        return await this.#readAt(hash, at);
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }

  async #readAt(hash: Hash, at: BlobLocation): Promise<Uint8Array> {
    let stored: Uint8Array | null;
    if (at.pack.kind === "tree") {
      let whole = this.#packs.get(at.pack.name);
      if (!whole) {
        this.#sizes.set(at.pack.name, at.pack.bytes);
        whole = this.#repo.readPack(at.pack.name);
        this.#packs.set(at.pack.name, whole);
        whole.catch(() => this.#packs.delete(at.pack.name));
      }
      const bytes = await whole;
      stored = bytes?.subarray(at.offset, at.offset + at.length) ?? null;
    } else {
      stored = await this.#repo.readPack(at.pack.name, at.offset, at.offset + at.length);
    }
    if (stored === null || stored.byteLength !== at.length)
      throw new BlobCorruptError(hash, `pack ${at.pack.name} is missing or short`);
    return this.#repo.openBlob(hash, stored);
  }
}
