/** Byte sizes on the command line: `1G`, `512M`, `64K`, `1073741824` in, `1.0 GiB` out. */

/** Binary multipliers, as qemu-img and dd read them (`K`, `KB`, `KiB` are all 1024). */
const UNITS = { "": 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 } as const;

/**
 * Parses a size with an optional binary suffix (K, M, G, T, P; with or without `B` or
 * `iB`). Throws a TypeError naming `what` on anything else.
 *
 * @example
 * parseSize("1G") // 1073741824
 * parseSize("1.5M") // 1572864
 */
export function parseSize(text: string, what = "size"): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([KMGTP])(?:i?B)?|B)?\s*$/i.exec(text);
  const unit = (m?.[2]?.toUpperCase() ?? "") as keyof typeof UNITS;
  const bytes = m ? Number(m[1]) * UNITS[unit] : Number.NaN;
  if (!Number.isSafeInteger(bytes)) {
    throw new TypeError(
      `Invalid ${what} "${text}": use bytes or a number with K, M, G, T or P (for example 10G)`,
    );
  }
  return bytes;
}

/** A size for people: `512 B`, `20.0 MiB`; binary units, one decimal. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return i === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[i]}`;
}
