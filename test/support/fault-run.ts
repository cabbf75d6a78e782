/**
 * The seeded fault run (issues 7 and 8): real chunk store and gateway processes, a model of
 * what every acknowledged flush wrote, and a random sequence of writes, flushes, reads,
 * snapshots, clones, deletes and re-creates (with connections left open), takeovers
 * between two gateways, and faults: store SIGKILL, SIGSTOP/SIGCONT, wipe-and-restart of a
 * store the cluster said could go, witness down, gateway SIGKILL and restart, a gateway
 * frozen past its leases; and store lifecycle changes while all that goes on: a data store
 * added (the rebalance runs under the faults), drained, its drain cancelled, and removed;
 * and, in runs that start with a third head holder (c), that head holder drained and
 * removed from the cluster (its register refs fenced, every key rewritten on the rest)
 * while gateways are down or frozen, then stopped for good.
 *
 * After every step the blocks it touched are read back and checked against the model;
 * every "safe to remove" is acted upon (the store is stopped and a fresh gateway reads every
 * image and snapshot), both point-in-time answers and maintenance mode, and so is every
 * "drained" (the store is stopped, or removed and stopped for good); when faults stop,
 * heal status must converge. A run is replayed by its seed (printed at the start).
 *
 * The model: for each block of each image, the set of values a read may return: the value
 * of the last write acknowledged by a flush, plus any written after it whose flush failed
 * (such a write may or may not land). A read of anything else is a lost or invented write.
 * Some writes cover part of a block (512 B to 4 KiB, the gateway's patch path): each value
 * the block may hold, with the write laid over it, is a value it may hold afterwards.
 */
import { hashChunk } from "../../chunkstore/hash.ts";
import { seededRandom } from "./faulty-store.ts";
import type { NbdClient } from "./nbd-client.ts";
import {
  api,
  nbd,
  type SafeBody,
  type StoresBody,
  send,
  TestCluster,
  type TestGateway,
} from "./test-cluster.ts";

const BLOCK = 64 * 1024;
const IMAGE_BLOCKS = 64; // 4 MiB images: small enough to read whole after every safe action
const IMAGE_NAMES = ["i0", "i1", "i2"];
/** Any one request may take this long before it counts as failed (a hung store, a frozen gateway). */
const OP_TIMEOUT_MS = 20_000;
/** Gateways fold patch stacks after 200 ms without a write (the default is 2 s), so folds meet the faults often. */
const FOLD_OFTEN = ["--fold-idle-ms", "200"];
/** How long a maintenance may wait for safe-to-remove to turn true. */
const MAINTENANCE_WAIT_MS = 20_000;
const ZERO = hashChunk(new Uint8Array(BLOCK));
/** A partial write goes to a block only while it may hold at most this many values (the sets multiply). */
const PARTIAL_MAX_VALUES = 6;

/** What a run found. */
export interface FaultReport {
  readonly seed: number;
  readonly steps: number;
  readonly faults: number;
  readonly takeovers: number;
  readonly safeAnswers: number;
  readonly safeActedUpon: number;
  readonly maintenanceRuns: number;
  /** Store lifecycle changes made (add, drain, cancel, remove), and drained stores acted upon. */
  readonly lifecycleChanges: number;
  readonly drainedActedUpon: number;
  /** Whether the run started with head holder c to remove, and whether its removal went through. */
  readonly headHolderRemoval: "none" | "done" | "not reached";
  readonly acknowledgedFlushes: number;
  /** Writes of part of a block (the patch path) whose flush was acknowledged. */
  readonly partialWrites: number;
  /** Garbage collection passes at zero grace that finished, and the chunks they deleted. */
  readonly gcPasses: number;
  readonly gcDeleted: number;
  /** Deleted images' tombstones the passes removed from the register. */
  readonly tombstonesCollected: number;
  /** Blocks whose patch stacks were folded, as the gateways alive at the end count them (a lower bound). */
  readonly foldedBlocks: number;
  readonly failedOps: number;
  readonly violations: string[];
  readonly log: string[];
}

/** Options of a run. */
export interface FaultRunOptions {
  readonly seed: number;
  /** Stop after this many steps, or when `deadlineMs` passes, whichever comes first. */
  readonly steps?: number;
  readonly deadlineMs?: number;
  /** Gateways (2 exercises takeovers, leases and cluster-wide status). */
  readonly gateways?: number;
  /** Prints progress lines (the step log is in the report either way). */
  readonly verbose?: boolean;
  /**
   * Start with a third data store that holds heads (c: four head holders in all) and remove
   * it during the run. Default: in runs of odd seeds.
   */
  readonly removeHeadHolder?: boolean;
}

type Allowed = Set<string>;

