/**
 * The repository index in memory: for every pack, its kind and its blobs; for every chunk
 * hash, where one copy of it is. Loaded from all `index/` objects at the start of a job
 * (a few MiB per TiB of backups at 64 KiB chunks), extended as packs are written.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import type { PackKind } from "./repository-format.ts";

/** One pack as an index object records it. `blobs`: [chunk hash, offset, stored length]. */
export interface PackRecord {
  /** BLAKE3 of the pack's stored bytes (hex). */
  readonly id: string;
  /** Its object name under `packs/XX/` (the id, or its HMAC when encrypted). */
  readonly name: string;
  readonly kind: PackKind;
  readonly bytes: number;
  readonly blobs: readonly (readonly [Hash, number, number])[];
}

/** Where one chunk is stored. */
export interface BlobLocation {
  readonly pack: PackRecord;
  readonly offset: number;
  readonly length: number;
}

/** Packs and chunk locations. */
export class RepositoryIndex {
  /** Packs by object name. */
  readonly packs = new Map<string, PackRecord>();
  /** The `index/` objects this index was loaded from. */
  readonly objects: string[] = [];
  readonly #where = new Map<Hash, BlobLocation[]>();

  /** Records a pack (a chunk already located elsewhere keeps its first location first). */
  add(pack: PackRecord): void {
    if (this.packs.has(pack.name)) return;
    this.packs.set(pack.name, pack);
    for (const [hash, offset, length] of pack.blobs) {
      const list = this.#where.get(hash);
      if (list) list.push({ pack, offset, length });
      else this.#where.set(hash, [{ pack, offset, length }]);
    }
  }

  has(hash: Hash): boolean {
    return this.#where.has(hash);
  }

  /** Where the chunk is (its first location). */
  locate(hash: Hash): BlobLocation | undefined {
    return this.#where.get(hash)?.[0];
  }

  /** Every location of the chunk (a chunk two backups raced to send is in two packs). */
  locations(hash: Hash): readonly BlobLocation[] {
    return this.#where.get(hash) ?? [];
  }

  /** Chunks located. */
  get size(): number {
    return this.#where.size;
  }
}
