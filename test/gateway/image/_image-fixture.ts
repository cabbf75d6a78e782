/** Builds an image service over in-memory stores for unit tests of the image layer. */
import { LRUCache } from "lru-cache";
import type { ChunkStore } from "../../../chunkstore/chunk-store.ts";
import { StoreUnavailableError } from "../../../chunkstore/errors.ts";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { DEFAULT_CACHE_OPTIONS, type ImageCacheOptions } from "../../../gateway/image/image.ts";
import { ImageService } from "../../../gateway/image/image-service.ts";
import { HeadStore } from "../../../gateway/replication/head-store.ts";
import { type StoreMember, StoreSet } from "../../../gateway/replication/store-set.ts";
import { InlinePool } from "../../../workers/inline-pool.ts";

/** A gateway's image service over the given stores (fresh memory stores by default). */
export function imageService(
  stores: ChunkStore[] = [new MemoryStore("a"), new MemoryStore("b"), new MemoryStore("c")],
  options: { replicas?: number; minReplicas?: number; cache?: Partial<ImageCacheOptions> } = {},
): { service: ImageService; stores: ChunkStore[]; set: StoreSet } {
  const members: StoreMember[] = stores.map((store, i) => ({
    id: String.fromCharCode(97 + i),
    url: store.name,
    store,
  }));
  const set = new StoreSet(members, {
    replicas: options.replicas ?? 2,
    minReplicas: options.minReplicas ?? 1,
  });
  const service = new ImageService({
    stores: set,
    heads: new HeadStore(members),
    pool: new InlinePool(),
    chunkCache: new LRUCache({
      maxSize: 64 * 1024 * 1024,
      sizeCalculation: (b: Uint8Array) => b.byteLength || 1,
    }),
    cache: { ...DEFAULT_CACHE_OPTIONS, ...options.cache },
  });
  return { service, stores, set };
}

/** Deterministic pseudo-random bytes. */
export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  // xorshift32: exact in 32-bit integer arithmetic (a float LCG loses precision and repeats).
  let x = Math.imul(seed + 1, 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A memory store that fails every call while `down`, as a dead store server would. */
export class SwitchableStore extends MemoryStore {
  down = false;
  #check(): void {
    if (this.down) throw new StoreUnavailableError(this.name, "switched off by the test");
  }
  override async has(h: readonly string[]) {
    this.#check();
    return super.has(h);
  }
  override async get(h: string) {
    this.#check();
    return super.get(h);
  }
  override async put(h: string, b: Uint8Array) {
    this.#check();
    return super.put(h, b);
  }
  override async putMany(c: Parameters<MemoryStore["putMany"]>[0]) {
    this.#check();
    return super.putMany(c);
  }
  override async getRef(n: string) {
    this.#check();
    return super.getRef(n);
  }
  override async casRef(n: string, e: string | null, v: string) {
    this.#check();
    return super.casRef(n, e, v);
  }
  override async listRefs(p?: string) {
    this.#check();
    return super.listRefs(p);
  }
}
