/**
 * Environment settings for a blockmend server process (gateway or chunk store), set in the
 * environment of the Bun process that runs it: Bun reads them at startup, so setting them
 * from inside the process has no effect. `bin/blockmend.js`, the systemd units and the
 * Dockerfile set the same values.
 *
 * - Allocator, measured on the 2-vCPU dev VM under a 1 MiB sequential NBD write load: page
 *   faults fell from ~110-190k/s to ~30k/s and throughput rose ~15% (215 -> 250 MB/s),
 *   because freed buffers are reused instead of being handed back to the kernel and faulted
 *   in (and zeroed) again. The cost: memory freed after a peak stays with the process.
 * - Bun's file I/O thread pool: by default about one thread per core, so on 2 cores two
 *   large synced segment appends (a commit's chunks going to two local file stores) held
 *   every thread, and a VM's 64 KiB read of a cached page waited behind them for up to
 *   ~200 ms (bench/at-rest.ts). With 16 threads the same read waits at most ~10-20 ms.
 */
export const GATEWAY_PROCESS_ENV = {
  /** mimalloc (Bun's allocator): never return freed pages to the OS. */
  MIMALLOC_PURGE_DELAY: "-1",
  /** JavaScriptCore: use the system malloc for its heap backing stores (ArrayBuffers). */
  Malloc: "1",
  /** Threads for file I/O: reads never queue behind a few long synced writes. */
  UV_THREADPOOL_SIZE: "16",
} as const;
