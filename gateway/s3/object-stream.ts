/**
 * The body of a GetObject: bytes `[start, end)` of one committed version, read piece by
 * piece as the client takes them. A few pieces are read ahead (bounded memory); when the
 * client is slow, reading stops (backpressure). A long stream's reader stays pinned from
 * the first byte until the stream ends, fails or is cancelled: garbage collection keeps
 * the version meanwhile even if it is superseded or deleted (gc/pins.ts). A short one
 * needs no pin: it ends well within a collection's grace period (gc/collector.ts).
 */
import type { VersionReader } from "./image-catalog.ts";

/** Bytes per piece: a whole number of chunks at every chunk size up to 1 MiB (larger chunks make larger pieces). */
export const PIECE_BYTES = 1024 * 1024;
/** Pieces read ahead of the client: enough to keep several store reads in flight, 8 MiB of memory per GET. */
export const READ_AHEAD_PIECES = 8;
/** Streams at least this long are pinned (one register write each way); shorter ones end within the gc grace. */
export const PIN_MIN_BYTES = 64 * 1024 * 1024;

/**
 * A stream over `reader`'s version from `start` to `end`. Pins the reader now and unpins
 * it exactly once when the stream is done; `onError` hears a read failure (the client
 * then sees a short body: the status line is gone).
 */
export function versionStream(
  reader: VersionReader,
  start: number,
  end: number,
  onError: (err: unknown) => void = () => {},
): ReadableStream<Uint8Array> {
  const pieceBytes = Math.max(PIECE_BYTES, reader.version.chunkSize);
  let pinned = end - start >= PIN_MIN_BYTES;
  if (pinned) reader.pin();
  const unpin = () => {
    if (pinned) {
      pinned = false;
      reader.unpin();
    }
  };
  let next = start;
  const ahead: Promise<Uint8Array>[] = [];
  const fill = () => {
    while (ahead.length < READ_AHEAD_PIECES && next < end) {
      // Pieces end on piece boundaries, so reads after the first are chunk-aligned.
      const stop = Math.min(end, (Math.floor(next / pieceBytes) + 1) * pieceBytes);
      const p = reader.read(next, stop - next);
      p.catch(() => {}); // surfaced when its turn comes
      ahead.push(p);
      next = stop;
    }
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          fill();
          const piece = ahead.shift();
          if (piece === undefined) {
            unpin();
            controller.close();
            return;
          }
          controller.enqueue(await piece);
          if (ahead.length === 0 && next >= end) {
            unpin();
            controller.close();
          }
        } catch (err) {
          unpin();
          onError(err);
          controller.error(err);
        }
      },
      cancel() {
        unpin();
      },
    },
    { highWaterMark: 1 },
  );
}
