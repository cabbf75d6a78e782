/** A collector over an in-process gateway's parts, with the test seams (the gateway's own has none). */
import type { Hash } from "../../../chunkstore/chunk-store.ts";
import type { GatewayCore } from "../../../gateway/gateway.ts";
import { Collector, versionsOf } from "../../../gateway/gc/collector.ts";
import { levelsFor, ZERO_HASH } from "../../../gateway/image/block-map.ts";
import { blockCount, liveHead } from "../../../gateway/image/head.ts";
import { changedChunks } from "../../../gateway/image/tree-diff.ts";

/** A collector over `core`'s stores, heads and register; every store counts as up. */
export function testCollector(
  core: GatewayCore,
  hooks?: ConstructorParameters<typeof Collector>[0]["hooks"],
) {
  return new Collector({
    stores: core.stores,
    heads: core.heads,
    cluster: core.cluster,
    register: core.register,
    gatewayId: core.id,
    isUp: () => true,
    settled: () => core.status.settledEpoch(),
    hooks,
  });
}

/**
 * Every chunk any live version references, walked from the heads with no skipping: the
 * tests' own oracle, independent of the collector's mark (gateway/gc/mark.ts).
 */
export async function referencedByHeads(core: GatewayCore): Promise<Set<Hash>> {
  const out = new Set<Hash>();
  for (const v of (await core.heads.scan()).values()) {
    const head = liveHead(v);
    if (!head) continue;
    for (const ver of versionsOf(head)) {
      const levels = levelsFor(Math.max(1, blockCount({ size: ver.size, chunkSize: head.chunkSize })));
      for await (const c of changedChunks((h) => core.stores.getChunk(h), ZERO_HASH, ver.root, levels))
        out.add(c.hash);
    }
  }
  return out;
}
