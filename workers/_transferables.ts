/** The buffers a task result can hand back by transfer instead of by copy. */

/** Every distinct ArrayBuffer behind the top-level typed arrays of `value` (SharedArrayBuffers excluded). */
export function transferablesOf(value: unknown): ArrayBuffer[] {
  if (value === null || typeof value !== "object") return [];
  const buffers = new Set<ArrayBuffer>();
  for (const v of Object.values(value)) {
    if (ArrayBuffer.isView(v) && v.buffer instanceof ArrayBuffer) buffers.add(v.buffer);
  }
  return [...buffers];
}
