/**
 * Sizes written as text, one parser for the CLI and the HTTP API: bytes, or a number with
 * a binary unit. `K`, `M`, `G`, `T`, `P` and `KiB` ... `PiB` (any case) are powers of 1024,
 * as qemu-img reads them. `KB`, `MB`, `GB`, `TB`, `PB` are refused with a hint: half the
 * world reads them as powers of 1000, and a disk 7 % smaller than meant is a bad surprise.
 *
 * @example
 * parseSizeText("10G") // 10737418240
 * parseSizeText("1.5MiB") // 1572864
 * parseSizeText("10GB") // throws SizeTextError: "10GB" is ambiguous: ...
 */

/** The units, as the README and every error message list them. */
export const SIZE_UNITS_HELP =
  "bytes, or a number with K, M, G, T or P (also KiB, MiB, GiB, TiB, PiB; powers of 1024), for example 10G";

const POWERS = { "": 0, K: 1, M: 2, G: 3, T: 4, P: 5 } as const;

/** A size text that is not a size; the message says why and what is accepted. */
export class SizeTextError extends TypeError {
  override readonly name = "SizeTextError";
}

/** Parses `text` into bytes (a safe non-negative integer), or throws {@link SizeTextError}. */
export function parseSizeText(text: string): number {
  const t = text.trim();
  if (/^-\s*\d/.test(t))
    throw new SizeTextError(`"${text}" is negative: a size is 0 or more (${SIZE_UNITS_HELP})`);
  const decimal = /^(\d+(?:\.\d+)?)\s*([KMGTP])B$/i.exec(t);
  if (decimal) {
    const [, n, u] = decimal;
    const unit = u!.toUpperCase();
    const power = POWERS[unit as keyof typeof POWERS];
    const decimalBytes = Number(n) * 1000 ** power;
    const inBytes = Number.isSafeInteger(decimalBytes) ? String(decimalBytes) : "the number of bytes";
    throw new SizeTextError(
      `"${text}" is ambiguous: write ${n}${unit} or ${n}${unit}iB for ${n} x 1024^${power} bytes, or ${inBytes} for ${n} x 1000^${power}`,
    );
  }
  const m = /^(\d+(?:\.\d+)?)\s*(?:([KMGTP])(?:iB)?|B)?$/i.exec(t);
  if (!m) throw new SizeTextError(`"${text}" is not a size: use ${SIZE_UNITS_HELP}`);
  const power = POWERS[(m[2]?.toUpperCase() ?? "") as keyof typeof POWERS];
  const bytes = Number(m[1]) * 1024 ** power;
  if (!Number.isInteger(bytes)) throw new SizeTextError(`"${text}" is not a whole number of bytes`);
  if (!Number.isSafeInteger(bytes)) throw new SizeTextError(`"${text}" is too large`);
  return bytes;
}
