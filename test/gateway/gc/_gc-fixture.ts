/** A collector over an in-process gateway's parts, with the test seams (the gateway's own has none). */
import type { GatewayCore } from "../../../gateway/gateway.ts";
import { Collector } from "../../../gateway/gc/collector.ts";

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
    hooks,
  });
}
