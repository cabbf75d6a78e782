/**
 * Replication with chunk store servers as separate processes: every chunk lands on
 * `replicas` stores, and with one store killed, reads still succeed and writes go on.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HttpStore } from "../../../chunkstore/http-store.ts";
import { killAll, startBlockmend, startGatewayProcess } from "../../support/processes.ts";
import { requireTools, run, runOk } from "../../support/tools.ts";

const MiB = 1024 ** 2;

afterAll(killAll);

test("each chunk is on exactly 2 of 3 store processes; killing one leaves every byte readable", async () => {
  requireTools("qemu-img", "qemu-io");
  const dir = await mkdtemp(join(tmpdir(), "blockmend-repl-"));
  try {
    const stores = await Promise.all(
      ["a", "b", "c"].map((id) =>
        startBlockmend(["chunkstore", "--dir", join(dir, id), "--listen", "127.0.0.1:0"]),
      ),
    );
    const gw = await startGatewayProcess({ a: stores[0]!.url, b: stores[1]!.url, c: stores[2]!.url });
    const nbd = gw.nbd;
    const res = await fetch(`${gw.url}/v1/images`, {
      method: "POST",
      body: JSON.stringify({ name: "r", size: 32 * MiB }),
      headers: { "content-type": "application/json" },
    });
    expect(res.status).toBe(201);

    const src = join(dir, "src.raw");
    const fh = await open(src, "w");
    const data = new Uint8Array(8 * MiB);
    for (let o = 0; o < data.length; o += 65536) crypto.getRandomValues(data.subarray(o, o + 65536));
    await fh.write(data, 0, data.length, 3 * MiB);
    await fh.truncate(32 * MiB);
    await fh.close();
    await runOk(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, `${nbd}/r`]);

    const counts = new Map<string, number>();
    for (const s of stores) {
      const client = await HttpStore.open(s.url);
      for await (const h of client.list()) counts.set(h, (counts.get(h) ?? 0) + 1);
      await client.close();
    }
    expect(counts.size).toBeGreaterThanOrEqual(128); // 8 MiB of distinct 64 KiB chunks, plus map pages
    for (const c of counts.values()) expect(c).toBe(2);

    // The operator's commands: all in sync, so any store may go; then b is killed.
    const cli = (...args: string[]) =>
      run([process.execPath, join(import.meta.dir, "../../../cli/main.ts"), ...args, "--api", gw.url]);
    const safeBefore = await cli("store", "safe-to-remove", "a");
    expect(safeBefore.code).toBe(0);
    expect((await cli("heal", "wait", "--timeout", "20")).code).toBe(0);

    await stores[1]!.kill("SIGKILL");
    const out = join(dir, "out.raw");
    await runOk(["qemu-img", "convert", "-f", "raw", "-O", "raw", `${nbd}/r`, out]);
    expect(await runOk(["qemu-img", "compare", "-f", "raw", "-F", "raw", src, out])).toContain("identical");
    // Writes go on with one data store down (min-replicas 1) and a majority of head holders.
    const w = await runOk([
      "qemu-io",
      "-f",
      "raw",
      "-c",
      "write -P 0x44 20M 2M",
      "-c",
      "flush",
      "-c",
      "read -P 0x44 20M 2M",
      `${nbd}/r`,
    ]);
    expect(w).not.toContain("failed");
    const head = (await (await fetch(`${gw.url}/v1/images/r`)).json()) as {
      generation: number;
      synced: Record<string, { generation: number }>;
    };
    expect(head.synced.b!.generation).toBeLessThan(head.generation);
    const unsafe = await cli("store", "safe-to-remove", "a");
    expect(unsafe.code).toBe(1);
    expect(unsafe.out).toContain("would lose their last current copy: r");
    const status = await cli("heal", "status");
    expect(status.out).toMatch(/b: down/);
    expect((await cli("heal", "wait", "--timeout", "1")).code).toBe(2);
  } finally {
    await killAll();
    await rm(dir, { recursive: true, force: true });
  }
}, 120_000);
