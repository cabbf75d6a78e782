/**
 * Builds an imported image's block list from its staged parts, in order. A part whose
 * chunks were cut at its true offset contributes its chunk hashes as they are; seams
 * (a part's head and tail pieces) and parts cut at a wrong assumed offset (parts that
 * arrived before the ones in front of them, with sizes that are not whole chunks) are
 * read back from the stores and cut again into blocks, which are hashed and stored.
 * The image size is the object size rounded up to 512 bytes (zero padding).
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { HASH_BYTES, toHex } from "../../chunkstore/hash.ts";
import { hashedBlock } from "../../chunkstore/hashed-here.ts";
import type { ImportSession } from "./image-catalog.ts";
import { BATCH_BYTES, isZeroHash, type StagedPart } from "./part-stager.ts";

/** Image sizes are whole 512-byte sectors. */
export const SECTOR_BYTES = 512;

/** A piece of a part that lands in one block. */
interface Fragment {
  readonly block: number;
  readonly inBlock: number;
  readonly hash: Hash;
  readonly inPiece: number;
  readonly length: number;
}

const ZERO_ENTRY = new Uint8Array(HASH_BYTES);

/** The block hashes (32 bytes each, zero = hole) and image size for `parts` laid end to end. */
export async function assembleBlocks(
  session: ImportSession,
  parts: readonly StagedPart[],
): Promise<{ blocks: Uint8Array; size: number; objectSize: number }> {
  const cs = session.chunkSize;
  const objectSize = parts.reduce((n, p) => n + p.size, 0);
  const size = Math.ceil(objectSize / SECTOR_BYTES) * SECTOR_BYTES;
  const count = Math.ceil(size / cs);
  const blocks = new Uint8Array(count * HASH_BYTES);
  const fragments: Fragment[] = [];
  const addPiece = (start: number, length: number, hash: Hash) => {
    for (let pos = start; pos < start + length; ) {
      const block = Math.floor(pos / cs);
      const inBlock = pos - block * cs;
      const n = Math.min(cs - inBlock, start + length - pos);
      fragments.push({ block, inBlock, hash, inPiece: pos - start, length: n });
      pos += n;
    }
  };
  let offset = 0;
  for (const part of parts) {
    if (part.chunkSize !== cs)
      throw new RangeError(`A part was staged with chunk size ${part.chunkSize}, not ${cs}`);
    if (part.head) addPiece(offset, part.headLength, part.head);
    const fullStart = offset + part.headLength;
    const fullCount = part.full.byteLength / HASH_BYTES;
    if (fullStart % cs === 0) {
      blocks.set(part.full, (fullStart / cs) * HASH_BYTES);
    } else {
      for (let i = 0; i < fullCount; i++) {
        const entry = part.full.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
        addPiece(fullStart + i * cs, cs, isZeroHash(entry) ? toHex(ZERO_ENTRY) : toHex(entry));
      }
    }
    if (part.tail) addPiece(fullStart + fullCount * cs, part.tailLength, part.tail);
    offset += part.size;
  }
  if (fragments.length > 0) await rebuildSeams(session, fragments, blocks);
  return { blocks, size, objectSize };
}

/** Assembles every block that fragments touch, a batch at a time, and stores it. */
async function rebuildSeams(
  session: ImportSession,
  fragments: readonly Fragment[],
  blocks: Uint8Array,
): Promise<void> {
  const cs = session.chunkSize;
  const perBatch = Math.max(1, Math.floor(BATCH_BYTES / cs));
  const zero = toHex(ZERO_ENTRY);
  let i = 0;
  while (i < fragments.length) {
    // The fragments of up to perBatch consecutive touched blocks.
    const group: Fragment[][] = [];
    while (
      i < fragments.length &&
      (group.length < perBatch || fragments[i]!.block === group.at(-1)![0]!.block)
    ) {
      const f = fragments[i++]!;
      if (group.length > 0 && group.at(-1)![0]!.block === f.block) group.at(-1)!.push(f);
      else group.push([f]);
    }
    const wanted = [...new Set(group.flat().map((f) => f.hash))].filter((h) => h !== zero);
    const pieces = new Map<Hash, Uint8Array>();
    await Promise.all(wanted.map(async (h) => pieces.set(h, await session.readChunk(h))));
    const buf = new Uint8Array(group.length * cs);
    group.forEach((frags, k) => {
      for (const f of frags) {
        const piece = pieces.get(f.hash);
        if (piece) buf.set(piece.subarray(f.inPiece, f.inPiece + f.length), k * cs + f.inBlock);
      }
    });
    const hashed = await session.hashBlocks(buf, cs);
    const puts: { hash: Hash; bytes: Uint8Array }[] = [];
    group.forEach((frags, k) => {
      blocks.set(hashed.hashes.subarray(k * HASH_BYTES, (k + 1) * HASH_BYTES), frags[0]!.block * HASH_BYTES);
      const chunk = hashedBlock(hashed, k, cs);
      if (chunk) puts.push(chunk);
    });
    await session.putChunks(puts);
  }
}
