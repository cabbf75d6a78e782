/**
 * A whole gateway from its configuration: opens the stores, learns the cluster record,
 * wires the layers (replication, register, images, heal) through their constructors and
 * typed events, and starts the NBD data server and the HTTP control server on separate
 * listeners.
 */

import { LRUCache } from "lru-cache";
import type { Hash } from "../chunkstore/chunk-store.ts";
import { openStore } from "../chunkstore/open-store.ts";
import { EventLoopDelay } from "../runtime/event-loop-delay.ts";
import { type HttpsCredentials, serveHttp } from "../runtime/serve-http.ts";
import { createTaskPool } from "../workers/create-task-pool.ts";
import type { TaskPool } from "../workers/task-pool.ts";
import {
  BACKUP_OPENAPI_PATHS,
  BackupClusterAdapter,
  BackupJobs,
  backupPins,
  mountBackupRoutes,
} from "./backup/mod.ts";
import { openGatewayState } from "./gateway-state.ts";
import { Collector, GcBusyError } from "./gc/collector.ts";
import { Pins } from "./gc/pins.ts";
import { sweepPace } from "./gc/sweep-pace.ts";
import { ClusterStatus } from "./heal/cluster-status.ts";
import { CopyEngine } from "./heal/copy-engine.ts";
import { HealScheduler } from "./heal/heal-scheduler.ts";
import { LatencyMonitor } from "./heal/latency-monitor.ts";
import { setMaintenance } from "./heal/maintenance.ts";
import { DamageLedger, RepairQueue } from "./heal/read-repair.ts";
import { Replacements } from "./heal/replacement.ts";
import { Scrubber } from "./heal/scrub.ts";
import { HealThrottle } from "./heal/throttle.ts";
import { type ApiAccessOptions, apiGuard } from "./http/api-access.ts";
import { DASHBOARD_OPENAPI_PATHS, startDashboard } from "./http/dashboard-routes.ts";
import { GC_OPENAPI_PATHS, mountGcRoutes } from "./http/gc-api.ts";
import { createGatewayApp } from "./http/http-api.ts";
import { mergePaths } from "./http/openapi.ts";
import { mountStatusRoutes, STATUS_OPENAPI_PATHS } from "./http/status-api.ts";
import { mountStoreLifecycleRoutes, STORE_LIFECYCLE_OPENAPI_PATHS } from "./http/store-lifecycle-api.ts";
import { HeadWriter } from "./image/head-writer.ts";
import {
  DEFAULT_CACHE_OPTIONS,
  DEFAULT_DIRTY_BUDGET_BYTES,
  type ImageCacheOptions,
} from "./image/image-context.ts";
import { ImageExports } from "./image/image-exports.ts";
import { ImageService } from "./image/image-service.ts";
import { DirtyBudget } from "./image/write-cache.ts";
import { type NbdServerOptions, startNbdServer } from "./nbd/nbd-server.ts";
import type { QuorumRegister } from "./register/quorum-register.ts";
import { bootstrapCluster, Cluster, type ConfiguredStore } from "./replication/cluster.ts";
import { placementEpochOf, placementStores } from "./replication/cluster-record.ts";
import { Membership, type StoreOpener } from "./replication/membership.ts";
import { DEFAULT_HEALTH_OPTIONS, type HealthOptions, StoreHealth } from "./replication/store-health.ts";
import { StoreSet } from "./replication/store-set.ts";
import { type S3EndpointConfig, startS3Endpoint } from "./s3/s3-endpoint.ts";

/** How often each gateway tries to start a garbage collection pass (the lease keeps it to one). */
const DEFAULT_GC_INTERVAL_MS = 6 * 3600_000;

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
  /** The NBD listener: TCP or unix socket, TLS, limits (passed to startNbdServer as they are). */
  readonly nbd: NbdServerOptions;
  readonly http: { hostname: string; port: number };
  /** The gateway's state directory (its id and lock). */
  readonly stateDir: string;
  /** Bearer token for `http(s)://` stores. */
  readonly storeToken?: string;
  /** Bearer tokens per store id (`--store-token-file ID=FILE`); before `storeToken`. */
  readonly storeTokens?: Readonly<Record<string, string>>;
  /** CA (PEM) that `https://` stores' certificates must chain to (`--store-ca`). */
  readonly storeCa?: string;
  /** Who may call the HTTP API (tokens, public names); the listen address comes from `http`. */
  readonly httpAccess?: Omit<ApiAccessOptions, "hostname">;
  /** HTTPS for the HTTP API and the S3 endpoint (from `--tls-dir`). */
  readonly tls?: HttpsCredentials;
  /** Bytes of clean chunks kept in memory. */
  readonly chunkCacheBytes?: number;
  /** Dirty bytes held across all images before writers wait. */
  readonly dirtyBudgetBytes?: number;
  /** Worker threads for hashing; default one per core. */
  readonly threads?: number;
  readonly cache?: Partial<ImageCacheOptions>;
  readonly health?: Partial<HealthOptions>;
  /** Where operator-visible events go (default: stderr). */
  readonly log?: (line: string) => void;
  /** The S3-compatible endpoint (`--s3`), on its own listener. */
  readonly s3?: S3EndpointConfig;
}

