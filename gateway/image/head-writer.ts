/**
 * The one path by which heads advance. Every change of a head (create, clone, delete,
 * takeover, a content commit, snapshots, a heal's "in sync", a maintenance stamp) is a
 * pure function of the current head, run by the register against the value it holds
 * (gateway/register/), so a change computed from a stale head is never written. This file
 * holds the bookkeeping every change shares (generation, commit ids, how replica state
 * carries over) and the changes themselves.
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { ImageDeletedError, ImageExistsError, ImageNotFoundError, StaleEpochError } from "../errors.ts";
import { keep, type Register, write } from "../register/register.ts";
import { ZERO_HASH } from "./block-map.ts";
import {
  decodeHead,
  HEAD_PREFIX,
  type Head,
  type HeadValue,
  headKey,
  heldVersion,
  holdsCurrent,
  isTombstone,
  liveHead,
  RECENT_COMMITS,
  type Snapshot,
  type SyncedVersion,
  type Tail,
  type Tombstone,
} from "./head.ts";

/** What a change decided: the next head (bookkeeping is added by the writer), or keep. */
export type HeadDecision<T> =
  | { readonly next: NextHead; readonly result: T }
  | { readonly keep: true; readonly result: T };

/** A head or tombstone without the fields the writer stamps. */
export type NextHead =
  | Omit<Head, "generation" | "commitId" | "recentCommits" | "updatedAt">
  | Omit<Tombstone, "generation" | "commitId" | "recentCommits">;

/** A change: the current head (null: none ever) to a decision. Pure; may run several times. */
export type HeadChange<T> = (current: HeadValue | null, commitId: string) => HeadDecision<T>;

/** How a commit's chunk puts went, per store (from the store set). */
export interface PutReport {
  /** Stores that received every chunk placed on them, with the identity the puts were made to. */
  readonly complete: ReadonlyMap<string, string>;
  /** The placement epoch the chunks were placed under ("placed on them" means under it). */
  readonly placementEpoch: number;
  /** True if every chunk has at least `min` copies on stores outside `leaving`. */
  enoughCopies(leaving: ReadonlySet<string>, min: number): boolean;
}

/**
 * A garbage collection passed a barrier after this commit's chunks were put: some of them
 * may be condemned, so they must be put again (which revives them) before the head moves.
 */
export class GcBarrierError extends Error {
  override readonly name = "GcBarrierError";
  readonly epoch: number;
  /** The head itself is unconfirmed (gcPending): confirm it ({@link confirmHead}) first. */
  readonly pending: boolean;
  constructor(image: string, epoch: number, pending = false) {
    super(
      pending
        ? `Image "${image}" has content not yet confirmed against garbage collection (barrier ${epoch})`
        : `Commit of "${image}" must put its chunks again: garbage collection barrier ${epoch} passed since`,
    );
    this.epoch = epoch;
    this.pending = pending;
  }
}

/** A commit could not count enough copies once stores in maintenance were left out. */
export class NeedMoreCopiesError extends Error {
  override readonly name = "NeedMoreCopiesError";
  readonly leaving: ReadonlySet<string>;
  constructor(image: string, leaving: ReadonlySet<string>) {
    super(
      `Commit of "${image}" needs more copies outside stores in maintenance (${[...leaving].join(", ")})`,
    );
    this.leaving = leaving;
  }
}

/** Reads and changes heads in the register. */
export class HeadWriter {
  readonly #register: Register;
  /** This gateway's id: the owner it writes into heads it takes over, and into tombstones. */
  readonly gatewayId: string;

  constructor(register: Register, gatewayId: string) {
    this.#register = register;
    this.gatewayId = gatewayId;
  }

  /** The head or tombstone of `name`, or null, read linearizably. */
  async read(name: string): Promise<HeadValue | null> {
    const v = await this.#register.read(headKey(name));
    return v === null ? null : decodeHead(v);
  }

