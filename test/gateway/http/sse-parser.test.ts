/**
 * The page's server-sent-events parser (`gateway/http/dashboard/sse-parser.js`, the file
 * the browser runs): events in order, every field, comments, and a stream split at every
 * position (a fetch reader may end a read anywhere, even between CR and LF).
 */
import { describe, expect, test } from "bun:test";
import { SseParser } from "../../../gateway/http/dashboard/sse-parser.js";
import { encodeEvent } from "../../../gateway/http/events.ts";

const STREAM =
  "retry: 2000\n\n" +
  encodeEvent(1, "snapshot", { sections: { images: [{ name: "a\nb" }] } }) +
  ": heartbeat\n\n" +
  'id: 2\r\nevent: change\r\ndata: {"x":1}\r\n\r\n' +
  "id: 3\revent: mark\rdata: line one\rdata: line two\r\r" +
  "data: no type\n\n" +
  "event: ignored-without-data\n\n";

const EXPECTED = [
  { type: "snapshot", data: JSON.stringify({ sections: { images: [{ name: "a\nb" }] } }), id: "1" },
  { type: "change", data: '{"x":1}', id: "2" },
  { type: "mark", data: "line one\nline two", id: "3" },
  { type: "message", data: "no type", id: "3" },
];

describe("SseParser", () => {
  test("parses events, fields and comments of a whole stream, in order", () => {
    const p = new SseParser();
    expect(p.feed(STREAM)).toEqual(EXPECTED);
    expect(p.retryMs).toBe(2000);
    expect(p.lastEventId).toBe("3");
  });

  test("gives the same events when the stream is split at any one position", () => {
    for (let i = 0; i <= STREAM.length; i++) {
      const p = new SseParser();
      const events = [...p.feed(STREAM.slice(0, i)), ...p.feed(STREAM.slice(i))];
      expect(events, `split at ${i}`).toEqual(EXPECTED);
    }
  });

  test("gives the same events fed one character at a time", () => {
    const p = new SseParser();
    const events = [];
    for (const ch of STREAM) events.push(...p.feed(ch));
    expect(events).toEqual(EXPECTED);
  });

  test("keeps an unfinished event until its blank line arrives", () => {
    const p = new SseParser();
    expect(p.feed("event: change\ndata: {}\n")).toEqual([]);
    expect(p.feed("\n")).toEqual([{ type: "change", data: "{}", id: "" }]);
  });
});
