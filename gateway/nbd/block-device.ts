/**
 * What the NBD server serves: a {@link BlockDevice} declares what it can do
 * ({@link BlockDeviceCapabilities}) and the server derives the NBD export
 * flags from that in one place, {@link exportFlags}. An {@link ExportProvider}
 * resolves export names to devices.
 *
 * This file knows nothing of images, chunks or stores: the image layer
 * implements these interfaces; tests use `MemoryDevice`.
 *
 * @module
 */
import { NBD_FLAG } from "./constants.ts";

/**
 * What a device can do. The server advertises exactly this to clients and
 * refuses (EINVAL or EPERM) commands a device cannot do, so a device method for
 * a missing capability is never called.
 */
export interface BlockDeviceCapabilities {
  /** Writes, trims and zero writes are refused (EPERM); `image@snapshot` exports are read-only. */
  readonly readOnly: boolean;
  /** `flush()` makes acknowledged writes durable (there is a volatile cache). */
  readonly flush: boolean;
  /** `{fua: true}` on writes is honoured (the write is durable before it resolves). */
  readonly fua: boolean;
  /** `trim()` is worth calling (it may free space). */
  readonly trim: boolean;
  /** `writeZeroes()` is efficient (no zero payload on the wire). */
  readonly writeZeroes: boolean;
  /** `writeZeroes({fastZero: true})` fails fast (NotSupportedError) instead of writing slowly. */
  readonly fastZero: boolean;
  /** All connections to this export share one cache: a flush on one covers writes on all. */
  readonly multiConn: boolean;
  /** `blockStatus()` reports holes and zeroes (`base:allocation`). */
  readonly blockStatus: boolean;
}

/** Everything on, like a real disk with a volatile cache shared by all connections. */
export const ALL_CAPABILITIES: BlockDeviceCapabilities = {
  readOnly: false,
  flush: true,
  fua: true,
  trim: true,
  writeZeroes: true,
  fastZero: true,
  multiConn: true,
  blockStatus: true,
};

/**
 * Block size constraints (proto.md "Block size constraints"): `minimum` is a
 * power of two up to 64 KiB (requests must be aligned to it), `preferred` a
 * power of two of at least 512 (and at least `minimum`), `maximum` the largest
 * READ or WRITE payload, a multiple of `minimum` and at least `preferred`.
 */
export interface BlockSizes {
  readonly minimum: number;
  readonly preferred: number;
  readonly maximum: number;
}

/** One run of `base:allocation` status. */
export interface Extent {
  /** Bytes in this run; positive. */
  readonly length: number;
  /** Not allocated (NBD_STATE_HOLE). */
  readonly hole: boolean;
  /** Reads as zeroes (NBD_STATE_ZERO). */
  readonly zero: boolean;
}

/**
 * A virtual disk served over NBD. Offsets and lengths are checked by the server
 * before a method is called: always within `size`, aligned to
 * `blockSizes.minimum`, and for read and write at most `blockSizes.maximum`.
 * Methods may be called concurrently; a method that throws fails only its own
 * request (see `errno.ts` for how errors map to NBD errors).
 */
export interface BlockDevice {
  /** Size in bytes. */
  readonly size: number;
  readonly blockSizes: BlockSizes;
  readonly capabilities: BlockDeviceCapabilities;
  /** Free text shown to clients that ask (NBD_INFO_DESCRIPTION). */
  readonly description?: string;

  /** Reads `length` bytes at `offset`. The returned array is not modified later by the device. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Writes `data` at `offset`; with `fua`, resolves only once the data is durable. May keep `data`. */
  write(offset: number, data: Uint8Array, options: { fua: boolean }): Promise<void>;
  /** Resolves once every write that resolved before this call is durable. */
  flush(): Promise<void>;
  /** Hints that the range is unused; afterwards it may read as anything until written. */
  trim(offset: number, length: number, options: { fua: boolean }): Promise<void>;
  /**
   * Makes the range read as zeroes. `noHole`: keep it allocated; `fastZero`:
   * throw a NotSupportedError at once rather than do it slowly.
   */
  writeZeroes(
    offset: number,
    length: number,
    options: { fua: boolean; noHole: boolean; fastZero: boolean },
  ): Promise<void>;
  /**
   * Allocation status from `offset`, in order, covering at least one byte and
   * at most `length` bytes (fewer is allowed: the client asks again).
   */
  blockStatus(offset: number, length: number): Promise<Extent[]>;
}

