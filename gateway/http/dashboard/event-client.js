/**
 * The live stream (`GET /v1/events`) read with `fetch` and a streaming body reader, not
 * EventSource (which cannot send an Authorization header). Reconnects by itself with a
 * growing pause (1 s doubling to 10 s, or the server's Retry-After), and treats a
 * stream silent for longer than STALL_MS (heartbeats come every 15 s, samples every
 * 2 s) as dead. A 401 or 403 stops it until `restart()` (after the user gave a token).
 *
 * States told to `onState(state, detail)`: "connecting", "live", "retrying" (detail:
 * {inMs, reason}), "auth" (detail: {message}), "stopped".
 */
import { authHeaders } from "./api.js";
import { SseParser } from "./sse-parser.js";

/** Longer than a heartbeat interval plus slack: silence beyond means a dead stream. */
const STALL_MS = 35_000;
/** A gateway that accepts the connection but does not answer (a frozen process). */
const CONNECT_TIMEOUT_MS = 10_000;
const MIN_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 10_000;

export class EventClient {
  #url;
  #onEvent;
  #onState;
  #abort = null;
  #timer = null;
  #backoff = MIN_BACKOFF_MS;
  /** Bumped by every restart and stop: a run of an older generation only exits. */
  #gen = 0;

  /** `onEvent({type, data, id})` gets every event with its data parsed as JSON. */
  constructor(url, { onEvent, onState }) {
    this.#url = url;
    this.#onEvent = onEvent;
    this.#onState = onState;
  }

  /** Connects now (again), dropping any connection or pending retry. */
  restart() {
    this.#halt();
    this.#backoff = MIN_BACKOFF_MS;
    void this.#run(this.#gen);
  }

  /** Closes the stream and stops reconnecting. */
  stop() {
    this.#halt();
    this.#onState("stopped", {});
  }

  #halt() {
    this.#gen++;
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#abort?.abort();
    this.#abort = null;
  }

  async #run(gen) {
    const abort = new AbortController();
    this.#abort = abort;
    this.#onState("connecting", {});
    let retryAfterMs = null;
    let reason;
    const connectTimer = setTimeout(() => abort.abort(), CONNECT_TIMEOUT_MS);
    try {
      const res = await fetch(this.#url, {
        headers: authHeaders({ accept: "text/event-stream" }),
        cache: "no-store",
        signal: abort.signal,
      });
      clearTimeout(connectTimer);
      if (gen !== this.#gen) return void res.body?.cancel();
      if (res.status === 401 || res.status === 403) {
        let message = `HTTP ${res.status}`;
        try {
          message = (await res.json())?.error?.message ?? message;
        } catch {
          // not JSON
        }
        if (gen !== this.#gen) return;
        this.#halt();
        this.#onState("auth", { message });
        return;
      }
      if (!res.ok || !res.body) {
        const seconds = Number(res.headers.get("retry-after"));
        if (Number.isFinite(seconds) && seconds > 0) retryAfterMs = seconds * 1000;
        reason = `the gateway answered HTTP ${res.status}`;
        await res.body?.cancel();
      } else {
        reason = await this.#read(res.body, abort, gen);
      }
    } catch (err) {
      reason = abort.signal.aborted
        ? "no answer in time"
        : `cannot reach the gateway (${err instanceof Error ? err.message : String(err)})`;
    } finally {
      clearTimeout(connectTimer);
    }
    if (gen !== this.#gen) return;
    this.#abort = null;
    const inMs = retryAfterMs ?? this.#backoff;
    this.#backoff = Math.min(MAX_BACKOFF_MS, this.#backoff * 2);
    this.#onState("retrying", { inMs, reason });
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (gen === this.#gen) void this.#run(gen);
    }, inMs);
  }

  /** Reads events until the stream ends, stalls or is aborted; returns why it ended. */
  async #read(body, abort, gen) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser();
    let stall = null;
    let stalled = false;
    const arm = () => {
      clearTimeout(stall);
      stall = setTimeout(() => {
        stalled = true;
        abort.abort();
      }, STALL_MS);
    };
    arm();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (gen !== this.#gen) return "stopped";
        if (done) return "the gateway closed the stream";
        arm();
        for (const ev of parser.feed(decoder.decode(value, { stream: true }))) {
          let data;
          try {
            data = JSON.parse(ev.data);
          } catch {
            continue; // not ours
          }
          if (ev.type === "snapshot") {
            this.#backoff = MIN_BACKOFF_MS;
            this.#onState("live", {});
          }
          this.#onEvent({ type: ev.type, data, id: ev.id });
        }
      }
    } catch (err) {
      if (stalled) return `no data for ${STALL_MS / 1000} s`;
      return `the stream broke (${err instanceof Error ? err.message : String(err)})`;
    } finally {
      clearTimeout(stall);
    }
  }
}
