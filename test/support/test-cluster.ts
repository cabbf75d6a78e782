/**
 * A cluster of real processes for tests: chunk store servers (each with its own
 * directory, restarted on the same port), gateways, and the API calls tests act on.
 * Every process it starts is stopped by `close()` (or the module's killAll), by PID.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NbdClient } from "./nbd-client.ts";
import {
  killAll,
  type StartedGateway,
  type StartedProcess,
  startGatewayProcess,
  startStoreProcess,
} from "./processes.ts";

/** One store of the cluster. */
export interface TestStore {
  readonly id: string;
  readonly dir: string;
  readonly witness: boolean;
  port: string;
  proc: StartedProcess | null;
  paused: boolean;
  /** `--reserve-bytes` for its next start (undefined: the store's default). */
  reserveBytes?: number;
}

/** A gateway of the cluster. */
export type TestGateway = StartedGateway & { stateDir: string };

/** What the status routes answer (the parts tests read). */
export interface StoresBody {
  stores: {
    id: string;
    state: string;
    role: string;
    identity: string;
    reasons: string[];
    damagedChunks: number;
    maintenance: unknown;
    lag: { image: string }[];
  }[];
}
export interface SafeBody {
  safe: boolean;
  reasons: string[];
  maintenance: boolean;
  wouldLoseLastCurrentCopy: string[];
}
export interface HealBody {
  healing: boolean;
  stores: { id: string; state: string; running: boolean; gateway: string | null; copiedBytes: number }[];
}

/** Stores and gateways as processes. */
export class TestCluster {
  readonly dir: string;
  readonly stores = new Map<string, TestStore>();
  readonly gateways: TestGateway[] = [];

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Starts the stores (`w...` ids as witnesses unless told otherwise). */
  static async start(
    ids: readonly string[],
    options: { witnesses?: readonly string[] } = {},
  ): Promise<TestCluster> {
    const c = new TestCluster(await mkdtemp(join(tmpdir(), "blockmend-cluster-")));
    const witnesses = options.witnesses ?? ids.filter((id) => id.startsWith("w"));
    for (const id of ids) {
      c.stores.set(id, {
        id,
        dir: join(c.dir, id),
        witness: witnesses.includes(id),
        port: "0",
        proc: null,
        paused: false,
      });
    }
    await Promise.all(ids.map((id) => c.startStore(id)));
    return c;
  }

  /** Starts one more store process (`store add` then brings it into the cluster). */
  async addStoreProcess(id: string, options: { witness?: boolean } = {}): Promise<string> {
    this.stores.set(id, {
      id,
      dir: join(this.dir, id),
      witness: options.witness ?? false,
      port: "0",
      proc: null,
      paused: false,
    });
    await this.startStore(id);
    return this.urls()[id]!;
  }

  /** Forgets a store (after `store remove`): later gateways start without it. */
  async dropStore(id: string): Promise<void> {
    await this.stopStore(id);
    this.stores.delete(id);
  }

  /** `--store` URLs by id. */
  urls(): Record<string, string> {
    return Object.fromEntries([...this.stores.values()].map((s) => [s.id, `http://127.0.0.1:${s.port}`]));
  }

  async startStore(id: string): Promise<void> {
    const s = this.stores.get(id)!;
    s.proc = await startStoreProcess(s.dir, {
      witness: s.witness,
      port: s.port,
      reserveBytes: s.reserveBytes,
    });
    s.port = new URL(s.proc.url).port;
    s.paused = false;
  }

  /** Kills a store (SIGKILL by default) and waits for it to exit. */
  async stopStore(id: string, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const s = this.stores.get(id)!;
    if (s.paused) s.proc?.proc.kill("SIGCONT");
    await s.proc?.kill(signal);
    s.proc = null;
    s.paused = false;
  }

  /** SIGSTOP: the process hangs, its sockets stay open (a pulled cable, a frozen host). */
  pause(id: string): void {
    const s = this.stores.get(id)!;
    s.proc?.proc.kill("SIGSTOP");
    s.paused = true;
  }

