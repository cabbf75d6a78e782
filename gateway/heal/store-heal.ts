/**
 * One heal of one store (the scheduler, `heal-scheduler.ts`, decides when and holds the
 * lease): known damaged chunks first, each replaced from a replica; then, for each image
 * the store does not hold in full under the placement now, a tail, a copy of what it lacks
 * (`heal-planner.ts`), and the mark in sync, which holds only over an unbroken tail.
 */
import { ImageDeletedError, ImageNotFoundError } from "../errors.ts";
import { referencedChunks } from "../gc/mark.ts";
import { type Head, heldVersion, holdsCurrent, liveHead } from "../image/head.ts";
import type { HeadWriter } from "../image/head-writer.ts";
import { markSynced, startTail } from "../image/head-writer.ts";
import type { Register } from "../register/register.ts";
import type { Cluster } from "../replication/cluster.ts";
import type { StoreHealth } from "../replication/store-health.ts";
import type { StoreSet } from "../replication/store-set.ts";
import type { CopyEngine } from "./copy-engine.ts";
import { missingChunks } from "./heal-planner.ts";
import type { HealThrottle } from "./throttle.ts";

/** Rounds of (tail, copy, mark) for one image before giving it up for this pass. */
const MAX_ROUNDS = 20;

/** Per-image detail of a heal. */
export interface ImageHealProgress {
  image: string;
  fromGeneration: number;
  toGeneration: number;
  missingChunks: number;
  copiedChunks: number;
  done: boolean;
}

/** A heal of one store, as every gateway can show it. */
export interface HealProgress {
  store: string;
  /** The gateway running it. */
  gateway: string;
  startedAt: string;
  finishedAt: string | null;
  missingBytes: number;
  copiedBytes: number;
  /** Bytes per second copied over the last seconds (the ETA's rate; absent before any copy). */
  rateBytesPerSecond?: number;
  missingChunks: number;
  copiedChunks: number;
  /** Chunks that no store had a good copy of (data loss). */
  lostChunks: number;
  lastError: string | null;
  images: ImageHealProgress[];
}

/** What a heal (and its scheduler) needs. */
export interface HealDeps {
  readonly heads: HeadWriter;
  readonly cluster: Cluster;
  readonly stores: StoreSet;
  readonly health: StoreHealth;
  readonly register: Register;
  readonly engine: CopyEngine;
  readonly throttle: HealThrottle;
  readonly gatewayId: string;
  readonly log: (line: string) => void;
}

/**
 * Heals store `id` once, recording progress in `p`, while `proceed()` holds; `healed` is
 * told every batch of bytes copied. Resolves when done or stopped; throws on data loss.
 */
export async function healStore(
  d: HealDeps,
  id: string,
  p: HealProgress,
  proceed: () => boolean,
  healed: (bytes: number) => void,
): Promise<void> {
  const identity = d.cluster.identity(id);
  if (!identity) throw new Error(`store "${id}" has no recorded identity`);
  const damage = d.cluster.record.stores[id]?.damaged ?? null;
  if (damage && damage.chunks.length > 0) {
    // Known bad copies first: each replaced from a replica, then cleared in the record.
    const repaired: string[] = [];
    const unrepairable: string[] = [];
    for (const hash of damage.chunks) {
      if (!proceed()) break;
      if (await d.engine.repair(id, hash, true)) repaired.push(hash);
      else unrepairable.push(hash);
    }
    // No good copy anywhere: a loss if a version needs it; garbage (overwritten, then
    // collected, after a read or a heal found it missing) if none does.
    if (unrepairable.length > 0 && proceed()) {
      const referenced = await referencedChunks(d);
      for (const hash of unrepairable) {
        if (referenced.has(hash)) p.lostChunks++;
        else {
          repaired.push(hash);
          d.log(
            `heal of ${id}: chunk ${hash} recorded damaged there is referenced by no version (garbage): record cleared`,
          );
        }
      }
    }
    if (repaired.length) await d.cluster.clearDamage(id, repaired);
  }
  // Damage beyond the list: nothing is known of where it is, so check everything.
  const fullWalk = (damage?.overflow ?? 0) > 0;
  for (let pass = 0; pass < 3 && proceed(); pass++) {
    const placement = d.stores.view.epoch;
    const heads = [...(await d.heads.scan()).values()]
      .map(liveHead)
      .filter((h): h is Head => h !== null)
      .filter((h) => fullWalk || !holdsCurrent(h, id, { identity, placement }));
    if (heads.length === 0) break;
    for (const head of heads) {
      if (!proceed()) break;
      await healImage(d, id, identity, head, p, proceed, fullWalk, healed);
    }
    if (fullWalk) break;
  }
  if (fullWalk && proceed() && p.lostChunks === 0) await d.cluster.clearDamage(id, [], true);
}

