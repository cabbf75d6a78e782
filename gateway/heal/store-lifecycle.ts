/**
 * Adding, draining and removing stores: changes of the cluster record that every gateway
 * follows (`replication/membership.ts`), with the heal doing the moving.
 *
 * - add: the store is recorded as a data store (not a head holder) with its URL, and the
 *   placement epoch moves on. Every placement store's replica state was recorded under the
 *   old epoch, so each counts as not current until a full walk under the new placement has
 *   checked it and copied what is now placed on it (the new store: its rendezvous share;
 *   the others: nothing, rendezvous moves chunks only to the new store).
 * - drain: the store leaves the placement (epoch + 1) and is leaving like a store in
 *   maintenance (stamped into every head: a commit from a gateway that has not seen the
 *   drain yet cannot count a copy on it); the other stores' full walks copy the chunks
 *   whose placement moved off it. It is `drained` once every placement store
 *   holds every image in full under the new placement; its copies are never counted.
 *   A drain can be cancelled (epoch + 1 again: the store walks back in).
 * - remove: only a drained store (a witness holds no chunks to drain) that safe-to-remove
 *   calls safe; the record forgets it, and every head forgets its replica state. A head
 *   holder first leaves the register (`QuorumRegister.removeMember`: its refs are fenced,
 *   every key is rewritten on all the others), which needs every head holder to answer
 *   and at least two to remain; only then does the record change, so a removal stopped
 *   half way leaves a member that never answers, and running it again finishes.
 *
 * What the walks move is what the heads name (current roots and snapshots). A pinned older
 * version (a long S3 GET, a backup) that no head names is not moved: a reader of it may
 * fail once a store it was left on is removed. Acknowledged data is never at risk.
 */
import { isIdentity } from "../../chunkstore/identity.ts";
import { liveHead } from "../image/head.ts";
import type { HeadWriter } from "../image/head-writer.ts";
import { forgetStore } from "../image/head-writer.ts";
import type { QuorumRegister } from "../register/quorum-register.ts";
import type { Cluster } from "../replication/cluster.ts";
import {
  type ClusterRecord,
  type ClusterStore,
  placementEpochOf,
  placementStores,
} from "../replication/cluster-record.ts";
import type { Membership, StoreOpener } from "../replication/membership.ts";
import type { ClusterStatus } from "./cluster-status.ts";
import { stampLeaving } from "./maintenance.ts";
import { imagesNotPlaced } from "./replica-state.ts";

