/**
 * Reading `/v1/events` in tests the way the page does: a fetch body read as it comes,
 * parsed by the page's own SseParser, with data parsed as JSON.
 */
import { SseParser } from "../../gateway/http/dashboard/sse-parser.js";

/** One event with its data parsed. */
export interface TestEvent<T = Record<string, unknown>> {
  readonly type: string;
  readonly id: number;
  readonly data: T;
}

/** Events of one response body, in order; `next()` waits at most `ms` for the next one. */
export class EventReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #parser = new SseParser();
  readonly #decoder = new TextDecoder();
  readonly #queue: TestEvent[] = [];
  /** Raw text received so far (comments included). */
  text = "";
  ended = false;

  constructor(body: ReadableStream<Uint8Array>) {
    this.#reader = body.getReader();
  }

  /** The next event; throws after `ms` without one, or when the stream ends. */
  async next(ms = 10_000): Promise<TestEvent> {
    const deadline = Date.now() + ms;
    while (this.#queue.length === 0) {
      if (this.ended) throw new Error("the event stream ended");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no event within ${ms} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const r = await Promise.race([
        this.#reader.read(),
        new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), left);
        }),
      ]).finally(() => clearTimeout(timer));
      if (r === "timeout") continue;
      if (r.done) {
        this.ended = true;
        continue;
      }
      const chunk = this.#decoder.decode(r.value, { stream: true });
      this.text += chunk;
      for (const e of this.#parser.feed(chunk))
        this.#queue.push({ type: e.type, id: Number(e.id), data: JSON.parse(e.data) });
    }
    return this.#queue.shift()!;
  }

  /** Events until one satisfies `pred` (returned), within `ms` in all. */
  async until(pred: (e: TestEvent) => boolean, ms = 10_000): Promise<{ hit: TestEvent; seen: TestEvent[] }> {
    const deadline = Date.now() + ms;
    const seen: TestEvent[] = [];
    for (;;) {
      const e = await this.next(Math.max(1, deadline - Date.now()));
      seen.push(e);
      if (pred(e)) return { hit: e, seen };
    }
  }

  /** Waits for the end of the stream (throws after `ms`). */
  async end(ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.ended) {
      try {
        await this.next(Math.max(1, deadline - Date.now()));
      } catch (err) {
        if (this.ended) return;
        throw err;
      }
    }
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

/** Opens `url` (`/v1/events` of a gateway) and returns its reader; throws unless 200 text/event-stream. */
export async function openEvents(url: string, headers: Record<string, string> = {}): Promise<EventReader> {
  const res = await fetch(url, { headers: { accept: "text/event-stream", ...headers } });
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`);
  if (!res.headers.get("content-type")?.startsWith("text/event-stream"))
    throw new Error(`GET ${url}: content-type ${res.headers.get("content-type")}`);
  return new EventReader(res.body!);
}
