/**
 * In-process gateways over in-memory stores, for unit tests of the image layer: every
 * layer wired as a real gateway wires it (`assembleGateway`), with the same-thread worker
 * pool, no listeners and no background loops (a test drives probes itself).
 */
import type { ChunkStore } from "../../../chunkstore/chunk-store.ts";
import { StoreUnavailableError } from "../../../chunkstore/errors.ts";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { assembleGateway, type GatewayCore } from "../../../gateway/gateway.ts";
import type { ImageCacheOptions } from "../../../gateway/image/image-context.ts";
import type { ImageService } from "../../../gateway/image/image-service.ts";
import type { StoreSet } from "../../../gateway/replication/store-set.ts";
import { InlinePool } from "../../../workers/inline-pool.ts";

let gateways = 0;

/** A gateway over the given stores (fresh memory stores by default), named a, b, c, ... */
export async function imageService(
  stores: ChunkStore[] = [new MemoryStore("a"), new MemoryStore("b"), new MemoryStore("c")],
  options: {
    replicas?: number;
    minReplicas?: number;
    cache?: Partial<ImageCacheOptions>;
    dirtyBudgetBytes?: number;
    chunkCacheBytes?: number;
    log?: (line: string) => void;
    health?: { probeIntervalMs: number; probeTimeoutMs: number };
  } = {},
): Promise<{ service: ImageService; stores: ChunkStore[]; set: StoreSet; core: GatewayCore }> {
  const core = await assembleGateway(
    stores.map((store, i) => ({ id: String.fromCharCode(97 + i), url: store.name, store })),
    {
      replicas: options.replicas ?? 2,
      minReplicas: options.minReplicas ?? 1,
      gatewayId: `gw-test${String(++gateways).padStart(8, "0")}`,
      pool: new InlinePool(),
      cache: { lingerMs: 60_000, ...options.cache },
      dirtyBudgetBytes: options.dirtyBudgetBytes,
      chunkCacheBytes: options.chunkCacheBytes,
      background: false,
      health: options.health ?? { probeIntervalMs: 50, probeTimeoutMs: 500 },
      log: options.log ?? (() => {}),
    },
  );
  return { service: core.images, stores, set: core.stores, core };
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
  override async probe() {
    this.#check();
    return super.probe();
  }
  override async has(h: readonly string[]) {
    this.#check();
    return super.has(h);
  }
  override async get(h: string) {
    this.#check();
    return super.get(h);
  }
  override async getMany(h: readonly string[]) {
    this.#check();
    return super.getMany(h);
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
  override async casRef(n: string, e: string | null, v: string, g?: Parameters<MemoryStore["casRef"]>[3]) {
    this.#check();
    return super.casRef(n, e, v, g);
  }
  override async listRefs(p?: string) {
    this.#check();
    return super.listRefs(p);
  }
  override async scanRefs(p: string, o?: { after?: string; limit?: number }) {
    this.#check();
    return super.scanRefs(p, o);
  }
}
