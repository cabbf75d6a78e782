/**
 * Maintenance mode: a store marked as leaving no longer counts toward `minReplicas` for
 * new commits (a draining store is leaving too, `heal/store-lifecycle.ts`), so once nothing depends on it, safe-to-remove turns true and stays true
 * until maintenance is turned off (as Ceph's `noout` and `ok-to-stop` pair up).
 *
 * Turning it on writes the cluster record, then stamps the new set of leaving stores into
 * every head (a barrier): a commit prepared before it finds the head changed, is re-checked
 * against the stamp, and must find its copies elsewhere. Commits also read the record while
 * their chunks travel, which covers images created after the barrier passed them.
 */
import { liveHead } from "../image/head.ts";
import { type HeadWriter, stampLeaving as stampHead } from "../image/head-writer.ts";
import type { Cluster } from "../replication/cluster.ts";

/** Barrier passes before giving up (each pass rescans for heads created meanwhile). */
const MAX_PASSES = 5;

/** Turns maintenance on or off for `store` and stamps every head; resolves when all carry it. */
export async function setMaintenance(
  cluster: Cluster,
  heads: HeadWriter,
  store: string,
  on: boolean,
  by: string,
): Promise<{ stamped: number }> {
  await cluster.setMaintenance(store, on, by);
  return stampLeaving(cluster, heads, `Maintenance of "${store}"`);
}

/**
 * Stamps the cluster's leaving stores (in maintenance or draining) into every head, read
 * fresh; resolves once every head carries them (the barrier above).
 */
export async function stampLeaving(
  cluster: Cluster,
  heads: HeadWriter,
  what: string,
): Promise<{ stamped: number }> {
  let stamped = 0;
  for (let pass = 0; pass < MAX_PASSES; pass++) {
    const leaving = await cluster.freshLeaving();
    const todo = [...(await heads.scan()).values()]
      .map(liveHead)
      .filter((h) => h !== null)
      .filter((h) => h.leaving.join() !== [...leaving].sort().join());
    if (todo.length === 0) return { stamped };
    for (const h of todo) {
      const { result } = await heads.change(h.name, stampHead(h.name, leaving));
      if (result) stamped++;
    }
  }
  throw new Error(`${what} recorded, but heads kept changing: run the command again`);
}
