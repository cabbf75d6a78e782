/** Byte sizes on the command line: `10G`, `512MiB`, `1073741824` in (gateway/image/size-text.ts), `1.0 GiB` out. */
import { parseSizeText, SIZE_UNITS_HELP, SizeTextError } from "../gateway/image/size-text.ts";

export { SIZE_UNITS_HELP };

/**
 * Parses a size (the API's parser), for `what` ("size", "chunk size"); with `positive`,
 * 0 is refused too. Throws a TypeError naming `what` and the text.
 *
 * @example
 * parseSize("1G") // 1073741824
 * parseSize("0", "size", { positive: true }) // throws: Invalid size "0": must be more than 0 ...
 */
export function parseSize(text: string, what = "size", options: { positive?: boolean } = {}): number {
  let bytes: number;
  try {
    bytes = parseSizeText(text);
  } catch (err) {
    if (err instanceof SizeTextError) throw new TypeError(`Invalid ${what} ${err.message}`);
    throw err;
  }
  if (options.positive && bytes === 0)
    throw new TypeError(`Invalid ${what} "${text}": must be more than 0 (${SIZE_UNITS_HELP})`);
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
