/** What an open image needs from its gateway, handed in at construction. */
import type { LRUCache } from "lru-cache";
import type { Hash } from "../../chunkstore/chunk-store.ts";
import type { TaskPool } from "../../workers/task-pool.ts";
import type { StoreSet } from "../replication/store-set.ts";
import type { HeadWriter } from "./head-writer.ts";
import type { DirtyBudget } from "./write-cache.ts";

/** Tunables of the write-back cache. */
export interface ImageCacheOptions {
  /** A background commit starts when this much is dirty in one image. */
  readonly flushThresholdBytes: number;
  /** A background commit starts when dirty data is this old (ms). */
  readonly flushIntervalMs: number;
  /** After its last client leaves, an image stays open this long (cache warm) before it closes. */
  readonly lingerMs: number;
  /**
   * A commit stores a small write to a block (at most a quarter of it) as a patch chunk on
   * the block's patch stack instead of rewriting the block (block-map.ts); false: always
   * rewrite. Default true.
   */
  readonly patchWrites?: boolean;
  /**
   * The owner of an image folds its patch stacks into whole chunks once the image had no
   * write for this long (ms; stack-folder.ts); Infinity: never. Default 2000.
   */
  readonly foldIdleMs?: number;
}

export const DEFAULT_CACHE_OPTIONS: ImageCacheOptions = {
  flushThresholdBytes: 32 * 1024 * 1024,
  flushIntervalMs: 1000,
  lingerMs: 30_000,
};

/** Dirty bytes a gateway holds across all its images by default: writers wait beyond. */
export const DEFAULT_DIRTY_BUDGET_BYTES = 256 * 1024 * 1024;

/** What the image layer asks of the cluster record. */
export interface ClusterView {
  /** Stores in maintenance, as last known (no I/O). */
  leaving(): ReadonlySet<string>;
  /** Stores in maintenance, read fresh from the register. */
  freshLeaving(): Promise<ReadonlySet<string>>;
  /** Stores in maintenance and the garbage collection barrier, read fresh (before a commit's first put). */
  freshState(): Promise<{ leaving: ReadonlySet<string>; gcEpoch: number }>;
  /** The identity the cluster records for a store now (null: unknown). */
  identity(store: string): string | null;
}

/** A commit in flight: the data stores that have not yet received all of it. */
export interface InflightCommit {
  readonly image: string;
  readonly pending: ReadonlySet<string>;
}

/** Everything an image uses, shared by all images of a gateway. */
export interface ImageContext {
  readonly stores: StoreSet;
  readonly heads: HeadWriter;
  readonly cluster: ClusterView;
  readonly pool: TaskPool;
  /** Clean chunks and map pages by hash, shared by all images (dedup makes that pay). */
  readonly chunkCache: LRUCache<Hash, Uint8Array>;
  readonly cache: ImageCacheOptions;
  readonly budget: DirtyBudget;
  /** This gateway's id: the owner it records when it takes an image over. */
  readonly gatewayId: string;
  /** Where the image layer reports events an operator should see (takeovers, fencing). */
  readonly log: (line: string) => void;
  /**
   * Pins a version for a long read (garbage collection keeps its chunks meanwhile: gc/pins.ts);
   * resolves, durable, with its release. Absent: reads are not pinned.
   */
  readonly pinVersion?: PinVersion;
}

/** Pins a version (`root`, `size`, `chunkSize`; `why` for status); resolves, durable, with its release. */
export type PinVersion = (v: {
  root: Hash;
  size: number;
  chunkSize: number;
  why: string;
}) => Promise<() => Promise<void>>;
