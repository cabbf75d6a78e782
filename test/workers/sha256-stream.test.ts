/** `workers/sha256-stream.ts`: SHA-256 on a worker thread, fed in pieces of any size. */
import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { OffThreadSha256 } from "../../workers/sha256-stream.ts";

function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let off = 0; off < n; off += 65536) crypto.getRandomValues(b.subarray(off, Math.min(n, off + 65536)));
  return b;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

test("interleaved streams fed in odd pieces each get the digest of their own bytes", async () => {
  const bodies = [randomBytes(5 * 1024 * 1024 + 17), randomBytes(1), randomBytes(0), randomBytes(3 << 20)];
  const hashers = bodies.map(() => new OffThreadSha256());
  const offsets = bodies.map(() => 0);
  // Round-robin pieces of 1 to 300 KiB, so buffers of different streams interleave on the worker.
  for (let left = true; left; ) {
    left = false;
    bodies.forEach((body, i) => {
      if (offsets[i]! >= body.byteLength) return;
      const n = Math.min(body.byteLength - offsets[i]!, 1 + Math.floor(Math.random() * 300 * 1024));
      hashers[i]!.update(body.subarray(offsets[i]!, offsets[i]! + n));
      offsets[i]! += n;
      left = true;
    });
  }
  const digests = await Promise.all(hashers.map((h) => h.digest()));
  digests.forEach((d, i) => {
    expect(hex(d)).toBe(createHash("sha256").update(bodies[i]!).digest("hex"));
  });
});

test("the caller's bytes are copied: changing them after update does not change the digest", async () => {
  const body = randomBytes(2 << 20);
  const expected = createHash("sha256").update(body).digest("hex");
  const h = new OffThreadSha256();
  h.update(body);
  body.fill(0);
  expect(hex(await h.digest())).toBe(expected);
});

test("a dropped stream cannot be used again; a digest is given once", async () => {
  const dropped = new OffThreadSha256();
  dropped.update(randomBytes(3 << 20));
  dropped.drop();
  expect(() => dropped.update(new Uint8Array(1))).toThrow(/after digest or drop/);
  const once = new OffThreadSha256();
  once.update(new Uint8Array([1, 2, 3]));
  expect(hex(await once.digest())).toBe(
    createHash("sha256")
      .update(new Uint8Array([1, 2, 3]))
      .digest("hex"),
  );
  await expect(once.digest()).rejects.toThrow(/digest twice/);
});

test("an idle worker ends; the next stream starts another and still hashes right", async () => {
  const first = new OffThreadSha256();
  first.update(new Uint8Array([7]));
  await first.digest();
  await Bun.sleep(5_300); // past the idle time
  const body = randomBytes(2 << 20);
  const next = new OffThreadSha256();
  next.update(body);
  expect(hex(await next.digest())).toBe(createHash("sha256").update(body).digest("hex"));
}, 15_000);
