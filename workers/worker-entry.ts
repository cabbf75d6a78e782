/**
 * Piscina worker module: exports every task under its registry name, moving the buffers
 * of each result back to the caller instead of copying them.
 */
import { move, transferableSymbol, valueSymbol } from "piscina";
import { transferablesOf } from "./_transferables.ts";
import { tasks } from "./tasks.ts";

/** Wraps `value` so piscina transfers every ArrayBuffer found in its top-level typed arrays. */
function movable<T extends object>(value: T): T {
  const buffers = transferablesOf(value);
  if (buffers.length === 0) return value;
  return move({
    get [transferableSymbol]() {
      return buffers;
    },
    get [valueSymbol]() {
      return value;
    },
  } as never) as T;
}

export async function hashBlocks(input: Parameters<typeof tasks.hashBlocks>[0]) {
  return movable(tasks.hashBlocks(input));
}
