/**
 * BLAKE3-256 chunk addresses: computing, checking and converting them.
 *
 * The engine is the native BLAKE3 of @napi-rs/blake-hash (SIMD, about 5.5 GB/s per core
 * here, 15x blake3-wasm), with blake3-wasm as the fallback where no native build loads.
 * Both produce the same digests (test/chunkstore/hash.test.ts checks it). Bulk hashing on
 * the gateway's I/O path still goes through `workers/`, off the event loop.
 */
import { hash as blake3Wasm } from "blake3-wasm";
import type { Hash } from "./chunk-store.ts";

type HashFn = (bytes: Uint8Array) => Uint8Array;

async function loadNative(): Promise<HashFn | null> {
  if (typeof process !== "undefined" && process.env?.BLOCKMEND_HASH_ENGINE === "wasm") return null;
  try {
    const { blake3 } = await import("@napi-rs/blake-hash");
    return blake3 as unknown as HashFn;
  } catch {
    return null;
  }
}

const native = await loadNative();
const blake3: HashFn = native ?? (blake3Wasm as HashFn);

/** Which BLAKE3 implementation is in use ("native" or "wasm"); benchmarks print it. */
export const HASH_ENGINE: "native" | "wasm" = native ? "native" : "wasm";

/** BLAKE3-256 by the WebAssembly engine, whatever engine is in use (for cross-checks). */
export function hashBytesWasm(bytes: Uint8Array): Uint8Array {
  return blake3Wasm(bytes) as Uint8Array;
}

/** Bytes in a raw hash. */
export const HASH_BYTES = 32;

const HASH_PATTERN = /^[0-9a-f]{64}$/;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** True for 64 lowercase hex characters. */
export function isHash(value: unknown): value is Hash {
  return typeof value === "string" && HASH_PATTERN.test(value);
}

/** Throws a TypeError naming the value unless it is a well-formed hash. */
export function assertHash(value: unknown): asserts value is Hash {
  if (!isHash(value)) {
    const shown = typeof value === "string" ? `"${value.slice(0, 80)}"` : String(value);
    throw new TypeError(`Invalid chunk hash ${shown}: expected 64 lowercase hex characters`);
  }
}

/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i]!];
  return out;
}

/** Value of each hex digit by char code (0 for anything else). */
const NIBBLE = new Uint8Array(128);
for (let i = 0; i < 16; i++) {
  NIBBLE["0123456789abcdef".charCodeAt(i)] = i;
  NIBBLE["0123456789ABCDEF".charCodeAt(i)] = i;
}

/**
 * Bytes of a hex string (even length, validated by the caller). A table lookup per digit:
 * a block map commit decodes one hash per changed block (parseInt per byte cost 5 % of a
 * random-write run's CPU).
 */
export function fromHex(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length >>> 1);
  for (let i = 0, j = 0; i < out.length; i++, j += 2)
    out[i] = (NIBBLE[hex.charCodeAt(j) & 127]! << 4) | NIBBLE[hex.charCodeAt(j + 1) & 127]!;
  return out;
}

/** Raw 32-byte BLAKE3-256 of `bytes`. */
export function hashBytes(bytes: Uint8Array): Uint8Array {
  return blake3(bytes);
}

/** BLAKE3-256 of `bytes` as a chunk address. */
export function hashChunk(bytes: Uint8Array): Hash {
  return toHex(hashBytes(bytes));
}
