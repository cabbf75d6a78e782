import { describe, expect, test } from "bun:test";
import {
  assertValidDevice,
  type BlockDeviceCapabilities,
  exportFlags,
} from "../../../gateway/nbd/block-device.ts";
import { NBD_FLAG } from "../../../gateway/nbd/constants.ts";

const CAPABILITY_NAMES = [
  "readOnly",
  "flush",
  "fua",
  "trim",
  "writeZeroes",
  "fastZero",
  "multiConn",
  "blockStatus",
] as const satisfies readonly (keyof BlockDeviceCapabilities)[];

/** Every combination of the 8 capabilities. */
function* allCapabilities(): Generator<BlockDeviceCapabilities> {
  for (let mask = 0; mask < 1 << CAPABILITY_NAMES.length; mask++) {
    const caps = Object.fromEntries(CAPABILITY_NAMES.map((name, i) => [name, (mask & (1 << i)) !== 0]));
    yield caps as unknown as BlockDeviceCapabilities;
  }
}

describe("exportFlags over the whole capability matrix", () => {
  // The rules, stated once more independently of the implementation (nbdkit tests/test-eflags.sh style).
  function expected(c: BlockDeviceCapabilities, structured: boolean): number {
    const writable = !c.readOnly;
    return (
      NBD_FLAG.HAS_FLAGS |
      (c.readOnly ? NBD_FLAG.READ_ONLY : 0) |
      (c.flush ? NBD_FLAG.SEND_FLUSH : 0) |
      (writable && c.fua ? NBD_FLAG.SEND_FUA : 0) |
      (writable && c.trim ? NBD_FLAG.SEND_TRIM : 0) |
      (writable && c.writeZeroes ? NBD_FLAG.SEND_WRITE_ZEROES : 0) |
      (writable && c.writeZeroes && c.fastZero ? NBD_FLAG.SEND_FAST_ZERO : 0) |
      (c.multiConn ? NBD_FLAG.CAN_MULTI_CONN : 0) |
      (structured ? NBD_FLAG.SEND_DF : 0)
    );
  }

  test("all 256 combinations, with and without structured replies", () => {
    let checked = 0;
    for (const caps of allCapabilities()) {
      for (const structured of [false, true]) {
        const flags = exportFlags(caps, { structuredReplies: structured });
        if (flags !== expected(caps, structured)) {
          throw new Error(
            `caps ${JSON.stringify(caps)} structured=${structured}: got 0x${flags.toString(16)}`,
          );
        }
        checked++;
      }
    }
    expect(checked).toBe(512);
  });

  test("invariants that must hold for every combination", () => {
    for (const caps of allCapabilities()) {
      const flags = exportFlags(caps);
      expect(flags & NBD_FLAG.HAS_FLAGS).toBe(NBD_FLAG.HAS_FLAGS); // proto.md: MUST always be 1
      expect(flags & NBD_FLAG.SEND_DF).toBe(0); // only after structured replies
      expect(flags & NBD_FLAG.ROTATIONAL).toBe(0);
      expect(flags & NBD_FLAG.SEND_CACHE).toBe(0);
      expect(flags & NBD_FLAG.SEND_RESIZE).toBe(0);
      expect(flags & 0xffff).toBe(flags); // fits the 16-bit field
      if (flags & NBD_FLAG.SEND_FAST_ZERO) expect(flags & NBD_FLAG.SEND_WRITE_ZEROES).toBeTruthy();
      if (flags & NBD_FLAG.READ_ONLY) {
        expect(flags & (NBD_FLAG.SEND_TRIM | NBD_FLAG.SEND_WRITE_ZEROES | NBD_FLAG.SEND_FUA)).toBe(0);
      }
    }
  });

  test("a typical writable image and a read-only snapshot", () => {
    const all: BlockDeviceCapabilities = {
      readOnly: false,
      flush: true,
      fua: true,
      trim: true,
      writeZeroes: true,
      fastZero: true,
      multiConn: true,
      blockStatus: true,
    };
    expect(exportFlags(all, { structuredReplies: true })).toBe(0x9ed);
    expect(exportFlags({ ...all, readOnly: true })).toBe(0x107);
  });
});

describe("assertValidDevice", () => {
  const ok = { size: 1 << 20, blockSizes: { minimum: 1, preferred: 4096, maximum: 32 << 20 } };

  test("accepts sensible block sizes", () => {
    assertValidDevice(ok);
    assertValidDevice({ size: 0, blockSizes: { minimum: 512, preferred: 65536, maximum: 0xffffffff } });
    assertValidDevice({ size: 10, blockSizes: { minimum: 4096, preferred: 4096, maximum: 4096 } });
  });

  test.each([
    ["negative size", { ...ok, size: -1 }],
    ["fractional size", { ...ok, size: 1.5 }],
    ["minimum not a power of two", { ...ok, blockSizes: { ...ok.blockSizes, minimum: 3 } }],
    [
      "minimum above 64 KiB",
      { ...ok, blockSizes: { minimum: 1 << 17, preferred: 1 << 17, maximum: 1 << 20 } },
    ],
    ["preferred below 512", { ...ok, blockSizes: { ...ok.blockSizes, preferred: 256 } }],
    ["preferred below minimum", { ...ok, blockSizes: { minimum: 8192, preferred: 4096, maximum: 1 << 20 } }],
    ["maximum below preferred", { ...ok, blockSizes: { ...ok.blockSizes, maximum: 1024 } }],
    [
      "maximum not a multiple of minimum",
      { ...ok, blockSizes: { minimum: 4096, preferred: 4096, maximum: 10000 } },
    ],
    ["maximum above u32", { ...ok, blockSizes: { ...ok.blockSizes, maximum: 2 ** 32 } }],
  ])("rejects %s", (_label, device) => {
    expect(() => assertValidDevice(device)).toThrow(RangeError);
  });
});
