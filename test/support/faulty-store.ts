/**
 * A ChunkStore wrapper that injects faults, for unit tests of the layers above the
 * stores (the register, replication, heal): down, hung, slow, and requests that fail
 * before or after they took effect (a lost reply). Faults come from a seeded generator,
 * so a failing run replays.
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
} from "../../chunkstore/chunk-store.ts";
import { StoreUnavailableError } from "../../chunkstore/errors.ts";

/** A small seeded PRNG (mulberry32): the same seed gives the same faults. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fault settings; change them at any time. */
export interface Faults {
  /** Every request fails at once (a stopped process, a pulled cable answered by RST). */
  down: boolean;
  /** Requests never answer until `hung` is turned off (SIGSTOP). */
  hung: boolean;
  /** Chance that a request fails before reaching the store. */
  failBefore: number;
  /** Chance that a request takes effect but its answer is lost (throws afterwards). */
  failAfter: number;
  /** Random extra latency, up to this many ms. */
  maxDelayMs: number;
  /** Random extra latency, up to this many ms, AFTER a chunk put took effect (a commit lingers before its head write). */
  putDelayMs: number;
  /** Ref writes (compare-and-set) to refs whose name matches fail: before reaching the store, or after taking effect. */
  refWrites: { match: RegExp; fail: "before" | "after" } | null;
}

/** Wraps `inner`; `faults` is live. */
export class FaultyStore implements ChunkStore {
  readonly faults: Faults = {
    down: false,
    hung: false,
    failBefore: 0,
    failAfter: 0,
    maxDelayMs: 0,
    putDelayMs: 0,
    refWrites: null,
  };
  readonly #inner: ChunkStore;
  readonly #random: () => number;
  #hangWaiters: (() => void)[] = [];
  /** Requests that took effect but were reported failed. */
  lostReplies = 0;

  constructor(inner: ChunkStore, seed = 1) {
    this.#inner = inner;
    this.#random = seededRandom(seed);
  }

  get name(): string {
    return this.#inner.name;
  }
  get capabilities(): ChunkStore["capabilities"] {
    return this.#inner.capabilities;
  }
  get inner(): ChunkStore {
    return this.#inner;
  }

  /** Ends a hang: requests that waited go on. */
  resume(): void {
    this.faults.hung = false;
    const w = this.#hangWaiters;
    this.#hangWaiters = [];
    for (const f of w) f();
  }

  async #call<T>(what: string, run: () => Promise<T>): Promise<T> {
    if (this.faults.maxDelayMs > 0) await sleep(this.#random() * this.faults.maxDelayMs);
    while (this.faults.hung) await new Promise<void>((r) => this.#hangWaiters.push(r));
    if (this.faults.down) throw new StoreUnavailableError(this.name, `${what}: injected: store down`);
    if (this.#random() < this.faults.failBefore)
      throw new StoreUnavailableError(this.name, `${what}: injected: failed before`);
    const result = await run();
    if (this.faults.maxDelayMs > 0) await sleep(this.#random() * this.faults.maxDelayMs);
    if (this.#random() < this.faults.failAfter) {
      this.lostReplies++;
      throw new StoreUnavailableError(this.name, `${what}: injected: reply lost after it took effect`);
    }
    return result;
  }

  has(hashes: readonly Hash[]): Promise<boolean[]> {
    return this.#call("has", () => this.#inner.has(hashes));
  }
  get(hash: Hash): Promise<Uint8Array> {
    return this.#call("get", () => this.#inner.get(hash));
  }
  getMany(hashes: readonly Hash[]): Promise<(Uint8Array | undefined)[]> {
    return this.#call("getMany", () => this.#inner.getMany(hashes));
  }
  put(hash: Hash, bytes: Uint8Array): Promise<{ existed: boolean }> {
    return this.#call("put", () => this.#afterPut(this.#inner.put(hash, bytes)));
  }
  putMany(chunks: readonly ChunkPut[]): Promise<{ existed: boolean }[]> {
    return this.#call("putMany", () => this.#afterPut(this.#inner.putMany(chunks)));
  }
  async #afterPut<T>(put: Promise<T>): Promise<T> {
    const r = await put;
    if (this.faults.putDelayMs > 0) await sleep(this.#random() * this.faults.putDelayMs);
    return r;
  }
  delete(hash: Hash): Promise<boolean> {
    return this.#call("delete", () => this.#inner.delete(hash));
  }
  condemn(hashes: readonly Hash[], token: string): Promise<number> {
    return this.#call("condemn", () => this.#inner.condemn(hashes, token));
  }
  sweep(hashes: readonly Hash[], token: string): Promise<SweepResult> {
    return this.#call("sweep", () => this.#inner.sweep(hashes, token));
  }
  list(options?: ListOptions): AsyncIterable<Hash> {
    return this.#inner.list(options);
  }
  stats(): Promise<StoreStats> {
    return this.#call("stats", () => this.#inner.stats());
  }
  getRef(name: string): Promise<RefEntry | null> {
    return this.#call("getRef", () => this.#inner.getRef(name));
  }
  async casRef(name: string, expected: string | null, value: string, guard?: RefGuard): Promise<CasResult> {
    const rule = this.faults.refWrites;
    if (rule?.match.test(name)) {
      if (rule.fail === "before")
        throw new StoreUnavailableError(this.name, `casRef ${name}: injected: failed before`);
      await this.#inner.casRef(name, expected, value, guard);
      this.lostReplies++;
      throw new StoreUnavailableError(this.name, `casRef ${name}: injected: reply lost after it took effect`);
    }
    return this.#call("casRef", () => this.#inner.casRef(name, expected, value, guard));
  }
  deleteRef(name: string, expected: string): Promise<CasResult> {
    return this.#call("deleteRef", () => this.#inner.deleteRef(name, expected));
  }
  listRefs(prefix?: string): Promise<string[]> {
    return this.#call("listRefs", () => this.#inner.listRefs(prefix));
  }
  scanRefs(prefix: string, options?: { after?: string; limit?: number }): Promise<RefPage> {
    return this.#call("scanRefs", () => this.#inner.scanRefs(prefix, options));
  }
  probe(): Promise<StoreProbe> {
    return this.#call("probe", () => this.#inner.probe());
  }
  expectIdentity(identity: string | null): void {
    this.#inner.expectIdentity(identity);
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