  /** Every image's head or tombstone, by name. */
  async scan(): Promise<Map<string, HeadValue>> {
    const out = new Map<string, HeadValue>();
    for (const [key, v] of await this.#register.scan(HEAD_PREFIX))
      out.set(key.slice(HEAD_PREFIX.length), decodeHead(v));
    return out;
  }

  /**
   * Removes the tombstone of `name` from the register for good, if it was deleted at or
   * before `deletedBy` (ms since the epoch). Safe against every gateway: the register makes
   * sure no proposal from before can bring the deleted head back (quorum-register.ts). A
   * re-create then starts over at generation 1, with a new incarnation as always. True once
   * gone; false for a live head, a younger tombstone, or a register that keeps every key.
   */
  async collectTombstone(name: string, deletedBy: number): Promise<boolean> {
    if (!this.#register.collect) return false;
    return this.#register.collect(headKey(name), (v) => {
      if (v === null) return true;
      try {
        const h = decodeHead(v);
        return isTombstone(h) && Date.parse(h.deletedAt) <= deletedBy;
      } catch {
        return false; // damage is never collected
      }
    });
  }

  /** Why no tombstone can be collected now (a head holder down, an older store), or null. */
  tombstoneBlocker(): string | null {
    if (!this.#register.collect) return "this register keeps every key";
    return this.#register.collectBlocker?.() ?? null;
  }

  /**
   * THE way a head advances: runs `change` against the current head in the register and
   * writes its decision with the generation bumped, a new commit id (or `commitId`, for a
   * retry that must recognise an earlier attempt) and the updated time. Resolves with the
   * change's result and the head as it now is (written, or kept).
   */
  change<T>(
    name: string,
    change: HeadChange<T>,
    commitId: string = crypto.randomUUID(),
  ): Promise<{ result: T; head: HeadValue | null }> {
    return this.#register.update(headKey(name), (raw) => {
      const current = raw === null ? null : decodeHead(raw);
      const decision = change(current, commitId);
      if ("keep" in decision) return keep({ result: decision.result, head: current });
      const generation = (current?.generation ?? 0) + 1;
      const recentCommits = [...(current?.recentCommits ?? []), commitId].slice(-RECENT_COMMITS);
      const stamped: HeadValue = isTombstoneNext(decision.next)
        ? { ...decision.next, generation, commitId, recentCommits }
        : { ...decision.next, generation, commitId, recentCommits, updatedAt: new Date().toISOString() };
      return write(stamped, { result: decision.result, head: stamped });
    });
  }
}

function isTombstoneNext(n: NextHead): n is Omit<Tombstone, "generation" | "commitId" | "recentCommits"> {
  return (n as Tombstone).deleted === true;
}

// ---------------------------------------------------------------------------
// Replica state across a change.

/** Replica state after a change that moved no data: what was held in full still is. */
function carriedSynced(current: Head): Record<string, SyncedVersion> {
  const next = current.generation + 1;
  const out: Record<string, SyncedVersion> = {};
  for (const [id, s] of Object.entries(current.synced))
    out[id] = s.generation === current.generation ? { ...s, generation: next } : s;
  return out;
}

/**
 * Replica state after a content commit: a store holds the new version if it held the
 * previous one (for the identity the puts went to) and received every chunk placed on it;
 * a heal's tail survives only where the store received everything too.
 */
function advancedSynced(
  current: Head,
  version: { root: Hash; size: number },
  put: PutReport,
): { synced: Record<string, SyncedVersion>; tails: Record<string, Tail> } {
  const generation = current.generation + 1;
  const placement = put.placementEpoch;
  const synced: Record<string, SyncedVersion> = { ...current.synced };
  for (const [id, identity] of put.complete) {
    const s = current.synced[id];
    // Held under another placement: what this put placed on it is not all it should hold.
    if (
      s &&
      s.generation === current.generation &&
      s.identity === identity &&
      (s.placement ?? 0) === placement
    )
      synced[id] = { generation, root: version.root, size: version.size, identity, placement };
  }
  const tails: Record<string, Tail> = {};
  for (const [id, t] of Object.entries(current.tails))
    if (put.complete.get(id) === t.identity && (t.placement ?? 0) === placement) tails[id] = t;
  return { synced, tails };
}

