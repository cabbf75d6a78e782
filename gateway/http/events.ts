/**
 * `GET /v1/events`: the dashboard's live stream, as server-sent events (text/event-stream).
 *
 * Every connection starts with one `snapshot` event holding the whole state (every
 * section: stores, heal, images, safeToRemove, gc, backups, as `dashboard-state.ts` reads
 * them; and the chart's recent samples and marks), so a client that reconnects, even to
 * a restarted gateway, needs no history and `Last-Event-ID` is not needed (it is
 * ignored). Then, in order (`id:` counts up per gateway process):
 *
 *   event: snapshot  data: {"gateway", "at", "sections": {...}, "problem", "samples": [...], "marks": [...]}
 *   event: change    data: {"at", "sections": {name: value, ...}, "problem"}   only the sections that changed
 *   event: sample    data: IoSample                                              every SAMPLE_MS
 *   event: mark      data: TimelineMark                                          store down/up, heal start/end
 *   : heartbeat                                                                  a comment every HEARTBEAT_MS
 *
 * The state is read every STATE_INTERVAL_MS while at least one stream is open (one read
 * for all streams, none without), and compared section by section with what was sent.
 * `problem` is null, or why the last read failed (the sections then keep their last
 * values). Bounded: at most MAX_EVENT_STREAMS streams (beyond, 503 with Retry-After), and
 * a stream whose reader falls MAX_BACKLOG_BYTES behind is closed (the client reconnects
 * and starts from a snapshot). `close()` ends every stream, before the listener closes.
 */
import type { Context } from "hono";
import { API_ERROR } from "./http-wire.ts";
import type { IoSample, IoTimeline, TimelineMark } from "./io-timeline.ts";
import type { PathItem } from "./openapi.ts";

/** Streams open at once: a few operators' browsers; each costs a connection and its queue. */
export const MAX_EVENT_STREAMS = 16;
/** A comment line this often keeps proxies and the client's stall detection quiet. */
export const HEARTBEAT_MS = 15_000;
/** The state is read this often while a stream is open (the probe loop's period). */
export const STATE_INTERVAL_MS = 1000;
/** A reader this far behind is dropped rather than buffered for. */
export const MAX_BACKLOG_BYTES = 4 * 1024 * 1024;
/** How long a client waits before reconnecting (the `retry:` field; the page has its own backoff). */
const RETRY_MS = 2000;

/** Named sections of state; each is compared and resent whole when it changes. */
export type Sections = Record<string, unknown>;

/** What the streams are made of. */
export interface EventSources {
  /** Reads every section now (rejects when the cluster state cannot be read). */
  readonly read: () => Promise<Sections>;
  readonly timeline: IoTimeline;
  /** Who is answering: the gateway's id and when this process started. */
  readonly gateway: { readonly id: string; readonly startedAt: string };
}

/** Options, for tests. */
export interface EventStreamOptions {
  readonly maxStreams?: number;
  readonly heartbeatMs?: number;
  readonly intervalMs?: number;
}

