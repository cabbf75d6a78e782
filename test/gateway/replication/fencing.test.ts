/**
 * Fencing with two gateway processes over the same stores: opening an image for writing
 * bumps its owner epoch on a majority of head holders, so the gateway that had it before
 * can no longer commit; its flush fails instead of overwriting newer data.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAll, startGatewayProcess, startStoreProcess } from "../../support/processes.ts";
import { requireTools, run, runOk } from "../../support/tools.ts";

afterAll(killAll);

test("a gateway with an older owner epoch cannot commit", async () => {
  requireTools("qemu-io");
  const dir = await mkdtemp(join(tmpdir(), "blockmend-fence-"));
  try {
    const stores = await Promise.all(
      ["a", "b", "w"].map((id) => startStoreProcess(join(dir, id), { witness: id === "w" })),
    );
    const urls = { a: stores[0]!.url, b: stores[1]!.url, w: stores[2]!.url };
    const [g1, g2] = (await Promise.all([1, 2].map(() => startGatewayProcess(urls)))).map((g) => ({
      api: g.url,
      nbd: g.nbd,
    }));
    const res = await fetch(`${g1!.api}/v1/images`, {
      method: "POST",
      body: JSON.stringify({ name: "f", size: 16 * 1024 * 1024 }),
      headers: { "content-type": "application/json" },
    });
    expect(res.status).toBe(201);

    await runOk(["qemu-io", "-f", "raw", "-c", "write -P 0x11 0 64k", "-c", "flush", `${g1!.nbd}/f`]);
    const epoch1 = ((await (await fetch(`${g1!.api}/v1/images/f`)).json()) as { epoch: number }).epoch;
    // Gateway 2 takes the image over: a new owner epoch.
    await runOk(["qemu-io", "-f", "raw", "-c", "write -P 0x22 0 64k", "-c", "flush", `${g2!.nbd}/f`]);
    const epoch2 = ((await (await fetch(`${g2!.api}/v1/images/f`)).json()) as { epoch: number }).epoch;
    expect(epoch2).toBeGreaterThan(epoch1);
    // Gateway 1 still has the image open with the old epoch: its commit must fail.
    const late = await run([
      "qemu-io",
      "-f",
      "raw",
      "-c",
      "write -P 0x33 0 64k",
      "-c",
      "flush",
      `${g1!.nbd}/f`,
    ]);
    expect(late.out).toMatch(/flush failed|Input\/output error|error/i);
    // What gateway 2 wrote is what everybody reads.
    expect(await runOk(["qemu-io", "-f", "raw", "-c", "read -P 0x22 0 64k", `${g2!.nbd}/f`])).not.toContain(
      "failed",
    );
  } finally {
    await killAll();
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);
