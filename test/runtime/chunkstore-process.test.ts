/**
 * The chunk store conformance suite against real `blockmend chunkstore` processes (a
 * file store behind the server, one process per fresh store), so it proves the server
 * on whichever runtime runs the processes: Bun, or Deno with BLOCKMEND_TEST_RUNTIME=deno
 * (scripts/test.sh runs it both ways). Reopen restarts the process with SIGTERM, which
 * also proves the graceful stop keeps every acknowledged chunk and ref.
 * No `corrupt` target: the process's files are the file backend's own test; the
 * in-process http targets in test/chunkstore/http-store.test.ts cover corrupt copies.
 */
import { afterAll, expect, test } from "bun:test";
import { readlinkSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import type { ChunkStore } from "../../chunkstore/chunk-store.ts";
import { HttpStore } from "../../chunkstore/http-store.ts";
import { describeConformance } from "../chunkstore/conformance.ts";
import { killAll, type StartedProcess, startStoreProcess, TEST_RUNTIME } from "../support/processes.ts";

const dirs: string[] = [];
const servers = new WeakMap<ChunkStore, { server: StartedProcess; dir: string }>();
async function cleanup(): Promise<void> {
  await killAll();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
}
afterAll(cleanup);

async function openAt(dir: string): Promise<ChunkStore> {
  const server = await startStoreProcess(dir);
  const client = await HttpStore.open(server.url);
  servers.set(client, { server, dir });
  return client;
}

describeConformance(`blockmend chunkstore process on ${TEST_RUNTIME}`, {
  open: async () => {
    const dir = await mkdtemp(join(tmpdir(), "blockmend-store-proc-"));
    dirs.push(dir);
    return openAt(dir);
  },
  reopen: async (store) => {
    const { server, dir } = servers.get(store)!;
    await store.close();
    await server.kill("SIGTERM");
    return openAt(dir);
  },
  cleanup,
});

test(`the chunk store processes really run on ${TEST_RUNTIME}`, async () => {
  const dir = await mkdtemp(join(tmpdir(), "blockmend-store-proc-"));
  dirs.push(dir);
  const server = await startStoreProcess(dir);
  // The executable of the process that listens, not of a wrapper in front of it.
  const exe = basename(readlinkSync(`/proc/${server.proc.pid}/exe`));
  expect(exe).toBe(TEST_RUNTIME === "deno" ? "deno" : "bun.exe");
  // The PID line follows the URL line that startStoreProcess waited for.
  const deadline = Date.now() + 10_000;
  while (!server.output().includes("running as pid") && Date.now() < deadline) await Bun.sleep(20);
  expect(server.output()).toContain(`running as pid ${server.proc.pid}`);
});
