/**
 * Allocator settings for a gateway process, set in the environment of the Bun process
 * that runs it (they are read at startup). Measured on the 2-vCPU dev VM under a 1 MiB
 * sequential NBD write load: page faults fell from ~110-190k/s to ~30k/s and throughput
 * rose ~15% (215 -> 250 MB/s), because freed buffers are reused instead of being handed
 * back to the kernel and faulted in (and zeroed) again. The cost: memory freed after a
 * peak stays with the process. `bin/blockmend.js` sets the same values.
 */
export const GATEWAY_ALLOCATOR_ENV = {
  /** mimalloc (Bun's allocator): never return freed pages to the OS. */
  MIMALLOC_PURGE_DELAY: "-1",
  /** JavaScriptCore: use the system malloc for its heap backing stores (ArrayBuffers). */
  Malloc: "1",
} as const;
