/**
 * A whole gateway from its configuration: opens the stores, the worker pool and the
 * image service, and starts the NBD data server and the HTTP control server on
 * separate listeners.
 */
import { LRUCache } from "lru-cache";
import type { Hash } from "../chunkstore/chunk-store.ts";
import { openStore } from "../chunkstore/open-store.ts";
import { serveHttp } from "../runtime/serve-http.ts";
import { PiscinaPool } from "../workers/piscina-pool.ts";
import type { TaskPool } from "../workers/task-pool.ts";
import { HealScheduler } from "./heal/heal-scheduler.ts";
import { LatencyMonitor } from "./heal/latency-monitor.ts";
import { createGatewayApp } from "./http/http-api.ts";
import { mountStatusRoutes, STATUS_OPENAPI_PATHS } from "./http/status-api.ts";
import { DEFAULT_CACHE_OPTIONS } from "./image/image.ts";
import { ImageExports } from "./image/image-exports.ts";
import { ImageService } from "./image/image-service.ts";
import { startNbdServer } from "./nbd/nbd-server.ts";
import { HeadStore } from "./replication/head-store.ts";
import { StoreHealth } from "./replication/store-health.ts";
import { type StoreMember, StoreSet } from "./replication/store-set.ts";
import { type S3EndpointConfig, startS3Endpoint } from "./s3/s3-endpoint.ts";

/** One `--store ID=URL`. */
export interface StoreConfig {
  readonly id: string;
  readonly url: string;
}

/** Everything a gateway needs. */
export interface GatewayConfig {
  readonly stores: readonly StoreConfig[];
  readonly replicas: number;
  readonly minReplicas: number;
  readonly nbd: { hostname: string; port: number };
  readonly http: { hostname: string; port: number };
  /** Bearer token for `http(s)://` stores. */
  readonly storeToken?: string;
  /** Bytes of clean chunks kept in memory. */
  readonly chunkCacheBytes?: number;
  /** Worker threads for hashing; default one per core. */
  readonly threads?: number;
  /** The S3-compatible endpoint (`--s3`), on its own listener. */
  readonly s3?: S3EndpointConfig;
}

/** A running gateway. */
export interface Gateway {
  readonly images: ImageService;
  readonly stores: StoreSet;
  readonly health: StoreHealth;
  readonly heal: HealScheduler;
  readonly nbdPort: number;
  readonly httpUrl: string;
  /** Base URL of the S3 endpoint, when configured. */
  readonly s3Url?: string;
  close(): Promise<void>;
}

/** Default `minReplicas` for a replica count: a majority of the copies, as Ceph's min_size. */
export function defaultMinReplicas(replicas: number): number {
  return Math.ceil(replicas / 2);
}

/** Parses `ID=URL`. */
export function parseStoreFlag(value: string): StoreConfig {
  const eq = value.indexOf("=");
  const id = value.slice(0, eq);
  if (eq <= 0 || !/^[A-Za-z0-9_-]{1,32}$/.test(id)) {
    throw new TypeError(`--store "${value}" is not ID=URL (for example a=http://127.0.0.1:9401)`);
  }
  return { id, url: value.slice(eq + 1) };
}

/** Opens stores and starts both servers. On any failure, what was started is stopped. */
export async function startGateway(config: GatewayConfig): Promise<Gateway> {
  const ids = new Set(config.stores.map((s) => s.id));
  if (ids.size !== config.stores.length) throw new TypeError("Store ids must be unique");
  const cleanups: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const c of cleanups.reverse())
      await c().catch((err) => console.error("blockmend gateway: while stopping:", err));
    cleanups.length = 0;
  };
  try {
    const members: StoreMember[] = [];
    for (const s of config.stores) {
      const store = await openStore(s.url, { token: config.storeToken });
      cleanups.push(() => store.close());
      members.push({ id: s.id, url: s.url, store });
    }
    const pool: TaskPool = new PiscinaPool({ threads: config.threads });
    cleanups.push(() => pool.close());
    const stores = new StoreSet(members, { replicas: config.replicas, minReplicas: config.minReplicas });
    const health = new StoreHealth(members);
    stores.health = health;
    const heads = new HeadStore(members);
    heads.health = health;
    const images = new ImageService({
      stores,
      heads,
      pool,
      chunkCache: new LRUCache<Hash, Uint8Array>({
        maxSize: config.chunkCacheBytes ?? 256 * 1024 * 1024,
        sizeCalculation: (b) => b.byteLength || 1,
      }),
      cache: DEFAULT_CACHE_OPTIONS,
    });
    cleanups.push(() => images.close());
    const latency = new LatencyMonitor();
    const heal = new HealScheduler(images, stores, health, latency);
    stores.onBadCopy = (id, hash, reason) => heal.repair(id, hash, reason);
    health.start();
    heal.start();
    cleanups.push(async () => {
      heal.stop();
      health.stop();
    });
    const nbd = await startNbdServer(new ImageExports(images, latency), config.nbd);
    cleanups.push(() => nbd.close());
    const app = createGatewayApp(images, {
      routes: (a) => mountStatusRoutes(a, { stores, health, heal, latency }),
      openapiPaths: STATUS_OPENAPI_PATHS,
    });
    const http = await serveHttp(app.fetch, config.http);
    cleanups.push(() => http.close());
    const s3 = config.s3 ? await startS3Endpoint(images, config.s3) : undefined;
    if (s3) cleanups.push(() => s3.close());
    return { images, stores, health, heal, nbdPort: nbd.port, httpUrl: http.url, s3Url: s3?.url, close };
  } catch (err) {
    await close();
    throw err;
  }
}