/** An export as listed to clients (NBD_OPT_LIST). */
export interface ExportEntry {
  readonly name: string;
  readonly description?: string;
}

/**
 * Resolves export names. The name is opaque to the NBD layer: `image@snapshot`
 * is the provider's business, and so is making such an export read-only
 * (through the device's capabilities).
 */
export interface ExportProvider {
  /** Exports to show on NBD_OPT_LIST. */
  list(): Promise<ExportEntry[]>;
  /** Opens an export; `null` if there is no export by that name. */
  open(name: string): Promise<BlockDevice | null>;
  /** Called once for every device `open` returned, when the server is done with it. */
  release(device: BlockDevice): Promise<void>;
}

/**
 * Transmission flags for an export, derived from its capabilities alone.
 * Write-side features (trim, write zeroes, fast zero, FUA) are not advertised
 * on a read-only export; fast zero only with write zeroes. `structuredReplies`
 * adds NBD_FLAG_SEND_DF: our READ replies are always a single content chunk,
 * so "don't fragment" costs nothing, but the spec allows the flag only once
 * structured replies are negotiated.
 */
export function exportFlags(
  caps: BlockDeviceCapabilities,
  options: { structuredReplies?: boolean } = {},
): number {
  let flags: number = NBD_FLAG.HAS_FLAGS;
  if (caps.readOnly) {
    flags |= NBD_FLAG.READ_ONLY;
  } else {
    if (caps.fua) flags |= NBD_FLAG.SEND_FUA;
    if (caps.trim) flags |= NBD_FLAG.SEND_TRIM;
    if (caps.writeZeroes) {
      flags |= NBD_FLAG.SEND_WRITE_ZEROES;
      if (caps.fastZero) flags |= NBD_FLAG.SEND_FAST_ZERO;
    }
  }
  if (caps.flush) flags |= NBD_FLAG.SEND_FLUSH;
  if (caps.multiConn) flags |= NBD_FLAG.CAN_MULTI_CONN;
  if (options.structuredReplies) flags |= NBD_FLAG.SEND_DF;
  return flags;
}

const MAX_MINIMUM_BLOCK = 64 * 1024; // proto.md: minimum block size is at most 64 KiB
const UINT32_MAX = 0xffffffff;

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/**
 * Checks a device's size and block sizes against the spec's rules; RangeError
 * naming the bad value. The server calls it on every opened device so a
 * broken device fails the handshake instead of confusing clients.
 */
export function assertValidDevice(device: Pick<BlockDevice, "size" | "blockSizes">): void {
  const { size, blockSizes: bs } = device;
  if (!Number.isSafeInteger(size) || size < 0)
    throw new RangeError(`Device size ${size} is not a byte count`);
  if (!isPowerOfTwo(bs.minimum) || bs.minimum > MAX_MINIMUM_BLOCK) {
    throw new RangeError(`Minimum block size ${bs.minimum} is not a power of two up to 64 KiB`);
  }
  if (!isPowerOfTwo(bs.preferred) || bs.preferred < Math.max(bs.minimum, 512)) {
    throw new RangeError(
      `Preferred block size ${bs.preferred} is not a power of two of at least 512 and the minimum`,
    );
  }
  if (
    !Number.isInteger(bs.maximum) ||
    bs.maximum > UINT32_MAX ||
    bs.maximum < bs.preferred ||
    (bs.maximum % bs.minimum !== 0 && bs.maximum !== UINT32_MAX)
  ) {
    throw new RangeError(
      `Maximum block size ${bs.maximum} is not a multiple of the minimum of at least the preferred size`,
    );
  }
}
