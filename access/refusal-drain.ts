/**
 * Reads what is left of a refused request's body (a little of it, briefly) before the
 * refusal goes out. A listener that answers 401 or 403 without reading the body leaves
 * the client still sending it: over HTTP/2 the server then resets the stream, and curl
 * reported "Stream error in the HTTP/2 framing layer" (exit 92) instead of the 403 in one
 * CI run against `blockmend up` on Deno; over HTTP/1.1 the same race is what servers' "lingering
 * close" is for. At most `maxBytes` are read, within `ms`: a client that sends more or
 * drips gets the refusal anyway, as before.
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { AccessRefusedError } from "./access-errors.ts";

/** Bytes of a refused request's body read at most before the refusal is sent. */
export const REFUSAL_DRAIN_BYTES = 64 * 1024;
/** How long the drain waits for them at most (ms). */
export const REFUSAL_DRAIN_MS = 1000;

/** The middleware: put it first, so it sees the refusals of every guard after it. */
export function drainRefusedBody(
  maxBytes: number = REFUSAL_DRAIN_BYTES,
  ms: number = REFUSAL_DRAIN_MS,
): MiddlewareHandler {
  return async (c, next) => {
    await next();
    const body = c.req.raw.body;
    if (!(c.error instanceof AccessRefusedError) || !body || c.req.raw.bodyUsed || body.locked) return;
    await drain(body, maxBytes, ms);
  };
}

async function drain(body: ReadableStream<Uint8Array>, maxBytes: number, ms: number): Promise<void> {
  const reader = body.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((r) => {
    timer = setTimeout(() => r("late"), ms);
  });
  try {
    for (let read = 0; read <= maxBytes; ) {
      const got = await Promise.race([reader.read(), late]);
      if (got === "late" || got.done) return;
      read += got.value.byteLength;
    }
  } catch {
    // The client went away: nothing to drain.
  } finally {
    clearTimeout(timer);
    reader.cancel().catch(() => {});
  }
}