/** A lifecycle request refused: `status` and `code` as the HTTP API answers it. */
export class StoreLifecycleError extends Error {
  override readonly name = "StoreLifecycleError";
  readonly status: 400 | 404 | 409 | 503;
  readonly code: string;
  constructor(status: 400 | 404 | 409 | 503, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** What the lifecycle operations use. */
export interface LifecycleDeps {
  readonly cluster: Cluster;
  readonly heads: HeadWriter;
  readonly status: ClusterStatus;
  readonly membership: Membership;
  /** The register over the head holders (a head holder leaves it before the record forgets it). */
  readonly register: Pick<QuorumRegister, "removeMember" | "removalBlocker">;
  /** Opens a store by URL (absent: this gateway cannot add stores). */
  readonly open?: StoreOpener;
  readonly replicas: number;
  readonly gatewayId: string;
}

/** Store ids: as `--store ID=URL` takes them. */
const STORE_ID = /^[A-Za-z0-9_-]{1,32}$/;

/** What a lifecycle change answers. */
export interface LifecycleAnswer {
  readonly store: string;
  readonly placementEpoch: number;
  readonly placement: readonly string[];
}

function answer(store: string, record: ClusterRecord): LifecycleAnswer {
  return { store, placementEpoch: placementEpochOf(record), placement: placementStores(record) };
}

/** Adds the store at `url` as data store `id`; see the module doc. */
export async function addStore(d: LifecycleDeps, id: string, url: string): Promise<LifecycleAnswer> {
  if (!STORE_ID.test(id))
    throw new StoreLifecycleError(400, "bad_request", `Store id "${id}" must be 1-32 of A-Z a-z 0-9 _ -`);
  if (d.cluster.record.stores[id])
    throw new StoreLifecycleError(409, "store_exists", `Store "${id}" is in the cluster already`);
  if (!d.open) throw new StoreLifecycleError(409, "store_refused", "This gateway cannot open stores by URL");
  let store: Awaited<ReturnType<StoreOpener>>;
  try {
    store = await d.open(id, url);
  } catch (err) {
    throw new StoreLifecycleError(
      400,
      "bad_request",
      `Cannot use "${url}" as a store: ${(err as Error).message}`,
    );
  }
  try {
    const probe = await store.probe().catch((err) => {
      throw new StoreLifecycleError(
        503,
        "store_unavailable",
        `Store "${id}" at ${url} does not answer: ${(err as Error).message}`,
      );
    });
    if (!probe.capabilities.chunks)
      throw new StoreLifecycleError(
        409,
        "store_refused",
        `The store at ${url} holds no chunks (a witness): add a data store`,
      );
    if (!isIdentity(probe.identity))
      throw new StoreLifecycleError(
        409,
        "store_refused",
        `The store at ${url} answered with a malformed identity`,
      );
    const record = await d.cluster.update((r) => {
      if (r.stores[id])
        throw new StoreLifecycleError(409, "store_exists", `Store "${id}" is in the cluster already`);
      const twin = Object.entries(r.stores).find(([, s]) => s.identity === probe.identity);
      if (twin)
        throw new StoreLifecycleError(
          409,
          "store_refused",
          `The store at ${url} is store "${twin[0]}" already (same identity ${probe.identity}): one store counted twice would double-count its copies`,
        );
      const added: ClusterStore = {
        identity: probe.identity,
        identitySince: new Date().toISOString(),
        chunks: true,
        refs: false,
        maintenance: null,
        damaged: null,
        url,
        draining: null,
      };
      return { ...r, stores: { ...r.stores, [id]: added }, placementEpoch: placementEpochOf(r) + 1 };
    });
    await d.membership.apply(record);
    return answer(id, record);
  } finally {
    await store.close().catch(() => {});
  }
}

/** Starts (`on`) or cancels a drain of `id`; see the module doc. */
export async function drainStore(d: LifecycleDeps, id: string, on: boolean): Promise<LifecycleAnswer> {
  const record = await d.cluster.update((r) => {
    const s = r.stores[id];
    if (!s) throw new StoreLifecycleError(404, "store_not_found", `No store "${id}" in the cluster`);
    if (!s.chunks)
      throw new StoreLifecycleError(
        409,
        "store_refused",
        `Store "${id}" is a witness: it holds no chunks to drain`,
      );
    if (Boolean(s.draining) === on) return r; // already so
    if (on && placementStores(r).length - 1 < d.replicas)
      throw new StoreLifecycleError(
        409,
        "store_refused",
        `Without "${id}" ${placementStores(r).length - 1} data store(s) would remain for ${d.replicas} replicas: add a store first`,
      );
    const draining = on ? { since: new Date().toISOString(), by: d.gatewayId } : null;
    return {
      ...r,
      stores: { ...r.stores, [id]: { ...s, draining } },
      placementEpoch: placementEpochOf(r) + 1,
    };
  });
  await d.membership.apply(record);
  // A commit on a gateway that has not seen the drain yet must not count a copy on it.
  await stampLeaving(d.cluster, d.heads, `The drain of "${id}"`);
  return answer(id, record);
}

/** Removes a drained store from the cluster; see the module doc. */
export async function removeStore(
  d: LifecycleDeps,
  id: string,
): Promise<LifecycleAnswer & { headsUpdated: number; registerKeysRewritten: number }> {
  const inputs = await d.status.inputs({ probe: true });
  const s = inputs.record.stores[id];
  if (!s) throw new StoreLifecycleError(404, "store_not_found", `No store "${id}" in the cluster`);
  const registerBlocker = s.refs ? d.register.removalBlocker(id) : null;
  if (registerBlocker)
    throw new StoreLifecycleError(
      409,
      "store_refused",
      `Store "${id}" holds image heads (a register member) and cannot leave the register now: ${registerBlocker}`,
    );
  if (s.chunks && !s.draining)
    throw new StoreLifecycleError(
      409,
      "store_refused",
      `Store "${id}" is not drained: run "store drain ${id}" first`,
    );
  const pending = imagesNotPlaced(inputs);
  if (s.chunks && pending.length > 0)
    throw new StoreLifecycleError(
      409,
      "store_refused",
      `Store "${id}" is still draining: ${pending.length} image(s) not yet held in full by the other stores (${pending.slice(0, 5).join(", ")})`,
    );
  const safety = await d.status.safeToRemove(id);
  if (!safety.safe)
    throw new StoreLifecycleError(
      409,
      "store_refused",
      `Store "${id}" is not safe to remove: ${safety.reasons.join("; ")}`,
    );
  let registerKeysRewritten = 0;
  if (s.refs) {
    try {
      registerKeysRewritten = (await d.register.removeMember(id, d.gatewayId)).rewritten;
    } catch (err) {
      throw new StoreLifecycleError(
        503,
        "register_unavailable",
        `Store "${id}" could not leave the register (nothing is lost; run the removal again): ${(err as Error).message}`,
      );
    }
  }
  const record = await d.cluster.update((r) => {
    if (!r.stores[id]) return r;
    const { [id]: _gone, ...rest } = r.stores;
    return { ...r, stores: rest };
  });
  await d.membership.apply(record);
  // Its replica state in the heads would keep old versions from garbage collection.
  let headsUpdated = 0;
  for (const [name, value] of await d.heads.scan()) {
    const head = liveHead(value);
    if (!head || (!head.synced[id] && !head.tails[id])) continue;
    const { result } = await d.heads
      .change(name, forgetStore(name, head.incarnation, id))
      .catch(() => ({ result: false }));
    if (result) headsUpdated++;
  }
  await stampLeaving(d.cluster, d.heads, `The removal of "${id}"`);
  return { ...answer(id, record), headsUpdated, registerKeysRewritten };
}
