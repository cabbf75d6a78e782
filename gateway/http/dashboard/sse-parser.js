/**
 * An incremental parser of server-sent events (the text/event-stream format of the HTML
 * standard, "Server-sent events", 9.2.6 Interpreting an event stream), fed text as it
 * arrives from a `fetch` body reader: it keeps a partial line between reads, so a read may
 * end anywhere, even between the CR and LF of a line end. Sans-IO: no network here.
 *
 * @example
 * const parser = new SseParser();
 * for (const event of parser.feed("event: change\ndata: {}\n\n")) console.log(event.type);
 */
export class SseParser {
  /** The text after the last complete line. */
  #rest = "";
  /** The last read ended in CR: an LF starting the next one belongs to that line end. */
  #afterCr = false;
  #type = "";
  #data = [];
  #hasData = false;
  /** The last `id:` seen (kept across events, as the standard says). */
  lastEventId = "";
  /** The last `retry:` in ms, or null. */
  retryMs = null;

  /**
   * Parses `text` and returns the events it completes, in order: `{type, data, id}`
   * (`type` "message" when the stream gave none).
   */
  feed(text) {
    let input = text;
    if (this.#afterCr && input.startsWith("\n")) input = input.slice(1);
    this.#afterCr = false;
    const buf = this.#rest + input;
    const events = [];
    let start = 0;
    for (let i = 0; i < buf.length; i++) {
      const ch = buf.charCodeAt(i);
      if (ch !== 10 && ch !== 13) continue;
      this.#line(buf.slice(start, i), events);
      if (ch === 13) {
        if (i + 1 < buf.length) {
          if (buf.charCodeAt(i + 1) === 10) i++;
        } else {
          this.#afterCr = true;
        }
      }
      start = i + 1;
    }
    this.#rest = buf.slice(start);
    return events;
  }

  #line(line, events) {
    if (line === "") {
      if (this.#hasData)
        events.push({ type: this.#type || "message", data: this.#data.join("\n"), id: this.lastEventId });
      this.#type = "";
      this.#data = [];
      this.#hasData = false;
      return;
    }
    if (line.startsWith(":")) return; // a comment: a heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.#type = value;
    else if (field === "data") {
      this.#data.push(value);
      this.#hasData = true;
    } else if (field === "id") {
      if (!value.includes("\0")) this.lastEventId = value;
    } else if (field === "retry") {
      if (/^\d+$/.test(value)) this.retryMs = Number(value);
    }
  }
}