/** The live head of the expected incarnation, or the error a stale caller must see. */
function expectLive(current: HeadValue | null, name: string, incarnation: string): Head {
  if (current === null) throw new ImageNotFoundError(name);
  if (isTombstone(current) || current.incarnation !== incarnation)
    throw new ImageDeletedError(
      name,
      incarnation,
      isTombstone(current) ? `deleted at ${current.deletedAt}` : "another image of that name exists now",
    );
  return current;
}

/** Fields every change copies over, minus the stamped ones. */
function base(h: Head): Omit<Head, "generation" | "commitId" | "recentCommits" | "updatedAt"> {
  const { generation: _g, commitId: _c, recentCommits: _r, updatedAt: _u, ...rest } = h;
  return rest;
}

// ---------------------------------------------------------------------------
// The changes.

/** Creates an image over nothing or a tombstone; every store "holds" the empty image. */
export function createHead(params: {
  name: string;
  size: number;
  chunkSize: number;
  root?: Hash;
  /** Per data store: the identity (and placement epoch) to record it in sync for (empty root), or what the clone inherits. */
  synced: Readonly<Record<string, { identity: string; placement: number }>>;
  clonedFrom?: string;
  /** The cluster's gcEpoch, read before any chunk of the head's content was put (or read, for a clone). */
  gcObserved: number;
}): HeadChange<void> {
  return (current, commitId) => {
    if (current && !isTombstone(current)) {
      if (current.recentCommits.includes(commitId)) return { keep: true, result: undefined };
      throw new ImageExistsError(params.name);
    }
    const generation = (current?.generation ?? 0) + 1;
    const root = params.root ?? ZERO_HASH;
    const now = new Date().toISOString();
    const next: NextHead = {
      format: 2,
      name: params.name,
      incarnation: crypto.randomUUID(),
      size: params.size,
      chunkSize: params.chunkSize,
      root,
      epoch: (current?.epoch ?? 0) + 1,
      owner: null,
      synced: Object.fromEntries(
        Object.entries(params.synced).map(([id, s]) => [
          id,
          { generation, root, size: params.size, identity: s.identity, placement: s.placement },
        ]),
      ),
      tails: {},
      snapshots: {},
      leaving: [],
      createdAt: now,
      ...(params.clonedFrom ? { clonedFrom: params.clonedFrom } : {}),
      // Unconfirmed until its creator reads the barrier again (confirmHead): a collector
      // that listed the heads before this one existed has not stamped it.
      gcEpoch: params.gcObserved,
      gcPending: params.gcObserved,
    };
    return { next, result: undefined };
  };
}

/**
 * What a clone of `source@snapshot` inherits: the stores that held that snapshot (never
 * "all synced"), minus those that missed the extra map pages a bigger clone needs.
 */
export function inheritedSynced(
  source: Head,
  snapshot: Snapshot,
  identities: ReadonlyMap<string, string>,
  placement: number,
  pagesPut: PutReport | null,
): Record<string, { identity: string; placement: number }> {
  const out: Record<string, { identity: string; placement: number }> = {};
  for (const [id, identity] of identities) {
    const held = heldVersion(source, id, { identity, placement });
    if (!held || snapshot.generation >= held.generation) continue;
    if (pagesPut && (pagesPut.placementEpoch !== placement || pagesPut.complete.get(id) !== identity))
      continue;
    out[id] = { identity, placement };
  }
  return out;
}

/** Deletes an image: a tombstone that only a create replaces. `incarnation`: only that one. */
export function deleteHead(name: string, by: string, incarnation?: string): HeadChange<void> {
  return (current, commitId) => {
    if (current && isTombstone(current) && current.recentCommits.includes(commitId))
      return { keep: true, result: undefined };
    const head = liveHead(current);
    if (!head) throw new ImageNotFoundError(name);
    if (incarnation !== undefined && head.incarnation !== incarnation)
      throw new ImageDeletedError(name, incarnation);
    const next = {
      format: 2 as const,
      name,
      deleted: true as const,
      incarnation: head.incarnation,
      epoch: head.epoch + 1,
      deletedAt: new Date().toISOString(),
      deletedBy: by,
    };
    return { next, result: undefined };
  };
}

