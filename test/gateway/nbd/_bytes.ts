/**
 * Byte-fixture helpers for the NBD protocol tests. Client messages are built
 * here by hand (not with the code under test) so the tests check the encoders
 * and parsers against an independent reading of the spec.
 */

/** Bytes from a hex string; whitespace is ignored. */
export function hex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, "");
  if (clean.length % 2 !== 0) throw new Error(`odd hex length: ${text}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Hex of bytes, for readable assertion failures. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

export function be16(v: number): Uint8Array {
  return new Uint8Array([(v >>> 8) & 0xff, v & 0xff]);
}

export function be32(v: number): Uint8Array {
  return new Uint8Array([(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
}

export function be64(v: bigint | number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(v));
  return out;
}

export function text(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

export const IHAVEOPT = hex("49484156454f5054");
export const REPLY_MAGIC = hex("0003e889045565a9");

/** A client option: IHAVEOPT, option, length, data. */
export function option(code: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  return concat(IHAVEOPT, be32(code), be32(data.byteLength), data);
}

/** NBD_OPT_INFO / NBD_OPT_GO data. */
export function infoData(name: string, infos: number[] = []): Uint8Array {
  const n = text(name);
  return concat(be32(n.byteLength), n, be16(infos.length), ...infos.map(be16));
}

/** NBD_OPT_{LIST,SET}_META_CONTEXT data. */
export function metaData(name: string, queries: string[]): Uint8Array {
  const n = text(name);
  return concat(
    be32(n.byteLength),
    n,
    be32(queries.length),
    ...queries.flatMap((q) => {
      const b = text(q);
      return [be32(b.byteLength), b];
    }),
  );
}

/** An option reply as the server must send it. */
export function optionReply(code: number, type: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  return concat(REPLY_MAGIC, be32(code), be32(type), be32(data.byteLength), data);
}

/** A transmission request: magic, flags, type, handle, offset, length, payload. */
export function request(
  type: number,
  fields: { flags?: number; handle?: bigint; offset?: number; length?: number; payload?: Uint8Array } = {},
): Uint8Array {
  const payload = fields.payload ?? new Uint8Array(0);
  return concat(
    hex("25609513"),
    be16(fields.flags ?? 0),
    be16(type),
    be64(fields.handle ?? 0n),
    be64(fields.offset ?? 0),
    be32(fields.length ?? payload.byteLength),
    payload,
  );
}

/**
 * Every way to deliver `bytes` in two pieces (split at each position, including
 * the empty first or last piece), plus one byte at a time.
 */
export function* splits(bytes: Uint8Array): Generator<{ label: string; chunks: Uint8Array[] }> {
  for (let i = 0; i <= bytes.byteLength; i++) {
    yield { label: `split at ${i}`, chunks: [bytes.slice(0, i), bytes.slice(i)] };
  }
  yield { label: "byte by byte", chunks: Array.from(bytes, (b) => new Uint8Array([b])) };
}
