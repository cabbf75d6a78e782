/** `runtime/buffer-pool.ts`: buffers come back by size, whole ones only, up to the limit. */
import { expect, test } from "bun:test";
import { BufferPool } from "../../runtime/buffer-pool.ts";

test("a given-back buffer is taken again for its size only; views of part of one are not kept", () => {
  const pool = new BufferPool(2);
  const a = pool.take(1024);
  a[0] = 7;
  pool.give(a);
  expect(pool.take(2048).buffer).not.toBe(a.buffer);
  const again = pool.take(1024);
  expect(again.buffer).toBe(a.buffer);
  expect(again[0]).toBe(7); // not cleared: callers overwrite what they use
  pool.give(again.subarray(0, 512));
  expect(pool.take(1024).buffer).not.toBe(a.buffer);
});

test("at most `max` buffers are kept", () => {
  const pool = new BufferPool(1);
  const [x, y] = [pool.take(64), pool.take(64)];
  pool.give(x);
  pool.give(y.buffer as ArrayBuffer);
  expect(pool.take(64).buffer).toBe(x.buffer);
  expect(pool.take(64).buffer).not.toBe(y.buffer);
});