/**
 * Takes ownership for `gateway` (its first write): the epoch moves on, and the previous owner
 * is fenced. Resolves with the previous owner.
 */
export function takeOver(name: string, incarnation: string, gateway: string): HeadChange<string | null> {
  return (current, commitId) => {
    const head = expectLive(current, name, incarnation);
    if (head.recentCommits.includes(commitId)) return { keep: true, result: null };
    const next = { ...base(head), epoch: head.epoch + 1, owner: gateway, synced: carriedSynced(head) };
    return { next, result: head.owner };
  };
}

/** A content commit by the owner: a new root (and size), with the chunk puts that made it. */
export function commitContent(params: {
  name: string;
  incarnation: string;
  epoch: number;
  owner: string;
  /** The version the commit was computed from. */
  base: { root: Hash; size: number };
  /** Commit ids of this image's earlier attempts whose outcome was unknown (their content is in this one). */
  ownAttempts: ReadonlySet<string>;
  root: Hash;
  size: number;
  put: PutReport;
  /** Stores in maintenance per the cluster record read during this commit. */
  leaving: ReadonlySet<string>;
  minReplicas: number;
  /** The cluster record's gcEpoch, read before the first chunk was put. */
  gcEpoch: number;
}): HeadChange<void> {
  return (current, commitId) => {
    const head = expectLive(current, params.name, params.incarnation);
    if (head.gcPending !== undefined) throw new GcBarrierError(params.name, head.gcPending, true);
    if ((head.gcEpoch ?? 0) > params.gcEpoch) throw new GcBarrierError(params.name, head.gcEpoch ?? 0);
    if (head.epoch !== params.epoch || head.owner !== params.owner)
      throw new StaleEpochError(params.name, params.epoch, head.epoch, head.owner);
    if (head.recentCommits.includes(commitId)) return { keep: true, result: undefined };
    const fromBase = head.root === params.base.root && head.size === params.base.size;
    if (!fromBase && !params.ownAttempts.has(head.commitId))
      throw new StaleEpochError(
        params.name,
        params.epoch,
        head.epoch,
        `${head.owner} (the image changed under this gateway)`,
      );
    const leaving = new Set([...head.leaving, ...params.leaving]);
    if (!params.put.enoughCopies(leaving, params.minReplicas))
      throw new NeedMoreCopiesError(params.name, leaving);
    const { synced, tails } = advancedSynced(head, params, params.put);
    const next = {
      ...base(head),
      root: params.root,
      size: params.size,
      synced,
      tails,
      leaving: [...leaving].sort(),
    };
    return { next, result: undefined };
  };
}

/**
 * An import (an S3 upload) becomes the image's content: a new image, or the new version of
 * an existing one, whose chunks are all on the stores already. The importing gateway
 * becomes the owner (a gateway holding the old version is fenced); snapshots stay; a store
 * is in sync afterwards only if it held everything before and received all of the import.
 * A new image (or one still unconfirmed) comes out unconfirmed: the importer then runs
 * {@link confirmHead}.
 */
