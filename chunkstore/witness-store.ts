/**
 * A witness: a store that keeps refs (image heads) only, the tiebreaker of a
 * two-replica setup (DESIGN.md, "Multi-host"). It wraps any ChunkStore and delegates
 * refs to it; every chunk write is refused with UnsupportedOperationError and every
 * chunk read answers as an empty store would. Layering, not a flag in each backend.
 */
import type {
  CasResult,
  ChunkPut,
  ChunkStore,
  Hash,
  ListOptions,
  RefEntry,
  RefGuard,
  RefPage,
  StoreProbe,
  StoreStats,
  SweepResult,
} from "./chunk-store.ts";
import { ChunkNotFoundError, UnsupportedOperationError } from "./errors.ts";
import { assertHash } from "./hash.ts";

/** Refs from `inner`, no chunks. `capabilities.chunks` is false. */
export class WitnessStore implements ChunkStore {
  readonly name: string;
  readonly capabilities: ChunkStore["capabilities"];
  readonly #inner: ChunkStore;

  /** @param inner holds the refs; its chunks (if any) are neither read nor written. */
  constructor(inner: ChunkStore, name = `witness:${inner.name}`) {
    this.#inner = inner;
    this.name = name;
    this.capabilities = {
      chunks: false,
      refs: inner.capabilities.refs,
      persistent: inner.capabilities.persistent,
      sweep: false,
      refGuards: inner.capabilities.refGuards === true,
    };
  }

  async has(hashes: readonly Hash[]): Promise<boolean[]> {
    return hashes.map((h) => {
      assertHash(h);
      return false;
    });
  }

  async get(hash: Hash): Promise<Uint8Array> {
    assertHash(hash);
    throw new ChunkNotFoundError(this.name, hash);
  }

  async getMany(hashes: readonly Hash[]): Promise<(Uint8Array | undefined)[]> {
    return hashes.map((h) => {
      assertHash(h);
      return undefined;
    });
  }

  async put(_hash: Hash, _bytes: Uint8Array): Promise<{ existed: boolean }> {
    throw new UnsupportedOperationError(this.name, "chunk writes (it is a witness: refs only)");
  }

  async putMany(_chunks: readonly ChunkPut[]): Promise<{ existed: boolean }[]> {
    throw new UnsupportedOperationError(this.name, "chunk writes (it is a witness: refs only)");
  }

  async condemn(_hashes: readonly Hash[], _token: string): Promise<number> {
    throw new UnsupportedOperationError(this.name, "garbage collection (it is a witness: refs only)");
  }

  async sweep(_hashes: readonly Hash[], _token: string): Promise<SweepResult> {
    throw new UnsupportedOperationError(this.name, "garbage collection (it is a witness: refs only)");
  }

  async delete(_hash: Hash): Promise<boolean> {
    throw new UnsupportedOperationError(this.name, "chunk deletes (it is a witness: refs only)");
  }

  async *list(options: ListOptions = {}): AsyncIterable<Hash> {
    if (options.after !== undefined) assertHash(options.after);
    yield* [];
  }

  async stats(): Promise<StoreStats> {
    const inner = await this.#inner.stats();
    return { chunks: 0, bytes: 0, freeBytes: inner.freeBytes };
  }

  async probe(): Promise<StoreProbe> {
    const inner = await this.#inner.probe();
    return { identity: inner.identity, capabilities: this.capabilities };
  }

  expectIdentity(identity: string | null): void {
    this.#inner.expectIdentity(identity);
  }

  scanRefs(prefix: string, options?: { after?: string; limit?: number }): Promise<RefPage> {
    return this.#inner.scanRefs(prefix, options);
  }

  getRef(name: string): Promise<RefEntry | null> {
    return this.#inner.getRef(name);
  }

  casRef(name: string, expected: string | null, value: string, guard?: RefGuard): Promise<CasResult> {
    return this.#inner.casRef(name, expected, value, guard);
  }

  deleteRef(name: string, expected: string): Promise<CasResult> {
    return this.#inner.deleteRef(name, expected);
  }

  listRefs(prefix?: string): Promise<string[]> {
    return this.#inner.listRefs(prefix);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