interface ImageModel {
  blocks: Allowed[];
  snapshots: Map<string, Allowed[]>;
  /** The last gateway that wrote it (a write elsewhere is a takeover). */
  lastWriter: number;
}

interface Fault {
  readonly kind: string;
  readonly target: string;
  /** Steps left before it is undone. */
  ttl: number;
  undo(): Promise<void>;
}

/** Runs one seeded fault test; never throws for a violation (they are in the report). */
export async function runFaultTest(options: FaultRunOptions): Promise<FaultReport> {
  const random = seededRandom(options.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const chance = (p: number) => random() < p;
  const log: string[] = [];
  const violations: string[] = [];
  let foldedBlocks = 0;
  const counters = {
    faults: 0,
    takeovers: 0,
    safeAnswers: 0,
    safeActedUpon: 0,
    maintenanceRuns: 0,
    lifecycle: 0,
    drainedActedUpon: 0,
    acks: 0,
    gcPasses: 0,
    gcDeleted: 0,
    tombstonesCollected: 0,
    failed: 0,
    partialWrites: 0,
  };
  const say = (line: string) => {
    log.push(line);
    if (options.verbose) console.log(`[fault ${options.seed}] ${line}`);
  };
  const deadline = Date.now() + (options.deadlineMs ?? 150_000);
  const maxSteps = options.steps ?? Number.POSITIVE_INFINITY;

  const removeHeadHolder = options.removeHeadHolder ?? options.seed % 2 === 1;
  /** The head holders (c goes when it is removed), and of them the data stores. */
  const headHolders = removeHeadHolder ? ["a", "b", "c", "w"] : ["a", "b", "w"];
  const dataHeadHolders = () => headHolders.filter((id) => id !== "w");
  let headHolderRemoved = false;
  const cluster = await TestCluster.start(headHolders);
  const gwCount = options.gateways ?? 2;
  const gateways: (TestGateway | null)[] = [];
  const stateDirs: string[] = [];
  const frozen = new Set<number>();
  for (let i = 0; i < gwCount; i++) {
    const g = await cluster.startGateway({ extra: FOLD_OFTEN });
    gateways.push(g);
    stateDirs.push(g.stateDir);
  }
  const images = new Map<string, ImageModel>();
  /** The bytes of every value a model set may name (a partial write lays itself over them). */
  const contents = new Map<string, Uint8Array>([[ZERO, new Uint8Array(BLOCK)]]);
  const remember = (bytes: Uint8Array): string => {
    const h = hashChunk(bytes);
    contents.set(h, bytes);
    return h;
  };
  /** Forgets bytes no image or snapshot may hold any more (a long soak writes thousands). */
  const forgetUnused = () => {
    const used = new Set([ZERO]);
    for (const m of images.values()) {
      for (const set of m.blocks) for (const h of set) used.add(h);
      for (const snap of m.snapshots.values()) for (const set of snap) for (const h of set) used.add(h);
    }
    for (const h of contents.keys()) if (!used.has(h)) contents.delete(h);
  };
  /** Open connections by gateway and image; stale ones (of a deleted incarnation) kept apart. */
  const conns = new Map<string, NbdClient>();
  const stale: { gateway: number; image: string; conn: NbdClient }[] = [];
  /** Images whose last operation was an acknowledged delete: they must never be listed. */
  const deletedNames = new Set<string>();
  const faults: Fault[] = [];
  let step = 0;

  /** A gateway process that exited on its own is a crash: a violation, with its last words. */
  const crashed = new Set<number>();
  const bugs = new Set<string>();
  const checkCrashes = () => {
    gateways.forEach((g, i) => {
      for (const line of g?.output().split("\n") ?? []) {
        if (line.includes("BUG:") && !bugs.has(line)) {
          bugs.add(line);
          violations.push(`step ${step}: gateway g${i} logged ${line.slice(0, 500)}`);
          say(`VIOLATION ${violations.at(-1)}`);
        }
      }
      if (!g || crashed.has(i) || g.proc.exitCode === null) return;
      crashed.add(i);
      violations.push(
        `step ${step}: gateway g${i} exited by itself (code ${g.proc.exitCode}): ${g.output().slice(-1500)}`,
      );
      say(`VIOLATION ${violations.at(-1)}`);
    });
  };
  const live = () => {
    checkCrashes();
    return gateways.map((g, i) => (g && !frozen.has(i) && !crashed.has(i) ? i : -1)).filter((i) => i >= 0);
  };
  const timed = <T>(p: Promise<T>, what: string): Promise<T> =>
    Promise.race([
      p,
      new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: timed out`)), OP_TIMEOUT_MS)),
    ]);
  const conn = async (gi: number, image: string): Promise<NbdClient> => {
    const key = `${gi}/${image}`;
    let c = conns.get(key);
    if (!c) {
      c = await timed(nbd(gateways[gi]!, image), `connect ${key}`);
      conns.set(key, c);
    }
    return c;
  };
  const dropConn = (gi: number, image: string) => {
    const key = `${gi}/${image}`;
    const c = conns.get(key);
    c?.close();
    conns.delete(key);
  };
  const dropGatewayConns = (gi: number) => {
    for (const key of [...conns.keys()])
      if (key.startsWith(`${gi}/`)) dropConn(gi, key.slice(key.indexOf("/") + 1));
    for (let i = stale.length - 1; i >= 0; i--) if (stale[i]!.gateway === gi) stale.splice(i, 1);
  };

  /** Checks block reads of `exportName` (an image or `image@snap`) through gateway `gi`. */
  const check = async (gi: number, exportName: string, model: Allowed[], blocks: number[], why: string) => {
    let c: NbdClient;
    try {
      c = exportName.includes("@")
        ? await timed(nbd(gateways[gi]!, exportName), "connect snapshot")
        : await conn(gi, exportName);
    } catch {
      return; // an unreachable gateway or store is not a violation; unanswered reads prove nothing
    }
    try {
      for (const b of blocks) {
        let got: Uint8Array;
        try {
          got = await timed(c.read(b * BLOCK, BLOCK), `read ${exportName}`);
        } catch {
          if (!exportName.includes("@")) dropConn(gi, exportName);
          return;
        }
        const h = hashChunk(got);
        if (!model[b]!.has(h)) {
          violations.push(
            `step ${step} (${why}): ${exportName} block ${b} via gateway ${gi} reads a value no acknowledged or later write left there`,
          );
          say(`VIOLATION ${violations.at(-1)}`);
        }
      }
    } finally {
      if (exportName.includes("@")) c.close();
    }
  };

  /** Reads every image and snapshot in full through gateway `gi`. */
  const checkAll = async (gi: number, why: string) => {
    const all = Array.from({ length: IMAGE_BLOCKS }, (_, i) => i);
    for (const [name, m] of images) {
      await check(gi, name, m.blocks, all, why);
      for (const [snap, sm] of m.snapshots) await check(gi, `${name}@${snap}`, sm, all, why);
    }
  };

  const freshModel = (): ImageModel => ({
    blocks: Array.from({ length: IMAGE_BLOCKS }, () => new Set([ZERO])),
    snapshots: new Map(),
    lastWriter: -1,
  });

  // ---- operations

  const opCreate = async (gi: number, name: string, from?: string) => {
    deletedNames.delete(name); // from here its state is the create's (maybe uncertain)
    try {
      await timed(
        send(gateways[gi]!, "POST", "/v1/images", {
          name,
          size: IMAGE_BLOCKS * BLOCK,
          ...(from ? { from } : {}),
        }),
        "create",
      );
      if (from) {
        const [src, snap] = from.split("@") as [string, string];
        const sm = images.get(src)!.snapshots.get(snap)!;
        images.set(name, { blocks: sm.map((s) => new Set(s)), snapshots: new Map(), lastWriter: -1 });
      } else images.set(name, freshModel());
      say(`create ${name}${from ? ` from ${from}` : ""} via g${gi}`);
    } catch (err) {
      counters.failed++;
      say(`create ${name} failed: ${(err as Error).message.slice(0, 120)}`);
      // It may exist now; probe it (a create that cannot be confirmed is left out of the model).
      const info = await api<{ name: string }>(gateways[gi]!, `/v1/images/${name}`).catch(() => null);
      if (info && !images.has(name)) {
        say(`create ${name}: it exists after all; deleting it to keep the model exact`);
        await send(gateways[gi]!, "DELETE", `/v1/images/${name}`).catch(() => {});
      }
    }
  };

  const opWrite = async (gi: number, name: string) => {
    const m = images.get(name)!;
    const count = 1 + Math.floor(random() * 6);
    const blocks = [...new Set(Array.from({ length: count }, () => Math.floor(random() * IMAGE_BLOCKS)))];
    // Each piece: a whole block, or part of one (the values it may hold become each of them patched).
    const pieces = blocks.map((b) => {
      const partial = random() < 0.4 && m.blocks[b]!.size <= PARTIAL_MAX_VALUES;
      const length = partial ? 512 * (1 + Math.floor(random() * 8)) : BLOCK;
      const at = partial ? 512 * Math.floor(random() * ((BLOCK - length) / 512 + 1)) : 0;
      const data = new Uint8Array(length);
      crypto.getRandomValues(data);
      const after = new Set(
        [...(partial ? m.blocks[b]! : [ZERO])].map((v) => {
          const next = new Uint8Array(BLOCK);
          if (partial) next.set(contents.get(v)!);
          next.set(data, at);
          return remember(next);
        }),
      );
      return { block: b, at, data, after };
    });
    if (m.lastWriter !== -1 && m.lastWriter !== gi) counters.takeovers++;
    // Until the flush answers, each new value may or may not land.
    for (const p of pieces) for (const h of p.after) m.blocks[p.block]!.add(h);
    let acked = false;
    try {
      const c = await conn(gi, name);
      for (const p of pieces) await timed(c.write(p.block * BLOCK + p.at, p.data), "write");
      await timed(c.flush(), "flush");
      acked = true;
    } catch (err) {
      counters.failed++;
      dropConn(gi, name);
      say(
        `write ${name} via g${gi} (${blocks.length} blocks) failed: ${(err as Error).message.slice(0, 80)}`,
      );
    }
    if (acked) {
      counters.acks++;
      m.lastWriter = gi;
      for (const p of pieces) m.blocks[p.block] = p.after;
      const partial = pieces.filter((p) => p.data.byteLength < BLOCK).length;
      counters.partialWrites += partial;
      say(`write ${name} via g${gi}: ${blocks.length} blocks flushed (${partial} partly)`);
    }
    forgetUnused();
    await check(gi, name, m.blocks, blocks, "after write");
  };

  const opRead = async (gi: number, name: string) => {
    const m = images.get(name)!;
    const blocks = Array.from({ length: 6 }, () => Math.floor(random() * IMAGE_BLOCKS));
    await check(gi, name, m.blocks, blocks, "read");
    const snaps = [...m.snapshots.keys()];
    if (snaps.length) {
      const s = pick(snaps);
      await check(gi, `${name}@${s}`, m.snapshots.get(s)!, blocks, "read snapshot");
    }
  };

  const opSnapshot = async (gi: number, name: string) => {
    const m = images.get(name)!;
    const snap = `s${step}`;
    const at = m.blocks.map((s) => new Set(s));
    try {
      await timed(send(gateways[gi]!, "POST", `/v1/images/${name}/snapshots`, { name: snap }), "snapshot");
      m.snapshots.set(snap, at);
      say(`snapshot ${name}@${snap} via g${gi}`);
    } catch (err) {
      counters.failed++;
      say(`snapshot ${name}@${snap} failed: ${(err as Error).message.slice(0, 80)}`);
    }
  };

  const opDelete = async (gi: number, name: string) => {
    // Keep a connection of the old incarnation open on each gateway: it must never commit again.
    const open: { gateway: number; conn: NbdClient }[] = [];
    for (const g of live()) {
      const c = await conn(g, name).catch(() => null);
      if (c) open.push({ gateway: g, conn: c });
    }
    let gone = false;
    try {
      await timed(send(gateways[gi]!, "DELETE", `/v1/images/${name}`), "delete");
      gone = true;
      say(`delete ${name} via g${gi}`);
    } catch (err) {
      counters.failed++;
      say(`delete ${name} failed: ${(err as Error).message.slice(0, 80)}`);
      // Uncertain: find out, so the model stays exact.
      gone = await api(gateways[gi]!, `/v1/images/${name}`).then(
        () => false,
        (e: Error) => /404|image_not_found/.test(e.message),
      );
    }
    if (!gone) return;
    images.delete(name);
    deletedNames.add(name);
    for (const o of open) {
      stale.push({ gateway: o.gateway, image: name, conn: o.conn });
      conns.delete(`${o.gateway}/${name}`);
    }
  };

  const opStaleWrite = async () => {
    const s = stale.length ? pick(stale) : null;
    if (!s || !gateways[s.gateway] || frozen.has(s.gateway)) return;
    const data = new Uint8Array(BLOCK).fill(0xee);
    const block = Math.floor(random() * IMAGE_BLOCKS);
    const ok = await timed(
      s.conn.write(block * BLOCK, data).then(() => s.conn.flush()),
      "stale write",
    ).then(
      () => true,
      () => false,
    );
    say(
      `stale connection of deleted ${s.image} on g${s.gateway}: write+flush ${ok ? "ACCEPTED" : "refused"}`,
    );
    if (ok)
      violations.push(
        `step ${step}: a connection to a deleted incarnation of ${s.image} flushed successfully`,
      );
    const m = images.get(s.image);
    if (m) await check(s.gateway, s.image, m.blocks, [block], "after stale write");
  };

  // ---- faults

  const storeUp = (id: string) => cluster.stores.get(id)!.proc !== null && !cluster.stores.get(id)!.paused;
  const faulted = (target: string) => faults.some((f) => f.target === target);

  const addFault = async (
    kind: string,
    target: string,
    ttl: number,
    apply: () => Promise<void>,
    undo: () => Promise<void>,
  ) => {
    await apply();
    faults.push({ kind, target, ttl, undo });
    counters.faults++;
    say(`fault: ${kind} ${target} (for ${ttl} steps)`);
  };

  /** SIGKILLs gateway `gi` for 1-3 steps; it restarts with its state directory (its id). */
  const killGateway = (gi: number) => {
    const g = gateways[gi]!;
    return addFault(
      "gateway-kill",
      `g${gi}`,
      1 + Math.floor(random() * 3),
      async () => {
        dropGatewayConns(gi);
        await cluster.stopGateway(g);
        gateways[gi] = null;
      },
      async () => {
        gateways[gi] = await cluster.startGateway({ stateDir: stateDirs[gi], extra: FOLD_OFTEN });
      },
    );
  };

  const opFault = async () => {
    if (faults.length >= 2) return;
    const r = random();
    const storeId = pick(headHolders);
    const gi = Math.floor(random() * gateways.length);
    if (r < 0.3 && !faulted(storeId)) {
      await addFault(
        "kill",
        storeId,
        2 + Math.floor(random() * 5),
        () => cluster.stopStore(storeId),
        () => cluster.startStore(storeId),
      );
    } else if (r < 0.55 && !faulted(storeId)) {
      await addFault(
        "sigstop",
        storeId,
        1 + Math.floor(random() * 3),
        async () => cluster.pause(storeId),
        async () => cluster.resume(storeId),
      );
    } else if (r < 0.7 && !faulted(storeId)) {
      // A failed disk replaced by an empty one: only where the cluster says the store can go.
      const g = live()[0];
      if (g === undefined) return;
      const safe = await timed(
        api<SafeBody>(gateways[g]!, `/v1/stores/${storeId}/safe-to-remove`),
        "safe",
      ).catch(() => null);
      if (!safe?.safe) return;
      counters.safeAnswers++;
      counters.safeActedUpon++;
      say(`safe-to-remove ${storeId}: true; acting on it by wiping its disk`);
      await cluster.wipe(storeId);
      counters.faults++;
      say(`fault: wipe ${storeId} (restarted empty at the same address)`);
      await checkAll(g, `after wiping ${storeId}`);
    } else if (r < 0.85 && gateways[gi] && !frozen.has(gi) && live().length > 1) {
      await killGateway(gi);
    } else if (
      r < 0.9 &&
      gateways[gi] &&
      !frozen.has(gi) &&
      live().length > 1 &&
      !faults.some((f) => f.kind === "gateway-freeze")
    ) {
      // Frozen past its leases (10-15 s): another gateway takes them over; on waking it must not act on them.
      const g = gateways[gi]!;
      await addFault(
        "gateway-freeze",
        `g${gi}`,
        1,
        async () => {
          g.proc.kill("SIGSTOP");
          frozen.add(gi);
        },
        async () => {
          await Bun.sleep(16_000);
          g.proc.kill("SIGCONT");
          frozen.delete(gi);
        },
      );
    }
  };

  const undoFaults = async (all = false) => {
    for (const f of [...faults]) {
      if (!all && --f.ttl > 0) continue;
      faults.splice(faults.indexOf(f), 1);
      await f.undo().catch((err) => say(`undo ${f.kind} ${f.target} failed: ${(err as Error).message}`));
      say(`undo: ${f.kind} ${f.target}`);
    }
  };

  // ---- acting on "safe"

  /** Stops `x` (null: it is gone already) and reads everything through a fresh gateway. */
  const actOnSafe = async (x: string | null, how: string) => {
    counters.safeActedUpon++;
    say(
      x
        ? `safe-to-remove ${x}: true (${how}); stopping ${x} and reading everything through a fresh gateway`
        : `${how}: reading everything through a fresh gateway`,
    );
    const wasUp = x !== null && cluster.stores.get(x)!.proc !== null;
    if (x) await cluster.stopStore(x);
    let fresh: TestGateway | null = null;
    try {
      fresh = await cluster.startGateway();
      const index = gateways.length;
      gateways.push(fresh);
      await checkAll(index, `${x} removed after it was said safe (${how})`);
      dropGatewayConns(index);
      gateways.pop();
    } catch (err) {
      violations.push(
        `step ${step}: with ${x} removed after "safe" (${how}), a fresh gateway could not serve: ${(err as Error).message.slice(0, 200)}`,
      );
      say(`VIOLATION ${violations.at(-1)}`);
    } finally {
      if (fresh) await cluster.stopGateway(fresh);
      if (wasUp && x) await cluster.startStore(x);
    }
  };

  const opSafe = async () => {
    const g = live()[0];
    if (g === undefined) return;
    const x = pick(headHolders);
    if (!storeUp(x) || faulted(x)) return;
    const safe = await timed(api<SafeBody>(gateways[g]!, `/v1/stores/${x}/safe-to-remove`), "safe").catch(
      () => null,
    );
    if (!safe) return;
    say(
      `safe-to-remove ${x} (point in time): ${safe.safe}${safe.safe ? "" : ` (${safe.reasons[0]?.slice(0, 80)})`}`,
    );
    if (!safe.safe) return;
    counters.safeAnswers++;
    await actOnSafe(x, "point in time");
  };

  const opMaintenance = async () => {
    const g = live()[0];
    if (g === undefined) return;
    const x = pick(dataHeadHolders());
    if (!storeUp(x) || faulted(x)) return;
    counters.maintenanceRuns++;
    try {
      await timed(send(gateways[g]!, "PUT", `/v1/stores/${x}/maintenance`, { on: true }), "maintenance on");
    } catch (err) {
      say(`maintenance ${x} on failed: ${(err as Error).message.slice(0, 80)}`);
      return;
    }
    say(`maintenance ${x} on; writes go on while waiting for safe`);
    const end = Date.now() + MAINTENANCE_WAIT_MS;
    let safe = false;
    while (Date.now() < end) {
      // VM writes go on during maintenance: they must not come to depend on x.
      const gi = pick(live());
      const name = pick([...images.keys()]);
      if (gi !== undefined && name) await opWrite(gi, name);
      const s = await timed(api<SafeBody>(gateways[g]!, `/v1/stores/${x}/safe-to-remove`), "safe").catch(
        () => null,
      );
      if (s?.safe) {
        safe = true;
        break;
      }
      await Bun.sleep(300);
    }
    if (safe) {
      counters.safeAnswers++;
      // More writes after the answer: in maintenance the answer must stay true.
      for (let i = 0; i < 3; i++) {
        const gi = pick(live());
        const name = pick([...images.keys()]);
        if (gi !== undefined && name) await opWrite(gi, name);
      }
      await actOnSafe(x, "maintenance, after more writes");
    } else say(`maintenance ${x}: not safe within ${MAINTENANCE_WAIT_MS / 1000} s`);
    await timed(
      send(gateways[g]!, "PUT", `/v1/stores/${x}/maintenance`, { on: false }),
      "maintenance off",
    ).catch(() => {});
  };

  // ---- the store set: add, drain, cancel, remove (every gateway follows the record)

  let added = 0;
  type Listed = StoresBody["stores"][number] & { draining: unknown; placement: boolean };
  const listStores = async (g: number) =>
    (await timed(api<{ stores: Listed[] }>(gateways[g]!, "/v1/stores"), "stores")).stores;

  const opLifecycle = async () => {
    const g = live()[0];
    if (g === undefined) return;
    const listed = await listStores(g).catch(() => null);
    if (!listed) return;
    const extra = listed.find((s) => s.id.startsWith("d"));
    const drainingNow = listed.find((s) => s.draining);
    if (!extra && !drainingNow && !(headHolders.includes("c") && chance(0.5))) {
      // Add a data store: the rebalance runs while the run goes on.
      const id = `d${++added}`;
      const url = await cluster.addStoreProcess(id);
      const r = await timed(send(gateways[g]!, "POST", "/v1/stores", { id, url }), "store add").then(
        () => null,
        (err: Error) => err,
      );
      counters.lifecycle++;
      if (r) {
        say(`store add ${id} failed: ${r.message.slice(0, 100)}`);
        const now = await listStores(g).catch(() => null);
        if (now && !now.some((s) => s.id === id)) await cluster.dropStore(id);
        return;
      }
      say(`store add ${id} via g${g}: the rebalance runs under the faults`);
      return;
    }
    if (drainingNow) {
      if (drainingNow.state !== "drained") {
        if (chance(0.3)) {
          await timed(send(gateways[g]!, "DELETE", `/v1/stores/${drainingNow.id}/drain`), "cancel").then(
            () => say(`store drain ${drainingNow.id} cancelled`),
            (err: Error) =>
              say(`cancel of the drain of ${drainingNow.id} failed: ${err.message.slice(0, 80)}`),
          );
          counters.lifecycle++;
        } else say(`store ${drainingNow.id} still ${drainingNow.state}`);
        return;
      }
      // Drained: act on it.
      const x = drainingNow.id;
      counters.drainedActedUpon++;
      if (x === "c") {
        await opRemoveHeadHolder(g);
        return;
      }
      if (x.startsWith("d")) {
        const removed = await timed(send(gateways[g]!, "DELETE", `/v1/stores/${x}`), "store remove").then(
          () => null,
          (err: Error) => err,
        );
        counters.lifecycle++;
        if (removed) {
          say(`store remove ${x} (drained) refused: ${removed.message.slice(0, 120)}`);
          return;
        }
        say(`store remove ${x}: drained and removed; stopping it for good and reading everything`);
        await cluster.dropStore(x);
        await actOnSafe(null, `${x} drained and removed`);
      } else {
        say(`store ${x} drained: stopping it and reading everything through a fresh gateway`);
        if (storeUp(x) && !faulted(x)) await actOnSafe(x, `${x} drained`);
        await timed(send(gateways[g]!, "DELETE", `/v1/stores/${x}/drain`), "cancel").catch(() => {});
        counters.lifecycle++;
        say(`store drain ${x} cancelled (after acting on drained)`);
      }
      return;
    }
    // A head holder to remove (c) is drained first, most of the time; else a store added
    // earlier, or a head holder's data (a), which is never removed.
    const x = headHolders.includes("c") && chance(0.6) ? "c" : !extra || chance(0.3) ? "a" : extra.id;
    await timed(send(gateways[g]!, "POST", `/v1/stores/${x}/drain`), "drain").then(
      () => say(`store drain ${x} via g${g}`),
      (err: Error) => say(`store drain ${x} failed: ${err.message.slice(0, 100)}`),
    );
    counters.lifecycle++;
  };

  /**
   * Head holder c, drained, leaves the cluster: `store remove` fences its register refs and
   * rewrites every key on the rest (refused unless every head holder answers: a fault on one
   * leaves c draining, tried again later). Removed: c is stopped for good, gateways down or
   * frozen meanwhile come back to a cluster without it, and a fresh gateway reads everything.
   */
  const opRemoveHeadHolder = async (g: number) => {
    // Half the time another gateway is down during the removal: it comes back, with its
    // state, to a cluster without c.
    const other = live().find((i) => i !== g);
    if (other !== undefined && chance(0.5) && !faults.some((f) => f.kind.startsWith("gateway")))
      await killGateway(other);
    const removed = await timed(send(gateways[g]!, "DELETE", "/v1/stores/c"), "store remove").then(
      () => null,
      (err: Error) => err,
    );
    counters.lifecycle++;
    if (removed) {
      say(`store remove c (a drained head holder) refused: ${removed.message.slice(0, 160)}`);
      return;
    }
    headHolderRemoved = true;
    headHolders.splice(headHolders.indexOf("c"), 1);
    // A fault on c ends here: c never comes back.
    for (const f of faults.filter((f) => f.target === "c")) faults.splice(faults.indexOf(f), 1);
    say(
      `store remove c: a head holder left the cluster via g${g} (gateways down: ${gateways.flatMap((x, i) => (x ? [] : [`g${i}`])).join(",") || "none"}, frozen: ${[...frozen].map((i) => `g${i}`).join(",") || "none"}); stopping it for good and reading everything`,
    );
    await cluster.dropStore("c");
    await actOnSafe(null, "head holder c drained and removed");
  };

  /** A garbage collection pass at zero grace, then every acknowledged flush read back. */
  const opGc = async () => {
    const g = pick(live());
    if (g === undefined) return;
    type Pass = {
      phase: string;
      error: string | null;
      stores: { deleted: number }[];
      tombstones?: { collected: number; left: number; reason: string | null };
    };
    const r = await timed(send<Pass>(gateways[g]!, "POST", "/v1/gc?wait=1", { graceSeconds: 0 }), "gc").catch(
      (err: Error) => {
        say(`gc via g${g} failed: ${err.message.slice(0, 100)}`);
        return null;
      },
    );
    if (!r) return;
    const deleted = r.stores.reduce((n, s) => n + s.deleted, 0);
    const t = r.tombstones;
    say(
      `gc via g${g}: ${r.phase}${r.error ? ` (${r.error.slice(0, 80)})` : ""}, ${deleted} chunks deleted, ${t?.collected ?? 0} tombstones collected${t?.reason ? ` (${t.reason.slice(0, 80)})` : ""}`,
    );
    if (r.phase !== "done") return;
    counters.gcPasses++;
    counters.gcDeleted += deleted;
    counters.tombstonesCollected += t?.collected ?? 0;
    await checkAll(g, "after a gc pass");
    // A deleted image stays deleted, tombstone collected or not: no gateway lists or serves it.
    const listed = await api<{ images: { name: string }[] }>(gateways[g]!, "/v1/images").catch(() => null);
    for (const name of listed?.images.map((i) => i.name) ?? [])
      if (!images.has(name) && deletedNames.has(name))
        violations.push(`step ${step}: deleted image ${name} is listed again after a gc pass`);
  };

  // ---- the run

  try {
    say(
      `seed ${options.seed}: stores ${dataHeadHolders().join(", ")} (data), w (witness)${removeHeadHolder ? ", c to be removed" : ""}; ${gwCount} gateways; 2 replicas, min 1`,
    );
    for (const name of IMAGE_NAMES) await opCreate(0, name);
    while (step < maxSteps && Date.now() < deadline) {
      step++;
      const gis = live();
      const names = [...images.keys()];
      const gi = gis.length ? pick(gis) : -1;
      const r = random();
      if (gi < 0) {
        await undoFaults(true);
        continue;
      }
      if (names.length === 0 || r < 0.03) {
        const name = IMAGE_NAMES.find((n) => !images.has(n)) ?? `x${step}`;
        await opCreate(gi, name);
      } else if (r < 0.45) await opWrite(gi, pick(names));
      else if (r < 0.6) await opRead(gi, pick(names));
      else if (r < 0.66) await opSnapshot(gi, pick(names));
      else if (r < 0.69) {
        const withSnap = names.filter((n) => images.get(n)!.snapshots.size > 0);
        if (withSnap.length) {
          const src = pick(withSnap);
          await opCreate(gi, `c${step}`, `${src}@${pick([...images.get(src)!.snapshots.keys()])}`);
        }
      } else if (r < 0.73 && names.length > 1) await opDelete(gi, pick(names));
      else if (r < 0.76) await opStaleWrite();
      else if (r < 0.86) await opFault();
      else if (r < 0.92) await opSafe();
      else if (r < 0.94) await opMaintenance();
      else if (r < 0.96) await opGc();
      else if (r < 0.99) await opLifecycle();
      await undoFaults();
      // Keep the number of images bounded (clones add up).
      if (images.size > 6)
        await opDelete(gi, pick([...images.keys()].filter((n) => !IMAGE_NAMES.includes(n))));
    }
    checkCrashes();
    say(`faults stop after ${step} steps`);
    await undoFaults(true);
    const g = live()[0]!;
    // A drain still under way is cancelled: convergence means every store in sync.
    for (const s of (await listStores(g).catch(() => null)) ?? [])
      if (s.draining)
        await timed(send(gateways[g]!, "DELETE", `/v1/stores/${s.id}/drain`), "cancel").then(
          () => say(`store drain ${s.id} cancelled (the run ends)`),
          () => {},
        );
    const end = Date.now() + 120_000;
    let converged = false;
    while (Date.now() < end) {
      const s = await api<StoresBody>(gateways[g]!, "/v1/stores").catch(() => null);
      if (s?.stores.every((st) => st.state === "in-sync")) {
        converged = true;
        break;
      }
      await Bun.sleep(500);
    }
    if (!converged) {
      const s = await api<StoresBody>(gateways[g]!, "/v1/stores").catch(() => null);
      violations.push(
        `heal status did not converge within 120 s of the last fault: ${JSON.stringify(s?.stores.map((x) => [x.id, x.state, x.reasons]))}`,
      );
      // What to debug it with: every gateway's heal view and its last log lines.
      for (const i of live()) {
        const heal = await api<unknown>(gateways[i]!, "/v1/heal").catch((e) => String(e));
        say(`g${i} /v1/heal: ${JSON.stringify(heal)}`);
        say(`g${i} log tail:\n${gateways[i]?.output().split("\n").slice(-40).join("\n") ?? "(none)"}`);
      }
    }
    say(`heal converged: ${converged}`);
    for (const i of live()) await checkAll(i, "final");
    for (const i of live()) {
      const text = await fetch(`${gateways[i]!.url}/metrics`).then((r) => r.text());
      foldedBlocks += Number(/^blockmend_patch_stacks_folded_blocks_total (\d+)$/m.exec(text)?.[1] ?? 0);
    }
  } finally {
    for (const c of conns.values()) c.close();
    for (const s of stale) s.conn.close();
    await cluster.close();
  }
  return {
    seed: options.seed,
    steps: step,
    faults: counters.faults,
    takeovers: counters.takeovers,
    safeAnswers: counters.safeAnswers,
    safeActedUpon: counters.safeActedUpon,
    maintenanceRuns: counters.maintenanceRuns,
    lifecycleChanges: counters.lifecycle,
    drainedActedUpon: counters.drainedActedUpon,
    headHolderRemoval: !removeHeadHolder ? "none" : headHolderRemoved ? "done" : "not reached",
    acknowledgedFlushes: counters.acks,
    partialWrites: counters.partialWrites,
    gcPasses: counters.gcPasses,
    gcDeleted: counters.gcDeleted,
    tombstonesCollected: counters.tombstonesCollected,
    foldedBlocks,
    failedOps: counters.failed,
    violations,
    log,
  };
}