/** Encodes one server-sent event (the data is one JSON line: JSON.stringify never writes a raw newline). */
export function encodeEvent(id: number, event: string, data: unknown): string {
  return `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

interface Stream {
  readonly controller: ReadableStreamDefaultController<Uint8Array>;
  /** False until its snapshot was sent: changes before it would apply to nothing. */
  ready: boolean;
}

const encoder = new TextEncoder();

/** The open event streams and the one state loop behind them. */
export class EventStreams {
  readonly #src: EventSources;
  readonly #max: number;
  readonly #heartbeatMs: number;
  readonly #intervalMs: number;
  readonly #streams = new Set<Stream>();
  #seq = 0;
  /** What every ready stream was last sent, per section (JSON), and the sections themselves. */
  #sent: Map<string, string> | null = null;
  #sections: Sections | null = null;
  #problem: { message: string; since: string } | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #reading: Promise<void> | null = null;
  #unlisten: (() => void)[] = [];
  #closed = false;

  constructor(sources: EventSources, options: EventStreamOptions = {}) {
    this.#src = sources;
    this.#max = options.maxStreams ?? MAX_EVENT_STREAMS;
    this.#heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
    this.#intervalMs = options.intervalMs ?? STATE_INTERVAL_MS;
  }

  /** Streams open now. */
  get size(): number {
    return this.#streams.size;
  }

  /** Answers `GET /v1/events`: a new stream, or 503 when MAX_EVENT_STREAMS are open or the gateway stops. */
  open(): Response {
    if (this.#closed || this.#streams.size >= this.#max) {
      const message = this.#closed
        ? "The gateway is stopping"
        : `Too many event streams open (${this.#max}); close a dashboard or try again later`;
      return Response.json(
        { error: { code: API_ERROR.TOO_MANY_STREAMS, message } },
        { status: 503, headers: { "retry-after": "5" } },
      );
    }
    let stream!: Stream;
    const body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          stream = { controller, ready: false };
          this.#streams.add(stream);
          controller.enqueue(encoder.encode(`retry: ${RETRY_MS}\n\n`));
          this.#begin();
          if (this.#sections !== null || this.#problem !== null) this.#snapshot(stream);
        },
        cancel: () => this.#drop(stream),
      },
      { highWaterMark: 0, size: (chunk) => chunk?.byteLength ?? 0 },
    );
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        // nginx and similar proxies: pass events on as they come.
        "x-accel-buffering": "no",
      },
    });
  }

  /** Ends every stream and stops the loop; later requests get 503. */
  close(): void {
    this.#closed = true;
    for (const s of [...this.#streams]) {
      this.#send(s, ": the gateway is stopping\n\n");
      this.#drop(s, true);
    }
    this.#end();
  }

  /** First stream: start the state loop, the heartbeat and the timeline relay. */
  #begin(): void {
    if (this.#streams.size !== 1 || this.#timer !== undefined || this.#reading) return;
    this.#unlisten = [
      this.#src.timeline.sampled.add((s: IoSample) => this.#broadcast("sample", s)),
      this.#src.timeline.marked.add((m: TimelineMark) => this.#broadcast("mark", m)),
    ];
    this.#heartbeat = setInterval(() => {
      for (const s of this.#streams) this.#send(s, ": heartbeat\n\n");
    }, this.#heartbeatMs);
    (this.#heartbeat as { unref?: () => void }).unref?.();
    const loop = async () => {
      this.#timer = undefined;
      this.#reading = this.#tick();
      await this.#reading;
      this.#reading = null;
      if (this.#streams.size > 0 && !this.#closed) this.#timer = setTimeout(loop, this.#intervalMs);
      else this.#end();
    };
    void loop();
  }

  /** Last stream gone: nothing runs, and the next first stream reads everything anew. */
  #end(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    clearInterval(this.#heartbeat);
    for (const off of this.#unlisten.splice(0)) off();
    if (!this.#reading) {
      this.#sent = null;
      this.#sections = null;
      this.#problem = null;
    }
  }

  /** Reads the state; sends what changed to the ready streams and a snapshot to new ones. */
  async #tick(): Promise<void> {
    const problemBefore = JSON.stringify(this.#problem);
    let sections: Sections | null = null;
    try {
      sections = await this.#src.read();
    } catch (err) {
      const message = `Cannot read the cluster state: ${err instanceof Error ? err.message : String(err)}`;
      if (this.#problem?.message !== message)
        this.#problem = { message, since: this.#problem?.since ?? new Date().toISOString() };
    }
    if (this.#streams.size === 0 || this.#closed) return;
    const changed: Sections = {};
    if (sections !== null) {
      this.#problem = null;
      const sent = this.#sent ?? new Map<string, string>();
      for (const [name, value] of Object.entries(sections)) {
        const json = JSON.stringify(value);
        if (sent.get(name) !== json) {
          changed[name] = value;
          sent.set(name, json);
        }
      }
      this.#sent = sent;
      this.#sections = sections;
    }
    const problemChanged = JSON.stringify(this.#problem) !== problemBefore;
    const ready = [...this.#streams].some((s) => s.ready);
    if (ready && (Object.keys(changed).length > 0 || problemChanged)) {
      const data = { at: new Date().toISOString(), sections: changed, problem: this.#problem };
      const line = encodeEvent(++this.#seq, "change", data);
      for (const s of this.#streams) if (s.ready) this.#send(s, line);
    }
    for (const s of this.#streams) if (!s.ready) this.#snapshot(s);
  }

  #snapshot(s: Stream): void {
    const data = {
      gateway: this.#src.gateway,
      at: new Date().toISOString(),
      sections: this.#sections,
      problem: this.#problem,
      samples: this.#src.timeline.samples(),
      marks: this.#src.timeline.marks(),
    };
    s.ready = this.#send(s, encodeEvent(++this.#seq, "snapshot", data));
  }

  #broadcast(event: string, data: unknown): void {
    let line: string | null = null;
    for (const s of this.#streams) {
      if (!s.ready) continue;
      line ??= encodeEvent(++this.#seq, event, data);
      this.#send(s, line);
    }
  }

  /** Queues `text` on `s`; a stream too far behind is dropped. False if `s` is gone. */
  #send(s: Stream, text: string): boolean {
    if (!this.#streams.has(s)) return false;
    const desired = s.controller.desiredSize;
    if (desired !== null && desired < -MAX_BACKLOG_BYTES) {
      this.#drop(s, true);
      return false;
    }
    try {
      s.controller.enqueue(encoder.encode(text));
      return true;
    } catch {
      this.#drop(s);
      return false;
    }
  }

  #drop(s: Stream, closeIt = false): void {
    if (!this.#streams.delete(s)) return;
    if (closeIt) {
      try {
        s.controller.close();
      } catch {
        // already closed or errored by the runtime
      }
    }
    if (this.#streams.size === 0 && !this.#reading) this.#end();
  }
}

/**
 * Bun ends a response after 10 s without bytes (its idleTimeout); an event stream may go
 * HEARTBEAT_MS without any. Bun passes its server as the handler's second argument
 * (Hono's `c.env`), whose `timeout(request, 0)` lifts that for one request. Deno has no
 * such timeout and passes no such function.
 */
function keepOpen(c: Context): void {
  const server = c.env as { timeout?: (request: Request, seconds: number) => void } | undefined;
  if (typeof server?.timeout === "function") server.timeout(c.req.raw, 0);
}

/** Answers `GET /v1/events` from `streams`. */
export function eventsHandler(streams: Pick<EventStreams, "open">): (c: Context) => Response {
  return (c) => {
    const res = streams.open();
    if (res.status === 200) keepOpen(c);
    return res;
  };
}

/** OpenAPI path item of the event stream. */
export const EVENTS_OPENAPI_PATHS: Record<string, PathItem> = {
  "/v1/events": {
    get: {
      summary:
        "Server-sent events for the dashboard: a full-state snapshot first (stores, heal, images, safe-to-remove per store, gc as GET /v1/gc answers, this gateway's backup jobs, recent I/O samples and marks), then the sections that change (read every second), I/O samples, marks and heartbeat comments",
      responses: {
        "200": { description: "text/event-stream" },
        "503": {
          description: "Too many event streams open",
          content: { "application/json": { schema: { type: "object" } } },
        },
      },
    },
  },
};
