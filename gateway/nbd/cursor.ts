/**
 * Big-endian reader and writer over a DataView, for NBD messages (all NBD
 * integers are in network byte order).
 *
 * @module
 */

const TWO_POW_32 = 0x1_0000_0000;
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

/** Encodes a string as UTF-8. */
export function utf8(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

/**
 * Reads big-endian integers, bytes and UTF-8 strings from a byte range.
 * Reading past the end throws RangeError (the message is malformed).
 *
 * @example
 * const r = new Reader(bytes);
 * const nameLength = r.u32();
 * const name = r.string(nameLength);
 */
export class Reader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #pos = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Bytes not read yet. */
  get remaining(): number {
    return this.#bytes.byteLength - this.#pos;
  }

  /** Current position from the start of the range. */
  get position(): number {
    return this.#pos;
  }

  #take(n: number): number {
    if (n < 0 || this.#pos + n > this.#bytes.byteLength) {
      throw new RangeError(`Cannot read ${n} bytes at position ${this.#pos}: only ${this.remaining} left`);
    }
    const at = this.#pos;
    this.#pos += n;
    return at;
  }

  u8(): number {
    return this.#view.getUint8(this.#take(1));
  }

  u16(): number {
    return this.#view.getUint16(this.#take(2));
  }

  u32(): number {
    return this.#view.getUint32(this.#take(4));
  }

  /** A 64-bit unsigned integer as bigint (exact). */
  u64(): bigint {
    return this.#view.getBigUint64(this.#take(8));
  }

  /** A 64-bit unsigned integer as a number; RangeError if it is not a safe integer. */
  u64n(): number {
    const at = this.#take(8);
    const value = this.#view.getUint32(at) * TWO_POW_32 + this.#view.getUint32(at + 4);
    if (!Number.isSafeInteger(value))
      throw new RangeError(`64-bit value at position ${at} is not a safe integer`);
    return value;
  }

  /** A view (no copy) of the next `n` bytes. */
  bytes(n: number): Uint8Array {
    const at = this.#take(n);
    return this.#bytes.subarray(at, at + n);
  }

  /** The next `n` bytes as strict UTF-8; TypeError if they are not valid UTF-8. */
  string(n: number): string {
    return utf8Decoder.decode(this.bytes(n));
  }
}

/**
 * Writes big-endian integers, bytes and strings into a buffer of a known size.
 * Writing past the end throws RangeError; `finish()` checks the size was exact.
 *
 * @example
 * const w = new Writer(8);
 * w.u32(1).u32(2);
 * socket.write(w.finish());
 */
export class Writer {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #pos = 0;

  constructor(size: number) {
    this.#bytes = new Uint8Array(size);
    this.#view = new DataView(this.#bytes.buffer);
  }

  #take(n: number): number {
    if (this.#pos + n > this.#bytes.byteLength) {
      throw new RangeError(`Cannot write ${n} bytes at position ${this.#pos} of ${this.#bytes.byteLength}`);
    }
    const at = this.#pos;
    this.#pos += n;
    return at;
  }

  u8(value: number): this {
    this.#view.setUint8(this.#take(1), value);
    return this;
  }

  u16(value: number): this {
    this.#view.setUint16(this.#take(2), value);
    return this;
  }

  u32(value: number): this {
    this.#view.setUint32(this.#take(4), value);
    return this;
  }

  /** A 64-bit unsigned integer from a bigint or a non-negative safe integer. */
  u64(value: bigint | number): this {
    const at = this.#take(8);
    if (typeof value === "bigint") {
      this.#view.setBigUint64(at, value);
    } else {
      if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`Cannot write ${value} as u64`);
      this.#view.setUint32(at, Math.floor(value / TWO_POW_32));
      this.#view.setUint32(at + 4, value % TWO_POW_32);
    }
    return this;
  }

  bytes(data: Uint8Array): this {
    this.#bytes.set(data, this.#take(data.byteLength));
    return this;
  }

  /** `n` zero bytes. */
  zeroes(n: number): this {
    this.#take(n); // the buffer starts zeroed
    return this;
  }

  /** The buffer; RangeError unless exactly `size` bytes were written. */
  finish(): Uint8Array {
    if (this.#pos !== this.#bytes.byteLength) {
      throw new RangeError(`Message has ${this.#pos} of ${this.#bytes.byteLength} bytes written`);
    }
    return this.#bytes;
  }
}
