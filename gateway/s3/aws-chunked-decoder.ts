/**
 * Sans-IO decoder of `Content-Encoding: aws-chunked` bodies (AWS S3 API reference,
 * "Signature Calculations for the Authorization Header: Transferring Payload in Multiple
 * Chunks" and "...Trailing Headers"):
 *
 *     hex-size[;chunk-signature=SIG]\r\n  data  \r\n      (repeated)
 *     0[;chunk-signature=SIG]\r\n
 *     [name:value\r\n ...]  [x-amz-trailer-signature:SIG\r\n]
 *     \r\n
 *
 * {@link AwsChunkedDecoder.push} takes bytes split anywhere and returns the events they
 * complete; data events are views into the input (no copy). It never awaits: the caller
 * hashes and verifies. Some SDKs end a body without a trailer at `0\r\n`; that is accepted.
 */
import { S3Error } from "./s3-errors.ts";

/** Longest chunk header or trailer line: a size, a 64-hex signature and slack. */
export const MAX_LINE_BYTES = 4096;
/** Most trailer bytes: a few checksum headers and a signature. */
export const MAX_TRAILER_BYTES = 16 * 1024;

/** What the decoder found. */
export type ChunkedEvent =
  /** A chunk starts: its data size and signature (absent in unsigned streams). */
  | { readonly type: "chunk"; readonly size: number; readonly signature?: string }
  /** Some of the current chunk's data. */
  | { readonly type: "data"; readonly bytes: Uint8Array }
  /** The current chunk's data is complete. */
  | { readonly type: "chunk-end" }
  /** After the last (zero-size) chunk: trailing headers (names lowercased) and the trailer signature. */
  | {
      readonly type: "trailer";
      readonly headers: readonly (readonly [string, string])[];
      readonly signature?: string;
    }
  /** The body is complete. */
  | { readonly type: "end" };

const STATE = { HEADER: 0, DATA: 1, DATA_CR: 2, DATA_LF: 3, TRAILER: 4, DONE: 5 } as const;
type State = (typeof STATE)[keyof typeof STATE];

const CR = 13;
const LF = 10;

function malformed(detail: string): S3Error {
  return new S3Error("IncompleteBody", `Malformed aws-chunked body: ${detail}`);
}

/** Incremental aws-chunked parser; see the module comment. */
export class AwsChunkedDecoder {
  #state: State = STATE.HEADER;
  #line: number[] = [];
  #remaining = 0;
  #trailer: [string, string][] = [];
  #trailerSignature: string | undefined;
  #trailerBytes = 0;
  /** Total data bytes decoded so far. */
  decodedBytes = 0;

  /** Feeds the next bytes; returns the events they complete. Throws IncompleteBody on malformed input. */
  push(bytes: Uint8Array): ChunkedEvent[] {
    const events: ChunkedEvent[] = [];
    let i = 0;
    while (i < bytes.byteLength) {
      switch (this.#state) {
        case STATE.HEADER:
        case STATE.TRAILER: {
          const b = bytes[i++]!;
          if (b === LF && this.#line.at(-1) === CR) {
            this.#line.pop();
            const line = String.fromCharCode(...this.#line);
            this.#line = [];
            if (this.#state === STATE.HEADER) this.#header(line, events);
            else this.#trailerLine(line, events);
          } else {
            this.#line.push(b);
            if (this.#line.length > MAX_LINE_BYTES)
              throw malformed(`a line is longer than ${MAX_LINE_BYTES} bytes`);
          }
          break;
        }
        case STATE.DATA: {
          const n = Math.min(this.#remaining, bytes.byteLength - i);
          events.push({ type: "data", bytes: bytes.subarray(i, i + n) });
          i += n;
          this.#remaining -= n;
          this.decodedBytes += n;
          if (this.#remaining === 0) this.#state = STATE.DATA_CR;
          break;
        }
        case STATE.DATA_CR:
          if (bytes[i++] !== CR) throw malformed("chunk data is not followed by CRLF");
          this.#state = STATE.DATA_LF;
          break;
        case STATE.DATA_LF:
          if (bytes[i++] !== LF) throw malformed("chunk data is not followed by CRLF");
          events.push({ type: "chunk-end" });
          this.#state = STATE.HEADER;
          break;
        case STATE.DONE:
          throw malformed("bytes after the end of the body");
      }
    }
    return events;
  }

  /** The body ended; returns the last events. Throws IncompleteBody if it stopped mid-way. */
  finish(): ChunkedEvent[] {
    if (this.#state === STATE.DONE) return [];
    // `0\r\n` then the end of the stream (no trailer, no final CRLF), or trailer lines without the empty line.
    if (this.#state === STATE.TRAILER && this.#line.length === 0) {
      this.#state = STATE.DONE;
      return [this.#trailerEvent(), { type: "end" }];
    }
    throw malformed("the body ended before its last chunk");
  }

  #header(line: string, events: ChunkedEvent[]): void {
    const m = /^([0-9a-fA-F]{1,13})(?:;chunk-signature=([0-9a-f]{64}))?$/.exec(line);
    if (!m) throw malformed(`bad chunk header "${line.slice(0, 100)}"`);
    const size = Number.parseInt(m[1]!, 16);
    events.push(m[2] ? { type: "chunk", size, signature: m[2] } : { type: "chunk", size });
    if (size === 0) {
      events.push({ type: "chunk-end" });
      this.#state = STATE.TRAILER;
    } else {
      this.#remaining = size;
      this.#state = STATE.DATA;
    }
  }

  #trailerLine(line: string, events: ChunkedEvent[]): void {
    if (line === "") {
      this.#state = STATE.DONE;
      events.push(this.#trailerEvent(), { type: "end" });
      return;
    }
    this.#trailerBytes += line.length + 2;
    if (this.#trailerBytes > MAX_TRAILER_BYTES)
      throw malformed(`the trailer is longer than ${MAX_TRAILER_BYTES} bytes`);
    const colon = line.indexOf(":");
    if (colon <= 0) throw malformed(`bad trailer line "${line.slice(0, 100)}"`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "x-amz-trailer-signature") this.#trailerSignature = value;
    else this.#trailer.push([name, value]);
  }

  #trailerEvent(): ChunkedEvent {
    return this.#trailerSignature === undefined
      ? { type: "trailer", headers: this.#trailer }
      : { type: "trailer", headers: this.#trailer, signature: this.#trailerSignature };
  }
}