/**
 * Copies what store `id` lacks of one image and records it in sync. `fullWalk`: check
 * every chunk (damage beyond the list), even where the head says the store holds it.
 */
async function healImage(
  d: HealDeps,
  id: string,
  identity: string,
  first: Head,
  p: HealProgress,
  proceed: () => boolean,
  fullWalk: boolean,
  healed: (bytes: number) => void,
): Promise<void> {
  const status: ImageHealProgress = {
    image: first.name,
    fromGeneration: first.synced[id]?.generation ?? 0,
    toGeneration: first.generation,
    missingChunks: 0,
    copiedChunks: 0,
    done: false,
  };
  p.images.push(status);
  const { name, incarnation } = first;
  try {
    for (let round = 0; round < MAX_ROUNDS && proceed(); round++) {
      // One placement for the round: the tail, the walk and the mark all use it. After the
      // store set changed, what the store held under the old one counts as nothing: a full walk.
      const view = d.stores.view;
      const now = { identity, placement: view.epoch };
      // null: the store holds the current version already; only a full walk goes on then.
      const { result: from } = await d.heads.change(name, startTail(name, incarnation, id, now));
      if (from === null && !fullWalk) {
        status.done = true;
        return;
      }
      const head = liveHead(await d.heads.read(name));
      if (!head || head.incarnation !== incarnation) return; // deleted meanwhile: nothing to hold
      status.toGeneration = head.generation;
      const held = fullWalk ? null : heldVersion(head, id, now);
      const missing = await missingChunks(d.stores, id, head, held, view);
      status.missingChunks += missing.length;
      p.missingChunks += missing.length;
      p.missingBytes += missing.reduce((a, m) => a + m.estimate, 0);
      const result = await d.engine.copy(id, missing, {
        proceed,
        onBatch: (chunks, bytes) => {
          status.copiedChunks += chunks;
          p.copiedChunks += chunks;
          p.copiedBytes += bytes;
          healed(bytes);
        },
      });
      if (result.lost.length > 0) {
        // The head moved on meanwhile (and a collection took the old version's chunks):
        // not a loss, go round again with the new head.
        const now = liveHead(await d.heads.read(name));
        if (now && now.incarnation === incarnation && now.generation !== head.generation) continue;
        p.lostChunks += result.lost.length;
        throw new Error(
          `${result.lost.length} chunk(s) of image "${name}" have no good copy on any store (first: ${result.lost[0]}): data loss`,
        );
      }
      if (result.copiedChunks < missing.length) return; // stopped (lease, store down): the next tick resumes
      if (from === null) {
        status.done = true; // a full walk of an image the store already held: checked
        return;
      }
      const { result: marked } = await d.heads.change(
        name,
        markSynced(name, incarnation, id, now, head.generation),
      );
      if (marked) {
        status.done = true;
        return;
      }
      // A commit missed the store during the copy (its tail broke): go round again.
    }
  } catch (err) {
    if (err instanceof ImageNotFoundError || err instanceof ImageDeletedError) return;
    throw err;
  }
}
