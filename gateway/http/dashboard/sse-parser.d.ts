/** Types of `sse-parser.js` for the TypeScript tests (this file is not served). */

/** One dispatched event. */
export interface SseEvent {
  readonly type: string;
  readonly data: string;
  readonly id: string;
}

export declare class SseParser {
  lastEventId: string;
  retryMs: number | null;
  feed(text: string): SseEvent[];
}