/** A running gateway: its layers and its two listeners. */
export interface Gateway extends GatewayCore {
  readonly nbdPort: number;
  readonly httpUrl: string;
  /** Base URL of the S3 endpoint, when configured. */
  readonly s3Url?: string;
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

/** What {@link assembleGateway} needs beyond the stores. */
export interface GatewayCoreOptions {
  readonly replicas: number;
  readonly minReplicas: number;
  /** The gateway's id (from its state directory). */
  readonly gatewayId: string;
  readonly chunkCacheBytes?: number;
  readonly dirtyBudgetBytes?: number;
  readonly cache?: Partial<ImageCacheOptions>;
  readonly health?: Partial<HealthOptions>;
  /** The worker pool (default: piscina, one thread per core). */
  readonly pool?: TaskPool;
  readonly threads?: number;
  readonly log?: (line: string) => void;
  /** Run the background loops (probes, record refresh, heal, scrub, gc). Default true. */
  readonly background?: boolean;
  /** How often a gateway tries to start a garbage collection pass (one runs at a time). Default 6 h; 0: never. */
  readonly gcIntervalMs?: number;
  /** Opens a store the cluster record gains while the gateway runs (`store add`); absent: none can join here. */
  readonly openStore?: StoreOpener;
}

/** Every layer of a gateway, wired, without listeners (tests use it directly). */
export interface GatewayCore {
  readonly id: string;
  readonly images: ImageService;
  readonly stores: StoreSet;
  readonly health: StoreHealth;
  readonly cluster: Cluster;
  readonly register: QuorumRegister;
  readonly heads: HeadWriter;
  readonly heal: HealScheduler;
  readonly scrub: Scrubber;
  readonly repairs: RepairQueue;
  readonly throttle: HealThrottle;
  readonly latency: LatencyMonitor;
  /** How late the event loop runs (sampled while the gateway runs). */
  readonly loopDelay: EventLoopDelay;
  readonly replacements: Replacements;
  readonly status: ClusterStatus;
  /** Garbage collection passes (run on demand: `POST /v1/gc`, `blockmend gc run`). */
  readonly gc: Collector;
  /** Turns maintenance of a store on or off and stamps every head. */
  setMaintenance(store: string, on: boolean): Promise<{ stamped: number }>;
  /** Follows the cluster record's store set (stores added, drained, removed). */
  readonly membership: Membership;
  /** Stops the loops and closes images and the pool (not the stores). */
  close(): Promise<void>;
}

/**
 * Learns the cluster over `configured` stores and wires the layers through their
 * constructors and typed events. The stores stay the caller's to close.
 */
export async function assembleGateway(
  configured: readonly ConfiguredStore[],
  options: GatewayCoreOptions,
): Promise<GatewayCore> {
  const log = options.log ?? ((line: string) => console.error(`blockmend gateway: ${line}`));
  const cleanups: (() => Promise<void> | void)[] = [];
  const close = async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (err) {
        console.error("blockmend gateway: while stopping:", err);
      }
    }
    cleanups.length = 0;
  };
  try {
    const gatewayId = options.gatewayId;
    // The register reports failures to the health tracker, which needs the members the
    // bootstrap makes: the closures reach it once it exists.
    let health: StoreHealth | undefined;
    const boot = await bootstrapCluster(configured, {
      gatewayId,
      isDown: (id) => health?.isDown(id) ?? false,
      onFailure: (id, err) => health?.reportFailure(id, err),
    });
    const { members, register } = boot;
    const cluster = new Cluster(register, members, boot.record);
    health = new StoreHealth(members, (id) => cluster.identity(id), {
      ...DEFAULT_HEALTH_OPTIONS,
      ...options.health,
    });
    const h = health;
    await h.probeAll();
    // Reads ask stores the heal knows are behind last: the closure reaches the heal once it exists.
    let healing: HealScheduler | undefined;
    const stores = new StoreSet(
      members,
      { replicas: options.replicas, minReplicas: options.minReplicas },
      {
        isDown: (id) => h.isDown(id),
        isFull: (id) => h.isFull(id),
        reportFailure: (id, err) => h.reportFailure(id, err),
        isBehind: (id) => healing?.behind.has(id) ?? false,
      },
      (id) => cluster.identity(id),
      { epoch: placementEpochOf(boot.record), stores: placementStores(boot.record) },
    );
    const heads = new HeadWriter(register, gatewayId);
    const pool: TaskPool = options.pool ?? createTaskPool({ threads: options.threads });
    if (!options.pool) cleanups.push(() => pool.close());
    const pins = new Pins(register, gatewayId);
    cleanups.push(() => pins.stop());
    const images = new ImageService({
      pinVersion: (v) => pins.pin(v),
      stores,
      heads,
      cluster,
      pool,
      chunkCache: new LRUCache<Hash, Uint8Array>({
        maxSize: options.chunkCacheBytes ?? 256 * 1024 * 1024,
        sizeCalculation: (b) => b.byteLength || 1,
      }),
      cache: { ...DEFAULT_CACHE_OPTIONS, ...options.cache },
      budget: new DirtyBudget(options.dirtyBudgetBytes ?? DEFAULT_DIRTY_BUDGET_BYTES),
      gatewayId,
      log,
    });
    cleanups.push(() => images.close());
    const latency = new LatencyMonitor();
    const loopDelay = new EventLoopDelay();
    loopDelay.start();
    cleanups.push(() => loopDelay.stop());
    const throttle = new HealThrottle(latency);
    const engine = new CopyEngine(stores, throttle);
    const heal = new HealScheduler({
      heads,
      cluster,
      stores,
      health: h,
      register,
      engine,
      throttle,
      gatewayId,
      log,
    });
    healing = heal;
    const repairs = new RepairQueue(
      engine,
      new DamageLedger(cluster),
      (id) => !heal.behind.has(id),
      (id) => h.isDown(id) || h.isFull(id), // a full store takes no repair copies either
    );
    stores.badCopy.add((id, hash, reason) => repairs.report(id, hash, reason));
    const scrub = new Scrubber({
      stores,
      health: h,
      cluster,
      register,
      repairs,
      gatewayId,
      rate: () => throttle.limits().scrubBytesPerSecond,
    });
    const replacements = new Replacements(members, register, cluster, log);
    h.identitySeen.add((id, identity) => replacements.handle(id, identity));
    // The record moved to an identity the store no longer answers with (another gateway
    // finished a replacement the store has been wiped since): bring that one back too.
    cluster.identityChanged.add((id, recorded) => {
      const seen = h.status(id)?.identity;
      if (seen && seen !== recorded) replacements.handle(id, seen);
    });
    const membership = new Membership({ cluster, stores, health: h, register, open: options.openStore, log });
    membership.joined.add((m) => {
      heal.addStore(m.id);
      scrub.addStore(m.id);
      replacements.addMember(m);
      void h.probeAll();
    });
    membership.left.add((id) => {
      heal.removeStore(id);
      scrub.removeStore(id);
      replacements.removeMember(id);
    });
    cleanups.push(() => membership.close());
    for (const m of members) {
      const seen = h.status(m.id)?.identity;
      if (seen && seen !== cluster.identity(m.id)) replacements.handle(m.id, seen);
    }
    const status = new ClusterStatus({
      cluster,
      heads,
      health: h,
      stores,
      inflight: () => images.inflight(),
      heal,
      scrub,
      repairs,
      throttle,
      registerExcluded: () => register.excluded,
    });
    const gc = new Collector({
      stores,
      heads,
      cluster,
      register,
      gatewayId,
      isUp: (id) => !h.isDown(id),
      log,
      // Surplus copies go only while every placement store holds every image in full.
      settled: () => status.settledEpoch(),
      pace: sweepPace(throttle, () => latency.recentP99(1000) !== null),
    });
    if (options.background !== false) {
      h.start();
      cluster.start();
      heal.start();
      scrub.start();
    }
    const gcEvery = options.gcIntervalMs ?? DEFAULT_GC_INTERVAL_MS;
    const gcTimer =
      options.background !== false && gcEvery > 0
        ? setInterval(() => {
            gc.start().catch((err) => {
              if (!(err instanceof GcBusyError)) log(`gc: could not start a pass: ${(err as Error).message}`);
            });
          }, gcEvery)
        : undefined;
    (gcTimer as { unref?: () => void } | undefined)?.unref?.();
    cleanups.push(() => {
      clearInterval(gcTimer);
      replacements.stop();
      scrub.stop();
      heal.stop();
      cluster.stop();
      h.stop();
    });
    return {
      id: gatewayId,
      images,
      stores,
      health: h,
      cluster,
      register,
      heads,
      heal,
      scrub,
      repairs,
      throttle,
      latency,
      loopDelay,
      replacements,
      status,
      gc,
      setMaintenance: (store, on) => setMaintenance(cluster, heads, store, on, gatewayId),
      membership,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Opens stores, learns the cluster, and starts both servers. On any failure, what was started is stopped. */
export async function startGateway(config: GatewayConfig): Promise<Gateway> {
  const ids = new Set(config.stores.map((s) => s.id));
  if (ids.size !== config.stores.length) throw new TypeError("Store ids must be unique");
  const cleanups: (() => Promise<void> | void)[] = [];
  const close = async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (err) {
        console.error("blockmend gateway: while stopping:", err);
      }
    }
    cleanups.length = 0;
  };
  try {
    const state = await openGatewayState(config.stateDir);
    cleanups.push(() => state.lock.release());
    const configured: ConfiguredStore[] = [];
    for (const s of config.stores) {
      const store = await openStore(s.url, {
        token: config.storeTokens?.[s.id] ?? config.storeToken,
        ca: config.storeCa,
      });
      cleanups.push(() => store.close());
      configured.push({ id: s.id, url: s.url, store });
    }
    const openStoreAt: StoreOpener = (id, url) =>
      openStore(url, { token: config.storeTokens?.[id] ?? config.storeToken, ca: config.storeCa });
    const core = await assembleGateway(configured, {
      ...config,
      gatewayId: state.id,
      openStore: openStoreAt,
    });
    cleanups.push(() => core.close());
    const nbd = await startNbdServer(new ImageExports(core.images, core.latency), config.nbd);
    cleanups.push(() => nbd.close());
    const backups = new BackupJobs({
      cluster: new BackupClusterAdapter(core.images),
      pins: backupPins(core.images.ctx),
      log: config.log ?? ((line) => console.error(`blockmend gateway: ${line}`)),
    });
    const dashboard = await startDashboard({ ...core, gatewayId: core.id, backups });
    cleanups.push(() => dashboard.close());
    const app = createGatewayApp(core.images, {
      routes: (a) => {
        mountStatusRoutes(a, {
          status: core.status,
          heal: core.heal,
          throttle: core.throttle,
          latency: core.latency,
          loopDelay: core.loopDelay,
          folding: () => core.images.folding(),
          maintenance: core.setMaintenance,
        });
        mountStoreLifecycleRoutes(a, {
          cluster: core.cluster,
          heads: core.heads,
          status: core.status,
          membership: core.membership,
          register: core.register,
          open: openStoreAt,
          replicas: config.replicas,
          gatewayId: core.id,
        });
        mountGcRoutes(a, core.gc);
        mountBackupRoutes(a, backups);
        dashboard.mount(a);
      },
      openapiPaths: {
        ...mergePaths(STATUS_OPENAPI_PATHS, STORE_LIFECYCLE_OPENAPI_PATHS),
        ...GC_OPENAPI_PATHS,
        ...BACKUP_OPENAPI_PATHS,
        ...DASHBOARD_OPENAPI_PATHS,
      },
      guard: apiGuard({ ...config.httpAccess, hostname: config.http.hostname }),
    });
    const http = await serveHttp(app.fetch, { ...config.http, tls: config.tls });
    cleanups.push(() => {
      dashboard.close(); // first: open event streams would hold the listener open
      return http.close();
    });
    const s3 = config.s3 ? await startS3Endpoint(core.images, { ...config.s3, tls: config.tls }) : undefined;
    if (s3) cleanups.push(() => s3.close());
    return { ...core, nbdPort: nbd.port, httpUrl: http.url, s3Url: s3?.url, close };
  } catch (err) {
    await close();
    throw err;
  }
}