  resume(id: string): void {
    const s = this.stores.get(id)!;
    s.proc?.proc.kill("SIGCONT");
    s.paused = false;
  }

  /** A replaced disk: stop the store, wipe its directory, start it again at the same address. */
  async wipe(id: string): Promise<void> {
    await this.stopStore(id);
    await rm(this.stores.get(id)!.dir, { recursive: true, force: true });
    await this.startStore(id);
  }

  /** Starts a gateway over every store (2 replicas, min 1); `stateDir` to restart one with its id. */
  async startGateway(options: { stateDir?: string; extra?: string[] } = {}): Promise<TestGateway> {
    const g = await startGatewayProcess(this.urls(), options);
    this.gateways.push(g);
    return g;
  }

  async stopGateway(g: TestGateway, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    g.proc.kill("SIGCONT");
    await g.kill(signal);
    const i = this.gateways.indexOf(g);
    if (i >= 0) this.gateways.splice(i, 1);
  }

  /** Stops everything and removes the directories. */
  async close(): Promise<void> {
    for (const s of this.stores.values()) if (s.paused) s.proc?.proc.kill("SIGCONT");
    for (const g of this.gateways) g.proc.kill("SIGCONT");
    await killAll();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** JSON from a gateway's API (throws with the body on a non-2xx answer). */
export async function api<T>(g: { url: string }, path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(`${g.url}${path}`, init);
  const text = await res.text();
  if (!res.ok) throw new Error(`${init?.method ?? "GET"} ${path}: ${res.status} ${text}`);
  return (text ? JSON.parse(text) : null) as T;
}

/** POST/PUT/DELETE with a JSON body. */
export function send<T>(g: { url: string }, method: string, path: string, body?: unknown): Promise<T> {
  return api<T>(g, path, {
    method,
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
  });
}

export async function storeState(g: { url: string }, id: string): Promise<StoresBody["stores"][number]> {
  return (await api<StoresBody>(g, "/v1/stores")).stores.find((s) => s.id === id)!;
}

export function safeToRemove(g: { url: string }, id: string): Promise<SafeBody> {
  return api<SafeBody>(g, `/v1/stores/${id}/safe-to-remove`);
}

/** Waits until `cond` holds, checking every 100 ms; throws naming `what` after `ms`. */
export async function waitFor(
  what: string,
  cond: () => Promise<boolean> | boolean,
  ms = 60_000,
): Promise<void> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      if (await cond()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end)
      throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last})` : ""}`);
    await Bun.sleep(100);
  }
}

/** Waits until every store is in sync and no heal runs. */
export function waitInSync(g: { url: string }, ms = 60_000): Promise<void> {
  return waitFor(
    "every store in sync",
    async () => (await api<StoresBody>(g, "/v1/stores")).stores.every((s) => s.state === "in-sync"),
    ms,
  );
}

/** Connects an NBD client to `export` on gateway `g`. */
export function nbd(g: { nbdPort: number }, exportName: string): Promise<NbdClient> {
  return NbdClient.connect(g.nbdPort, exportName);
}

/** Random bytes (crypto-quality, so deduplication never flatters a test). */
export function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(b.subarray(o, Math.min(n, o + 65536)));
  return b;
}

/** True if two byte arrays are equal. */
export function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.from(a).equals(Buffer.from(b));
}

/** Reads all of `exportName` (an image or `image@snapshot`) through NBD and throws where it differs from `model`. */
export async function readsBack(
  g: { nbdPort: number },
  exportName: string,
  model: Uint8Array,
): Promise<void> {
  const step = 4 * 1024 * 1024;
  const c = await nbd(g, exportName);
  try {
    for (let off = 0; off < model.byteLength; off += step) {
      const got = await c.read(off, Math.min(step, model.byteLength - off));
      if (!same(got, model.subarray(off, off + step))) throw new Error(`${exportName} differs at ${off}`);
    }
  } finally {
    c.close();
  }
}
