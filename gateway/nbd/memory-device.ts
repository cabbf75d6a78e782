/**
 * A sparse in-memory block device for tests and for trying the NBD server by
 * hand. Data lives in 64 KiB blocks in a Map; a block never written (or
 * trimmed or zeroed whole) is a hole and reads as zeroes.
 *
 * @module
 */
import { blockSpans } from "../image/block-spans.ts";
import {
  ALL_CAPABILITIES,
  type BlockDevice,
  type BlockDeviceCapabilities,
  type BlockSizes,
  type Extent,
} from "./block-device.ts";

export { ALL_CAPABILITIES };

/** Size of one stored block. */
export const MEMORY_BLOCK_SIZE = 64 * 1024;

export interface MemoryDeviceOptions {
  /** Capabilities to declare; missing ones default to {@link ALL_CAPABILITIES}. */
  capabilities?: Partial<BlockDeviceCapabilities>;
  blockSizes?: BlockSizes;
  description?: string;
}

/**
 * An in-memory {@link BlockDevice}. Every operation takes effect at once, so
 * flush and FUA have nothing to wait for. `flushes` counts flush calls.
 *
 * @example
 * const device = new MemoryDevice(64 << 20);
 * await device.write(0, new Uint8Array([1, 2, 3]), { fua: false });
 */
export class MemoryDevice implements BlockDevice {
  readonly size: number;
  readonly blockSizes: BlockSizes;
  readonly capabilities: BlockDeviceCapabilities;
  readonly description?: string;
  readonly #blocks = new Map<number, Uint8Array>();
  flushes = 0;

  constructor(size: number, options: MemoryDeviceOptions = {}) {
    if (!Number.isSafeInteger(size) || size < 0)
      throw new RangeError(`MemoryDevice size ${size} is not a byte count`);
    this.size = size;
    this.capabilities = { ...ALL_CAPABILITIES, ...options.capabilities };
    this.blockSizes = options.blockSizes ?? { minimum: 1, preferred: 4096, maximum: 32 * 1024 * 1024 };
    if (options.description !== undefined) this.description = options.description;
  }

  /** Number of allocated 64 KiB blocks. */
  get allocatedBlocks(): number {
    return this.#blocks.size;
  }

  #check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new RangeError(`MemoryDevice: bad range offset ${offset} length ${length}`);
    }
    if (offset + length > this.size) {
      throw new RangeError(`MemoryDevice: range ${offset}+${length} is past the end (${this.size})`);
    }
  }

  #checkWritable(): void {
    if (this.capabilities.readOnly) {
      const error = new Error("MemoryDevice is read-only");
      error.name = "ReadOnlyError";
      throw error;
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.#check(offset, length);
    const index = Math.floor(offset / MEMORY_BLOCK_SIZE);
    const inBlock = offset - index * MEMORY_BLOCK_SIZE;
    if (inBlock + length <= MEMORY_BLOCK_SIZE) {
      // Within one block: copy without zero-filling first.
      const block = this.#blocks.get(index);
      return block ? block.slice(inBlock, inBlock + length) : new Uint8Array(length);
    }
    const out = new Uint8Array(length);
    for (const s of blockSpans(offset, length, MEMORY_BLOCK_SIZE)) {
      const block = this.#blocks.get(s.index);
      if (block) out.set(block.subarray(s.inBlock, s.inBlock + s.length), s.at);
    }
    return out;
  }

  async write(offset: number, data: Uint8Array, _options: { fua: boolean }): Promise<void> {
    this.#checkWritable();
    this.#check(offset, data.byteLength);
    for (const s of blockSpans(offset, data.byteLength, MEMORY_BLOCK_SIZE)) {
      let block = this.#blocks.get(s.index);
      if (!block) {
        block = new Uint8Array(MEMORY_BLOCK_SIZE);
        this.#blocks.set(s.index, block);
      }
      block.set(data.subarray(s.at, s.at + s.length), s.inBlock);
    }
  }

  async flush(): Promise<void> {
    this.flushes++;
  }

  async trim(offset: number, length: number, _options: { fua: boolean }): Promise<void> {
    this.#checkWritable();
    this.#check(offset, length);
    this.#zero(offset, length, true);
  }

  async writeZeroes(
    offset: number,
    length: number,
    options: { fua: boolean; noHole: boolean; fastZero: boolean },
  ): Promise<void> {
    this.#checkWritable();
    this.#check(offset, length);
    this.#zero(offset, length, !options.noHole);
  }

  /** Zeroes a range: whole blocks become holes (or zero-filled blocks with `punch` false), partial blocks are cleared. */
  #zero(offset: number, length: number, punch: boolean): void {
    for (const { index, inBlock, length: n } of blockSpans(offset, length, MEMORY_BLOCK_SIZE)) {
      const block = this.#blocks.get(index);
      if (n === MEMORY_BLOCK_SIZE && punch) {
        this.#blocks.delete(index);
      } else if (block) {
        block.fill(0, inBlock, inBlock + n);
      } else if (!punch) {
        this.#blocks.set(index, new Uint8Array(MEMORY_BLOCK_SIZE));
      }
    }
  }

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    this.#check(offset, length);
    const extents: { length: number; hole: boolean; zero: boolean }[] = [];
    for (const { index, length: n } of blockSpans(offset, length, MEMORY_BLOCK_SIZE)) {
      const hole = !this.#blocks.has(index);
      const last = extents[extents.length - 1];
      if (last !== undefined && last.hole === hole) last.length += n;
      else extents.push({ length: n, hole, zero: hole });
    }
    return extents;
  }
}