export function importContent(params: {
  name: string;
  root: Hash;
  size: number;
  chunkSize: number;
  owner: string;
  put: PutReport;
  leaving: ReadonlySet<string>;
  minReplicas: number;
  /** The cluster record's gcEpoch, read before the import's first chunk was put. */
  gcEpoch: number;
  /** Checked against the current live head (null: none): throws to refuse (a condition, an attached image). */
  check?: (current: Head | null) => void;
}): HeadChange<void> {
  return (current, commitId) => {
    if (current && !isTombstone(current) && current.recentCommits.includes(commitId))
      return { keep: true, result: undefined };
    const head = liveHead(current);
    params.check?.(head);
    if (!params.put.enoughCopies(new Set([...(head?.leaving ?? []), ...params.leaving]), params.minReplicas))
      throw new NeedMoreCopiesError(params.name, params.leaving);
    if (!head) {
      const created = createHead({
        name: params.name,
        size: params.size,
        chunkSize: params.chunkSize,
        root: params.root,
        synced: Object.fromEntries(
          [...params.put.complete].map(([id, identity]) => [
            id,
            { identity, placement: params.put.placementEpoch },
          ]),
        ),
        gcObserved: params.gcEpoch,
      })(current, commitId);
      if ("keep" in created) return created;
      return { next: { ...created.next, owner: params.owner } as NextHead, result: undefined };
    }
    // A confirmed head was stamped by every barrier since it existed: checked here. An
    // unconfirmed one may not have been: it stays unconfirmed, now for this content.
    if (head.gcPending === undefined && (head.gcEpoch ?? 0) > params.gcEpoch)
      throw new GcBarrierError(params.name, head.gcEpoch ?? 0);
    if (head.chunkSize !== params.chunkSize)
      throw new RangeError(
        `Image "${params.name}" has chunk size ${head.chunkSize}; the import used ${params.chunkSize}: upload it again`,
      );
    const { synced, tails } = advancedSynced(head, params, params.put);
    const next = {
      ...base(head),
      root: params.root,
      size: params.size,
      epoch: head.epoch + 1,
      owner: params.owner,
      synced,
      tails,
      ...(head.gcPending === undefined ? {} : { gcPending: params.gcEpoch }),
    };
    return { next, result: undefined };
  };
}

/**
 * Confirms an unconfirmed head against `fresh`, the cluster's gcEpoch read after the head
 * was written: no barrier passed since its content was put (or the content is empty), so
 * every collector from now on either saw the head or stamps it. Throws GcBarrierError when
 * one did pass: the content must be put again ({@link revivedHead}) first. Resolves with
 * the head's incarnation check done; keeps a head that is confirmed already.
 */
export function confirmHead(name: string, incarnation: string, fresh: number): HeadChange<void> {
  return (current) => {
    const head = expectLive(current, name, incarnation);
    if (head.gcPending === undefined) return { keep: true, result: undefined };
    if (fresh > head.gcPending && head.root !== ZERO_HASH) throw new GcBarrierError(name, fresh);
    const { gcPending: _p, ...rest } = base(head);
    return {
      next: { ...rest, gcEpoch: Math.max(head.gcEpoch ?? 0, fresh), synced: carriedSynced(head) },
      result: undefined,
    };
  };
}

/** An unconfirmed head's content was put again after barrier `observed` was read: it now counts from there. */
export function revivedHead(name: string, incarnation: string, observed: number): HeadChange<void> {
  return (current) => {
    const head = expectLive(current, name, incarnation);
    if (head.gcPending === undefined || head.gcPending >= observed) return { keep: true, result: undefined };
    return { next: { ...base(head), gcPending: observed, synced: carriedSynced(head) }, result: undefined };
  };
}

/**
 * Garbage collection's barrier: stamps `epoch` into the head, so that a content commit
 * whose chunks were put before it (and may be condemned) is made to put them again.
 */
export function stampGc(name: string, epoch: number): HeadChange<boolean> {
  return (current) => {
    const head = liveHead(current);
    if (!head || (head.gcEpoch ?? 0) >= epoch) return { keep: true, result: false };
    return { next: { ...base(head), gcEpoch: epoch, synced: carriedSynced(head) }, result: true };
  };
}

/** Freezes the current committed version as snapshot `snapshot` (any gateway; no takeover). */
export function addSnapshot(name: string, incarnation: string, snapshot: string): HeadChange<void> {
  return (current, commitId) => {
    const head = expectLive(current, name, incarnation);
    if (head.recentCommits.includes(commitId)) return { keep: true, result: undefined };
    if (head.snapshots[snapshot]) throw new ImageExistsError(`${name}@${snapshot}`);
    const frozen: Snapshot = {
      root: head.root,
      size: head.size,
      generation: head.generation,
      createdAt: new Date().toISOString(),
    };
    const next = {
      ...base(head),
      snapshots: { ...head.snapshots, [snapshot]: frozen },
      synced: carriedSynced(head),
    };
    return { next, result: undefined };
  };
}

