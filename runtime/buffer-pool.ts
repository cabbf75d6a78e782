/**
 * Reused byte buffers. A fresh buffer makes the kernel fault in and zero every page again
 * (about 10 us per 4 KiB page on the dev VM: more CPU than hashing the bytes), so the
 * gateway's bulk paths (packing blocks to hash, an S3 import's batches, the SHA-256
 * worker's buffers) hand theirs back here once nothing reads them any more.
 */
export class BufferPool {
  readonly #free: ArrayBuffer[] = [];
  readonly #max: number;

  /** @param max buffers kept; more given back are left to the garbage collector. */
  constructor(max: number) {
    this.#max = max;
  }

  /** A buffer of exactly `bytes` (its contents are whatever the last user left). */
  take(bytes: number): Uint8Array {
    const i = this.#free.findIndex((b) => b.byteLength === bytes);
    return i >= 0 ? new Uint8Array(this.#free.splice(i, 1)[0]!) : new Uint8Array(bytes);
  }

  /** Gives back a whole buffer (a view of part of one is not kept); the caller must not use it again. */
  give(buffer: ArrayBuffer | Uint8Array): void {
    if (buffer instanceof Uint8Array) {
      if (buffer.byteOffset !== 0 || buffer.byteLength !== buffer.buffer.byteLength) return;
      buffer = buffer.buffer as ArrayBuffer;
    }
    if (this.#free.length < this.#max) this.#free.push(buffer);
  }
}