/** Removes snapshot `snapshot` (its chunks stay until garbage collection). */
export function removeSnapshot(name: string, incarnation: string, snapshot: string): HeadChange<void> {
  return (current, commitId) => {
    const head = expectLive(current, name, incarnation);
    if (head.recentCommits.includes(commitId)) return { keep: true, result: undefined };
    const { [snapshot]: gone, ...rest } = head.snapshots;
    if (!gone) throw new ImageNotFoundError(`${name}@${snapshot}`);
    const next = { ...base(head), snapshots: rest, synced: carriedSynced(head) };
    return { next, result: undefined };
  };
}

/**
 * A heal begins on `store` (for `identity`): from the next generation on, commits record
 * whether each reached it in full. Resolves with the generation the tail starts at, or
 * null if the store holds the current version already (nothing to heal).
 */
export function startTail(
  name: string,
  incarnation: string,
  store: string,
  now: { identity: string; placement: number },
): HeadChange<number | null> {
  return (current) => {
    const head = liveHead(current);
    if (!head || head.incarnation !== incarnation) return { keep: true, result: null };
    if (holdsCurrent(head, store, now)) return { keep: true, result: null };
    const t = head.tails[store];
    if (t && t.identity === now.identity && (t.placement ?? 0) === now.placement)
      return { keep: true, result: t.from };
    const from = head.generation + 1;
    const next = {
      ...base(head),
      synced: carriedSynced(head),
      tails: { ...head.tails, [store]: { from, identity: now.identity, placement: now.placement } },
    };
    return { next, result: from };
  };
}

/**
 * A heal of `store` copied everything of the head at `generation` (its root and every
 * snapshot): with the tail intact since then, the store holds the current version. True if
 * recorded; false if the tail broke (a commit missed the store): heal again.
 */
export function markSynced(
  name: string,
  incarnation: string,
  store: string,
  now: { identity: string; placement: number },
  generation: number,
): HeadChange<boolean> {
  return (current) => {
    const head = liveHead(current);
    if (!head || head.incarnation !== incarnation) return { keep: true, result: false };
    const t = head.tails[store];
    if (!t || t.identity !== now.identity || (t.placement ?? 0) !== now.placement || t.from > generation)
      return { keep: true, result: false };
    const { [store]: _done, ...tails } = head.tails;
    const synced = carriedSynced(head);
    synced[store] = {
      generation: head.generation + 1,
      root: head.root,
      size: head.size,
      identity: now.identity,
      placement: now.placement,
    };
    return { next: { ...base(head), synced, tails }, result: true };
  };
}

/**
 * Stamps the set of stores in maintenance into the head. A commit prepared before a store
 * entered maintenance then finds the head changed and is re-checked against the stamp, so
 * once every head carries it no commit can count that store (safe-to-remove relies on it).
 */
export function stampLeaving(name: string, leaving: ReadonlySet<string>): HeadChange<boolean> {
  return (current) => {
    const head = liveHead(current);
    if (!head) return { keep: true, result: false };
    const sorted = [...leaving].sort();
    if (sorted.join() === [...head.leaving].sort().join()) return { keep: true, result: false };
    return { next: { ...base(head), leaving: sorted, synced: carriedSynced(head) }, result: true };
  };
}

/** A store left the cluster: its replica state and tail go from the head (they would keep old versions alive). */
export function forgetStore(name: string, incarnation: string, store: string): HeadChange<boolean> {
  return (current) => {
    const head = liveHead(current);
    if (!head || head.incarnation !== incarnation) return { keep: true, result: false };
    if (!head.synced[store] && !head.tails[store]) return { keep: true, result: false };
    const { [store]: _synced, ...synced } = carriedSynced(head);
    const { [store]: _tail, ...tails } = head.tails;
    return { next: { ...base(head), synced, tails }, result: true };
  };
}
