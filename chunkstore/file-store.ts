/**
 * `file:` backend: chunks in append-only segment files under a local directory.
 *
 * Layout of `DIR`:
 * - `segments/NNNNNNNN.seg`: records (header with hash and length, then the data;
 *   `_segment-format.ts`). Segments are the source of truth.
 * - `index/`: an LMDB environment: hash -> (segment, offset, length), plus per-segment
 *   total/live bytes, store totals, and a checkpoint (segment, offset) up to which the
 *   segments are fully indexed.
 * - `refs/<name>`: one JSON file `{version, value}` per ref, replaced atomically.
 * - `identity`: `{"identity": UUID, "createdAt"}`, written once when the directory is first
 *   initialised (a wiped directory gets a new one: `chunk-store.ts`, StoreProbe).
 * - `lock`: flock(2)-locked by the process that has the store open, and naming it; a
 *   second process (or a second open in this one) is refused with StoreLockedError. The
 *   kernel drops the lock when its holder dies, so it never stays stuck.
 *
 * Writes are group-committed: puts are verified, then queue up; one committer appends
 * a batch of them with one write that is synced to disk (O_DSYNC), records the batch in
 * LMDB in one transaction, and only then acknowledges it. While one batch is written the
 * next one gathers (see `#drain` for how the two overlap).
 *
 * Crash safety: LMDB runs with `noSync`. After a process crash the OS still holds its
 * writes; it may only lack the last batches, whose records sit synced in the segments past
 * the checkpoint: opening rescans that tail, indexing whole records and cutting the first
 * torn or invalid one off. After a system crash (another boot id in `index-dirty`), or when
 * the index is missing, damaged or does not match the segments, it is rebuilt from them.
 * Opening never needs manual repair.
 *
 * Deleting only drops the index entry; `compact()` rewrites mostly-dead segments.
 */
import { Buffer } from "node:buffer";
import { constants as fsConstants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import * as fs from "node:fs/promises";
import { join } from "node:path";
import { type Database, open as openLmdb, type RootDatabase } from "lmdb";
import { type FileLock, tryLockFile } from "../runtime/file-lock.ts";
import { uninitializedBytes } from "../runtime/uninitialized-bytes.ts";
import {
  decodeHeader,
  encodeHeader,
  parseSegmentFileName,
  RECORD,
  recordBytes,
  segmentFileName,
} from "./_segment-format.ts";
import type {
  CasResult,
  ChunkPut,
  ChunkStore,
  Hash,
  ListOptions,
  RefEntry,
  RefGuard,
  RefPage,
  StoreProbe,
  StoreStats,
  SweepResult,
} from "./chunk-store.ts";
import { CondemnedSet } from "./condemned.ts";
import {
  ChunkCorruptError,
  ChunkNotFoundError,
  StoreFullError,
  StoreLockedError,
  StoreUnavailableError,
} from "./errors.ts";
import { assertHash, hashBytes } from "./hash.ts";
import { IdentityExpectation, isIdentity, newIdentity } from "./identity.ts";
import { MAX_CHUNK_BYTES, REF_NAME_PATTERN } from "./limits.ts";
import { isPrepared, RefTable } from "./ref-table.ts";
import { verifyPut, verifyPutMany, verifyRead } from "./verify.ts";

/** Options of {@link FileStore.open}. */
export interface FileStoreOptions {
  /** Free bytes to leave on the filesystem; puts that would go below fail. Default: min(1 GiB, 5% of the filesystem). */
  readonly reserveBytes?: number;
  /** A new segment is started when the active one would grow past this. Default 256 MiB. */
  readonly segmentBytes?: number;
  /** Name in errors and logs. Default `file:${dir}`. */
  readonly name?: string;
  /** {@link FileStore.compact} rewrites a sealed segment whose live fraction is below this. Default 0.85. */
  readonly compactThreshold?: number;
  /**
   * Bytes a second compaction moves at most (it shares the disk and the append stream
   * with puts). Default 64 MiB/s; 0: unpaced.
   */
  readonly compactBytesPerSecond?: number;
}

/** What compaction did. `bytesReclaimed` is bytes removed minus bytes rewritten. */
export interface CompactResult {
  readonly segmentsRewritten: number;
  readonly bytesReclaimed: number;
}

/** Default pace of compaction's moves. */
const DEFAULT_COMPACT_BYTES_PER_SECOND = 64 * 1024 * 1024;
/**
 * Compaction's moves in flight at once: they go through the append queue with the puts, so
 * a put waits behind at most this much of them (it was 64 MiB, a few hundred ms of disk).
 */
const COMPACT_STEP_BYTES = 4 * 1024 * 1024;

/** Compaction seals a mostly dead active segment once it holds at least this much. */
const MIN_SEAL_BYTES = 4 * 1024 * 1024;
/** Quiet time after the last sweep before the segments it emptied are compacted. */
const SWEEP_COMPACT_DELAY_MS = 1000;

/** Big enough for long sequential I/O, small enough that compacting one segment is a short job. */
const DEFAULT_SEGMENT_BYTES = 256 * 1024 * 1024;
/** Reserve cap: enough headroom for the OS and LMDB on any disk. */
const MAX_DEFAULT_RESERVE_BYTES = 1024 * 1024 * 1024;
/** Reserve on small filesystems, where 1 GiB would be most of the disk. */
const DEFAULT_RESERVE_FRACTION = 0.05;
/**
 * The high-water mark, above the reserve: a store with less free space than reserve plus
 * this reports itself full (gateways then place no new chunks on it), so writes go
 * elsewhere before a put is refused mid-commit. One batch's worth (64 MiB).
 */
export const FULL_MARGIN_BYTES = 64 * 1024 * 1024;
/** A full store counts as not full again only with twice the margin free (no flapping at the line). */
const NOT_FULL_MARGIN_BYTES = 2 * FULL_MARGIN_BYTES;
/**
 * A segment under 85% live is rewritten: disk use then stays within 1/0.85 = 1.18x of the
 * live data. The price is copying (up to 5.7 bytes moved per byte freed, for a segment just
 * under the line); compaction runs after garbage collection's sweeps, not continuously.
 */
const DEFAULT_COMPACT_THRESHOLD = 0.85;
/** Most bytes appended by one write: bounds how long one commit holds later puts. */
const MAX_WRITE_BYTES = 64 * 1024 * 1024;
/** Records per batch: one writev of a header and a data buffer each must fit IOV_MAX (1024 on Linux). */
const MAX_RECORDS_PER_WRITE = 511;
/** Smallest batch worth splitting a queue for: below it one fsync per batch dominates. */
const PIPELINE_MIN_BYTES = 1024 * 1024;
/** Scan read size: holds the largest record, so a record never needs more than one refill. */
const SCAN_BUFFER_BYTES = 2 * (RECORD.HEADER_BYTES + MAX_CHUNK_BYTES);
/** Segment files kept open for reads; older idle handles are closed beyond this. */
const MAX_OPEN_SEGMENTS = 128;
/** Keys per LMDB read transaction while listing: keeps read transactions short. */
const LIST_PAGE = 1000;
/** Version of the index layout (not of the segments): a different value means rebuild. */
const INDEX_FORMAT = 1;
/** Bytes of one index value: segment u32, length u32, offset f64 (segments may pass 4 GiB). */
const LOCATION_BYTES = 16;
/**
 * O_DSYNC on the active segment: a batch's one write returns only once it is on disk. Write
 * and sync are then one call on an I/O thread; a separate fsync would wait for the event
 * loop, which is busy hashing the next batch. Undefined where the OS lacks it (Windows).
 */
const O_DSYNC = fsConstants.O_DSYNC as number | undefined;
/** The identity file and the lock file in the store directory. */
const IDENTITY_FILE = "identity";
const LOCK_FILE = "lock";

/** Present while the index may hold unsynced writes; holds the id of the boot that wrote them. */
const DIRTY_MARKER = "index-dirty";
/** LMDB's meta page magic (MDB_MAGIC), in host byte order as LMDB writes it. */
const LMDB_MAGIC = new Uint8Array(new Uint32Array([0xbeefc0de]).buffer);
/** LMDB's first meta page header, magic included, lies within these bytes of data.mdb. */
const LMDB_HEAD_BYTES = 64;
/** LMDB reads two meta pages of at least 4 KiB each when it opens a file. */
const LMDB_MIN_BYTES = 2 * 4096;

interface Location {
  readonly segment: number;
  readonly offset: number;
  readonly length: number;
}

interface SegmentCounters {
  /** Record bytes in the file (including dead records and unreadable junk of sealed segments). */
  total: number;
  /** Record bytes of records the index points at. */
  live: number;
}

interface Totals {
  chunks: number;
  bytes: number;
}

/** One queued append: a new chunk, or (with `from`) a live record moved by compaction. */
interface Pending {
  readonly hash: Hash;
  readonly key: Buffer;
  readonly bytes: Uint8Array;
  readonly from: Location | null;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

/**
 * A chunk store in a local directory: append-only segments, an LMDB index, one fsync per
 * batch of puts, compaction to reclaim space of deleted chunks. Opening never needs repair.
 *
 * @example
 * const store = await FileStore.open("/var/lib/blockmend/a");
 * await store.put(hash, bytes);
 * await store.close();
 */
export class FileStore implements ChunkStore {
  readonly name: string;
  readonly capabilities = {
    chunks: true,
    refs: true,
    persistent: true,
    sweep: true,
    local: true,
    refGuards: true,
  } as const;
  readonly #condemned = new CondemnedSet();

  readonly #dir: string;
  readonly #segmentBytes: number;
  readonly #reserveBytes: number;
  readonly #compactThreshold: number;
  readonly #compactRate: number;
  /** When compaction may move its next step (its pace). */
  #compactNext = 0;
  readonly #env: RootDatabase;
  readonly #index: Database<Buffer, Buffer>;
  readonly #meta: Database<unknown, string>;
  readonly #segments: Map<number, SegmentCounters>;
  readonly #totals: Totals;
  readonly #readers: SegmentReaders;
  readonly #refs: RefTable;
  #active: { n: number; handle: FileHandle; size: number };
  #queue: Pending[] = [];
  #queuedBytes = 0;
  readonly #waiting = new Map<Hash, Promise<void>>();
  #committing: Promise<void> | null = null;
  #compacting: Promise<CompactResult> | null = null;
  /** A compaction scheduled after a sweep (one at a time, shortly after the last sweep). */
  #compactTimer: ReturnType<typeof setTimeout> | undefined;
  #refLock: Promise<unknown> = Promise.resolve();
  #fsyncs = 0;
  #closed = false;
  /** At the high-water mark (see FULL_MARGIN_BYTES); set by stats and by refused puts. */
  #full = false;
  readonly #identity: string;
  readonly #expected = new IdentityExpectation();
  readonly #lock: FileLock;

  private constructor(
    dir: string,
    options: FileStoreOptions,
    reserveBytes: number,
    state: OpenedState,
    identity: string,
    lock: FileLock,
  ) {
    this.#identity = identity;
    this.#lock = lock;
    this.name = options.name ?? `file:${dir}`;
    this.#dir = dir;
    this.#segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    this.#compactThreshold = options.compactThreshold ?? DEFAULT_COMPACT_THRESHOLD;
    this.#compactRate = options.compactBytesPerSecond ?? DEFAULT_COMPACT_BYTES_PER_SECOND;
    this.#reserveBytes = reserveBytes;
    this.#env = state.env;
    this.#index = state.index;
    this.#meta = state.meta;
    this.#segments = state.segments;
    this.#totals = state.totals;
    this.#active = state.active;
    this.#refs = state.refs;
    this.#readers = new SegmentReaders(join(dir, "segments"));
  }

  /** Opens (creating if needed) the store in `dir`, rescanning the unindexed tail of the segments. */
  static async open(dir: string, options: FileStoreOptions = {}): Promise<FileStore> {
    const name = options.name ?? `file:${dir}`;
    await fs.mkdir(dir, { recursive: true });
    const attempt = await tryLockFile(join(dir, LOCK_FILE), `chunk store ${dir}`);
    if ("heldBy" in attempt) throw new StoreLockedError(name, attempt.heldBy);
    try {
      for (const sub of ["segments", "refs"]) await fs.mkdir(join(dir, sub), { recursive: true });
      const identity = await loadIdentity(dir, name);
      let reserveBytes = options.reserveBytes;
      if (reserveBytes === undefined) {
        const st = await fs.statfs(dir);
        reserveBytes = Math.min(
          MAX_DEFAULT_RESERVE_BYTES,
          Math.floor(st.blocks * st.bsize * DEFAULT_RESERVE_FRACTION),
        );
      }
      const state = await openState(dir, name);
      return new FileStore(dir, options, reserveBytes, state, identity, attempt.lock);
    } catch (err) {
      attempt.lock.release();
      throw err;
    }
  }

  async probe(): Promise<StoreProbe> {
    if (this.#closed) throw new StoreUnavailableError(this.name, "the store is closed");
    return { identity: this.#identity, capabilities: this.capabilities };
  }

  expectIdentity(identity: string | null): void {
    this.#expected.set(identity);
  }

  async scanRefs(prefix: string, options?: { after?: string; limit?: number }): Promise<RefPage> {
    this.#assertOpen();
    return this.#refs.scan(prefix, options);
  }

  /** Durable segment writes so far (O_DSYNC writes, or write plus fdatasync): one per batch, never one per chunk. */
  get fsyncCount(): number {
    return this.#fsyncs;
  }

  async has(hashes: readonly Hash[]): Promise<boolean[]> {
    this.#assertOpen();
    return hashes.map((h) => {
      assertHash(h);
      return this.#index.doesExist(keyOf(h));
    });
  }

  async get(hash: Hash): Promise<Uint8Array> {
    assertHash(hash);
    this.#assertOpen();
    const bytes = await this.#read(hash);
    if (!bytes) throw new ChunkNotFoundError(this.name, hash);
    return bytes;
  }

  async getMany(hashes: readonly Hash[]): Promise<(Uint8Array | undefined)[]> {
    for (const h of hashes) assertHash(h);
    this.#assertOpen();
    return Promise.all(hashes.map((h) => this.#read(h)));
  }

  async put(hash: Hash, bytes: Uint8Array): Promise<{ existed: boolean }> {
    verifyPut(this.name, hash, bytes);
    this.#assertOpen();
    this.#condemned.revive([hash]);
    return this.#admit(hash, bytes);
  }

  async putMany(chunks: readonly ChunkPut[]): Promise<{ existed: boolean }[]> {
    verifyPutMany(this.name, chunks);
    this.#assertOpen();
    this.#condemned.revive(chunks.map((c) => c.hash));
    return Promise.all(chunks.map((c) => this.#admit(c.hash, c.bytes)));
  }

  async condemn(hashes: readonly Hash[], token: string): Promise<number> {
    this.#assertOpen();
    return this.#condemned.condemn(hashes, token, (h) => this.#index.doesExist(keyOf(h)));
  }

  /** Deletes the still-condemned ones (index entries; compaction frees the bytes), one index sync. */
  async sweep(hashes: readonly Hash[], token: string): Promise<SweepResult> {
    this.#assertOpen();
    const { deleted, bytes } = this.#deleteManySync(this.#condemned.take(hashes, token).map(keyOf));
    if (deleted > 0) {
      await syncEnv(this.#env);
      this.#compactSoon();
    }
    return { deleted, bytes };
  }

  /**
   * Removes the index entry, durably (the index is synced). The record stays in its
   * segment until compaction. A full index rebuild (after the index was lost) may
   * therefore resurrect deleted, not yet compacted chunks: harmless, the content still
   * matches its address and GC deletes it again; a live chunk is never lost that way.
   */
  async delete(hash: Hash): Promise<boolean> {
    assertHash(hash);
    this.#assertOpen();
    if (this.#deleteManySync([keyOf(hash)]).deleted === 0) return false;
    await syncEnv(this.#env);
    return true;
  }

  /**
   * Drops chunks' index entries (their bytes stay in the segments until compaction) in ONE
   * index transaction (a transaction per chunk cost a
   * store ~2000 commits a second under a fast sweep, CPU the VM's requests waited for).
   */
  #deleteManySync(keys: readonly Buffer[]): { deleted: number; bytes: number } {
    let deleted = 0;
    let bytes = 0;
    const segments = new Map<number, SegmentCounters>();
    const found: Buffer[] = [];
    for (const key of keys) {
      const loc = this.#lookup(key);
      if (!loc) continue;
      const seg = segments.get(loc.segment) ?? { ...this.#segments.get(loc.segment)! };
      seg.live -= recordBytes(loc.length);
      segments.set(loc.segment, seg);
      found.push(key);
      deleted++;
      bytes += loc.length;
    }
    if (deleted === 0) return { deleted, bytes };
    const totals = { chunks: this.#totals.chunks - deleted, bytes: this.#totals.bytes - bytes };
    this.#env.transactionSync(() => {
      for (const key of found) this.#index.removeSync(key);
      for (const [n, seg] of segments) this.#meta.putSync(segmentKey(n), seg);
      this.#meta.putSync("totals", totals);
    });
    for (const [n, seg] of segments) this.#segments.set(n, seg);
    Object.assign(this.#totals, totals);
    return { deleted, bytes };
  }

  async *list(options: ListOptions = {}): AsyncIterable<Hash> {
    if (options.after !== undefined) assertHash(options.after);
    this.#assertOpen();
    let start = options.after === undefined ? undefined : keyOf(options.after);
    for (;;) {
      const page = [
        ...this.#index.getKeys({ start, exclusiveStart: start !== undefined, limit: LIST_PAGE }),
      ].map((k) => Buffer.from(k));
      for (const k of page) yield k.toString("hex");
      if (page.length < LIST_PAGE) return;
      start = page[page.length - 1];
    }
  }

  async stats(): Promise<StoreStats> {
    this.#assertOpen();
    let reclaimableBytes = 0;
    for (const c of this.#segments.values()) reclaimableBytes += c.total - c.live;
    const free = await freeBytes(this.#dir);
    const above = free - this.#reserveBytes;
    if (above < FULL_MARGIN_BYTES) this.#full = true;
    else if (above >= NOT_FULL_MARGIN_BYTES) this.#full = false;
    return {
      chunks: this.#totals.chunks,
      bytes: this.#totals.bytes,
      freeBytes: free,
      reclaimableBytes,
      full: this.#full,
    };
  }

  /**
   * Rewrites every sealed segment whose live fraction fell below `compactThreshold`:
   * its live records are appended again (group-committed, fsynced), the index is
   * repointed and synced, then the old file is removed. Concurrent reads keep working.
   * A segment holding a corrupt live record is left alone, so the copy can be repaired.
   */
  async compact(): Promise<CompactResult> {
    this.#assertOpen();
    this.#compacting ??= this.#compactAll().finally(() => {
      this.#compacting = null;
    });
    return this.#compacting;
  }

  async getRef(name: string): Promise<RefEntry | null> {
    this.#assertOpen();
    return this.#refs.get(name);
  }

  async casRef(name: string, expected: string | null, value: string, guard?: RefGuard): Promise<CasResult> {
    this.#assertOpen();
    return this.#withRefLock(async () => {
      const prepared = this.#refs.prepare(name, expected, value, guard);
      if (!isPrepared(prepared)) return prepared;
      const refsDir = join(this.#dir, "refs");
      const temp = join(refsDir, `.${name}.tmp`); // a leading dot is never a valid ref name
      const file = await fs.open(temp, "w");
      try {
        await file.writeFile(JSON.stringify({ version: prepared.version, value: prepared.value }));
        await file.sync();
      } finally {
        await file.close();
      }
      await fs.rename(temp, join(refsDir, name));
      await syncDir(refsDir);
      this.#refs.set(name, prepared);
      return { ok: true, version: prepared.version };
    });
  }

  async deleteRef(name: string, expected: string): Promise<CasResult> {
    this.#assertOpen();
    return this.#withRefLock(async () => {
      const current = this.#refs.get(name);
      if (current?.version !== expected) return { ok: false, current };
      const refsDir = join(this.#dir, "refs");
      await fs.rm(join(refsDir, name));
      await syncDir(refsDir);
      this.#refs.remove(name);
      return { ok: true, version: expected };
    });
  }

  async listRefs(prefix = ""): Promise<string[]> {
    this.#assertOpen();
    return this.#refs.names(prefix);
  }

  /** Waits for pending writes and compaction, then closes files and the index. */
  /** Garbage collection frees space only when segments are rewritten: soon after the sweeps stop. */
  #compactSoon(): void {
    clearTimeout(this.#compactTimer);
    this.#compactTimer = setTimeout(() => {
      if (this.#closed) return;
      this.compact().catch((err) => console.error(`${this.name}: compaction after a sweep failed:`, err));
    }, SWEEP_COMPACT_DELAY_MS);
    (this.#compactTimer as { unref?: () => void }).unref?.();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#compactTimer);
    await this.#compacting?.catch(() => {});
    while (this.#committing) await this.#committing;
    await this.#refLock;
    await this.#readers.close();
    await this.#active.handle.close();
    await syncEnv(this.#env);
    await this.#env.close();
    await fs.rm(join(this.#dir, DIRTY_MARKER), { force: true });
    await syncDir(this.#dir);
    this.#lock.release();
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreUnavailableError(this.name, "the store is closed");
    this.#expected.check(this.name, this.#identity);
  }

  #lookup(key: Buffer): Location | undefined {
    const v = this.#index.get(key);
    return v && decodeLocation(v);
  }

  /** Reads and verifies a chunk; undefined if absent. */
  async #read(hash: Hash): Promise<Uint8Array | undefined> {
    const key = keyOf(hash);
    for (let attempt = 0; ; attempt++) {
      const loc = this.#lookup(key);
      if (!loc) return undefined;
      // Not zeroed first: a read that does not fill it is refused below.
      const record = uninitializedBytes(recordBytes(loc.length));
      let n: number;
      try {
        n = await this.#readers.read(loc.segment, record, loc.offset);
      } catch (e) {
        // Compaction may have moved the record and removed its segment since the lookup.
        if (attempt === 0 && errorCode(e) === "ENOENT") continue;
        throw new StoreUnavailableError(this.name, `cannot read segment ${loc.segment}: ${message(e)}`, {
          cause: e,
        });
      }
      const where = `segment ${loc.segment} offset ${loc.offset}`;
      if (n < record.byteLength)
        throw new ChunkCorruptError(this.name, hash, `record at ${where} is cut short`);
      const header = decodeHeader(record, 0);
      if (!header || header.length !== loc.length || !key.equals(header.hash)) {
        throw new ChunkCorruptError(this.name, hash, `record header at ${where} does not match the index`);
      }
      return verifyRead(this.name, hash, record.subarray(RECORD.HEADER_BYTES));
    }
  }

  /** Queues a verified chunk unless it is stored or already queued. */
  #admit(hash: Hash, bytes: Uint8Array): Promise<{ existed: boolean }> {
    const queued = this.#waiting.get(hash);
    if (queued) return queued.then(() => ({ existed: true }));
    const key = keyOf(hash);
    if (this.#index.doesExist(key)) return Promise.resolve({ existed: true });
    const done = this.#enqueue(hash, key, bytes, null);
    this.#waiting.set(hash, done);
    return done.then(() => ({ existed: false }));
  }

  /** `bytes` is referenced, not copied, until its batch is written: callers own it until the put resolves. */
  #enqueue(hash: Hash, key: Buffer, bytes: Uint8Array, from: Location | null): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ hash, key, bytes, from, resolve, reject });
      this.#queuedBytes += recordBytes(bytes.byteLength);
      // Start on a microtask so puts issued in the same turn share the first batch.
      this.#committing ??= Promise.resolve().then(() => this.#drain());
    });
  }

  /**
   * The single committer: batches the queue until it is empty. Never throws. Pipelined,
   * so that callers hash their next puts while the disk works rather than in turns with
   * it: a batch's callers are released once the next batch's write is under way, and a
   * batch leaves half of a long queue for the next one.
   */
  async #drain(): Promise<void> {
    let release = () => {};
    try {
      while (this.#queue.length > 0) {
        const first = recordBytes(this.#queue[0]!.bytes.byteLength);
        const rotate = this.#active.size > 0 && this.#active.size + first > this.#segmentBytes;
        const room = Math.min(
          MAX_WRITE_BYTES,
          this.#segmentBytes - (rotate ? 0 : this.#active.size),
          Math.max(PIPELINE_MIN_BYTES, this.#queuedBytes / 2),
        );
        let count = 1;
        let size = first;
        for (; count < this.#queue.length && count < MAX_RECORDS_PER_WRITE; count++) {
          const next = recordBytes(this.#queue[count]!.bytes.byteLength);
          if (size + next > room) break;
          size += next;
        }
        this.#queuedBytes -= size;
        release = await this.#commit(this.#queue.splice(0, count), size, rotate, release);
      }
    } finally {
      release();
      this.#committing = null;
    }
  }

  /**
   * Appends one batch with one write and one fsync and indexes it. Calls `previous` (the
   * release of the batch before) once this write is under way; returns this batch's release.
   */
  async #commit(batch: Pending[], size: number, rotate: boolean, previous: () => void): Promise<() => void> {
    try {
      const free = await freeBytes(this.#dir);
      if (free - size < this.#reserveBytes) {
        const full = new StoreFullError(
          this.name,
          `${free} bytes free; writing ${size} bytes would go below the reserve of ${this.#reserveBytes} bytes`,
        );
        // Compaction's moves may use the reserve: compaction frees more than it writes.
        this.#full = true;
        const moves = batch.filter((p) => p.from);
        if (moves.length === 0) throw full;
        this.#release(
          batch.filter((p) => !p.from),
          full,
        )();
        batch = moves;
        size = moves.reduce((sum, p) => sum + recordBytes(p.bytes.byteLength), 0);
      }
      if (rotate) await this.#rotate();
      const active = this.#active;
      const start = active.size;
      // One writev of [header, data, header, data, ...]: the chunk bytes are not copied.
      const headers = Buffer.allocUnsafe(batch.length * RECORD.HEADER_BYTES);
      const parts: Uint8Array[] = [];
      const offsets: number[] = [];
      let pos = 0;
      batch.forEach((p, i) => {
        offsets.push(start + pos);
        encodeHeader(headers, i * RECORD.HEADER_BYTES, p.key, p.bytes.byteLength);
        parts.push(headers.subarray(i * RECORD.HEADER_BYTES, (i + 1) * RECORD.HEADER_BYTES), p.bytes);
        pos += recordBytes(p.bytes.byteLength);
      });
      try {
        const writing = writevAll(active.handle, parts, size, start);
        previous();
        await writing;
        if (O_DSYNC === undefined) await active.handle.datasync();
        this.#fsyncs++;
        this.#record(batch, offsets, active.n, start + size);
      } catch (e) {
        await active.handle.truncate(start).catch(() => {}); // a failed truncate leaves junk that the next write overwrites
        const err = writeError(this.name, active.n, e);
        if (err instanceof StoreFullError) this.#full = true;
        throw err;
      }
      active.size = start + size;
      return this.#release(batch, null);
    } catch (e) {
      return this.#release(batch, e instanceof Error ? e : new StoreUnavailableError(this.name, String(e)));
    } finally {
      previous();
    }
  }

  /** A one-shot function that settles the promises of `batch`. */
  #release(batch: Pending[], error: Error | null): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      for (const p of batch) {
        if (!p.from) this.#waiting.delete(p.hash);
        if (error) p.reject(error);
        else p.resolve();
      }
    };
  }

  /** Indexes an appended batch, with counters and the new checkpoint, in one LMDB transaction. */
  #record(batch: Pending[], offsets: number[], segment: number, end: number): void {
    const changed = new Map<number, SegmentCounters>();
    const counters = (n: number): SegmentCounters => {
      const c = changed.get(n) ?? { ...(this.#segments.get(n) ?? { total: 0, live: 0 }) };
      changed.set(n, c);
      return c;
    };
    const totals = { ...this.#totals };
    this.#env.transactionSync(() => {
      batch.forEach((p, i) => {
        const length = p.bytes.byteLength;
        const bytes = recordBytes(length);
        counters(segment).total += bytes;
        if (p.from) {
          // A moved record takes over only if the index still points at the old copy.
          const now = this.#lookup(p.key);
          if (now?.segment !== p.from.segment || now.offset !== p.from.offset) return;
          counters(p.from.segment).live -= bytes;
        } else {
          totals.chunks++;
          totals.bytes += length;
        }
        counters(segment).live += bytes;
        this.#index.putSync(p.key, encodeLocation({ segment, offset: offsets[i]!, length }));
      });
      for (const [n, c] of changed) this.#meta.putSync(segmentKey(n), c);
      this.#meta.putSync("totals", totals);
      this.#meta.putSync("checkpoint", { segment, offset: end });
    });
    for (const [n, c] of changed) this.#segments.set(n, c);
    Object.assign(this.#totals, totals);
  }

  /** Seals the active segment between two batches of the committer (for compaction). */
  async #sealActive(): Promise<void> {
    while (this.#committing) await this.#committing;
    // Nothing awaits between the loop's end and taking the committer's slot.
    const sealing = (async () => {
      try {
        await this.#rotate();
      } finally {
        this.#committing = null;
        if (this.#queue.length > 0) this.#committing = Promise.resolve().then(() => this.#drain());
      }
    })();
    this.#committing = sealing;
    await sealing;
  }

  /** Seals the active segment and starts the next one. */
  async #rotate(): Promise<void> {
    const n = this.#active.n + 1;
    const segmentsDir = join(this.#dir, "segments");
    // Truncating: a file with this number can only be an empty leftover of a failed rotation.
    const handle = await openActive(
      join(segmentsDir, segmentFileName(n)),
      fsConstants.O_CREAT | fsConstants.O_TRUNC,
    );
    try {
      await syncDir(segmentsDir);
    } catch (e) {
      await handle.close();
      throw e;
    }
    const old = this.#active.handle;
    this.#active = { n, handle, size: 0 };
    this.#segments.set(n, { total: 0, live: 0 });
    await old.close().catch(() => {});
  }

  async #compactAll(): Promise<CompactResult> {
    let segmentsRewritten = 0;
    let bytesReclaimed = 0;
    // The active segment, mostly dead (after a sweep), is sealed so it can be rewritten too.
    const active = this.#segments.get(this.#active.n);
    if (active && active.total >= MIN_SEAL_BYTES && active.live < this.#compactThreshold * active.total)
      await this.#sealActive();
    const sealed = [...this.#segments].filter(([n]) => n < this.#active.n);
    for (const [n, c] of sealed) {
      if (c.live > 0 && c.live >= this.#compactThreshold * c.total) continue;
      const reclaimed = await this.#rewrite(n);
      if (reclaimed === null) continue;
      segmentsRewritten++;
      bytesReclaimed += reclaimed;
    }
    return { segmentsRewritten, bytesReclaimed };
  }

  /** Moves the live records of sealed segment `n` to the append stream and removes it; null if it must stay. */
  async #rewrite(n: number): Promise<number | null> {
    const file = join(this.#dir, "segments", segmentFileName(n));
    const handle = await fs.open(file, "r");
    const fileBytes = (await handle.stat()).size;
    let moved = 0;
    let inFlight: Promise<void>[] = [];
    let inFlightBytes = 0;
    try {
      for await (const r of scanRecords(handle, 0)) {
        const key = Buffer.from(r.hash);
        const loc = this.#lookup(key);
        if (loc?.segment !== n || loc.offset !== r.offset || !r.intact) continue;
        inFlight.push(this.#enqueue(key.toString("hex"), key, new Uint8Array(r.data), loc));
        moved += recordBytes(r.length);
        inFlightBytes += r.length;
        if (inFlightBytes >= COMPACT_STEP_BYTES) {
          await Promise.all(inFlight);
          await this.#paceCompaction(inFlightBytes);
          inFlight = [];
          inFlightBytes = 0;
        }
      }
      await Promise.all(inFlight);
      await this.#paceCompaction(inFlightBytes);
    } finally {
      await handle.close();
    }
    // Live bytes left mean a corrupt or unreachable live record: keep the segment for repair.
    if ((this.#segments.get(n)?.live ?? 0) > 0) return null;
    await syncEnv(this.#env); // the repointed index must be durable before the old copies go
    this.#readers.retire(n);
    await fs.rm(file);
    await syncDir(join(this.#dir, "segments"));
    this.#env.transactionSync(() => this.#meta.removeSync(segmentKey(n)));
    this.#segments.delete(n);
    return fileBytes - moved;
  }

  /** Waits so that compaction moves at most `compactBytesPerSecond` (after `bytes` more). */
  async #paceCompaction(bytes: number): Promise<void> {
    if (this.#compactRate <= 0 || bytes === 0) return;
    const now = performance.now();
    this.#compactNext = Math.max(now, this.#compactNext) + (bytes * 1000) / this.#compactRate;
    const wait = this.#compactNext - now;
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
  }

  async #withRefLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#refLock.then(fn);
    this.#refLock = run.catch(() => {});
    return run;
  }
}

/** The index as loaded: LMDB handles and what the meta records say. */
interface LoadedIndex {
  env: RootDatabase;
  index: Database<Buffer, Buffer>;
  meta: Database<unknown, string>;
  segments: Map<number, SegmentCounters>;
  totals: Totals;
  checkpoint: { segment: number; offset: number };
}

/** The store's identity, created (durably) on first open. */
async function loadIdentity(dir: string, name: string): Promise<string> {
  const file = join(dir, IDENTITY_FILE);
  const text = await fs.readFile(file, "utf8").catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return null;
    throw e;
  });
  if (text !== null) {
    const parsed = JSON.parse(text) as { identity?: unknown };
    if (!isIdentity(parsed.identity))
      throw new StoreUnavailableError(name, `${file} holds no valid identity`);
    return parsed.identity;
  }
  const identity = newIdentity();
  const temp = `${file}.tmp`;
  const handle = await fs.open(temp, "w");
  try {
    await handle.writeFile(JSON.stringify({ identity, createdAt: new Date().toISOString() }));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(temp, file);
  await syncDir(dir);
  return identity;
}

/** Everything {@link openState} loads or repairs before the store is usable. */
interface OpenedState extends Omit<LoadedIndex, "checkpoint"> {
  active: { n: number; handle: FileHandle; size: number };
  refs: RefTable;
}

/** Opens the index (rebuilding it if unusable), indexes the segment tail past the checkpoint, loads refs. */
async function openState(dir: string, name: string): Promise<OpenedState> {
  const segmentsDir = join(dir, "segments");
  const onDisk = (await fs.readdir(segmentsDir))
    .map(parseSegmentFileName)
    .filter((n): n is number => n !== null)
    .sort((a, b) => a - b);
  const indexDir = join(dir, "index");
  const trusted = (await indexSurvived(dir)) && (await looksLikeLmdb(indexDir));
  await markIndexDirty(dir); // before the first unsynced index write
  let loaded = trusted ? await loadIndex(indexDir, segmentsDir, onDisk) : null;
  if (!loaded) {
    // Lost, damaged, torn by a system crash, or inconsistent: rebuild from the segments (the truth).
    await fs.rm(indexDir, { recursive: true, force: true });
    loaded = createIndex(indexDir);
  }
  if (onDisk.length === 0) {
    await (await fs.open(join(segmentsDir, segmentFileName(1)), "w+")).close();
    await syncDir(segmentsDir);
    onDisk.push(1);
  }
  try {
    await indexTail(loaded, segmentsDir, onDisk);
    const refs = await loadRefs(join(dir, "refs"), name);
    const last = onDisk[onDisk.length - 1]!;
    const handle = await openActive(join(segmentsDir, segmentFileName(last)), 0);
    const active = { n: last, handle, size: (await handle.stat()).size };
    return { ...loaded, active, refs };
  } catch (e) {
    await loaded.env.close();
    throw e;
  }
}

/**
 * Indexes the intact records past the checkpoint. Only the last segment can hold a torn
 * write, so it is cut at its first bad record; a sealed segment is never truncated.
 */
async function indexTail(loaded: LoadedIndex, segmentsDir: string, onDisk: number[]): Promise<void> {
  const { env, index, meta, segments, totals, checkpoint } = loaded;
  const last = onDisk[onDisk.length - 1]!;
  for (const n of onDisk.filter((n) => n >= checkpoint.segment)) {
    const from = n === checkpoint.segment ? checkpoint.offset : 0;
    const counters = { ...((n === checkpoint.segment && segments.get(n)) || { total: 0, live: 0 }) };
    const handle = await fs.open(join(segmentsDir, segmentFileName(n)), n === last ? "r+" : "r");
    const found: { key: Buffer; offset: number; length: number }[] = [];
    let end = from;
    try {
      for await (const r of scanRecords(handle, from)) {
        if (!r.intact && n === last) break;
        end = r.offset + recordBytes(r.length);
        if (r.intact) found.push({ key: Buffer.from(r.hash), offset: r.offset, length: r.length });
      }
      const size = (await handle.stat()).size;
      if (n === last && end < size) {
        await handle.truncate(end);
        await handle.sync();
      }
      if (n !== last) end = size; // a sealed segment's unreadable rest counts as dead bytes, for compaction
    } finally {
      await handle.close();
    }
    counters.total += end - from;
    env.transactionSync(() => {
      for (const f of found) {
        if (index.doesExist(f.key)) continue; // another copy is indexed: this one is dead
        index.putSync(f.key, encodeLocation({ segment: n, offset: f.offset, length: f.length }));
        counters.live += recordBytes(f.length);
        totals.chunks++;
        totals.bytes += f.length;
      }
      meta.putSync(segmentKey(n), counters);
      meta.putSync("totals", totals);
      meta.putSync("checkpoint", { segment: n, offset: end });
    });
    segments.set(n, counters);
  }
}

function openEnv(indexDir: string): Pick<LoadedIndex, "env" | "index" | "meta"> {
  // noSync: segments are fsynced and the tail past the checkpoint is rescanned on open.
  const env = openLmdb({ path: indexDir, noSync: true, maxDbs: 2 });
  const index = env.openDB<Buffer, Buffer>({ name: "chunks", keyEncoding: "binary", encoding: "binary" });
  const meta = env.openDB<unknown, string>({ name: "meta" });
  return { env, index, meta };
}

/** A new, empty index; everything in the segments is past its checkpoint. */
function createIndex(indexDir: string): LoadedIndex {
  const opened = openEnv(indexDir);
  opened.env.transactionSync(() => opened.meta.putSync("format", INDEX_FORMAT));
  return {
    ...opened,
    segments: new Map(),
    totals: { chunks: 0, bytes: 0 },
    checkpoint: { segment: 0, offset: 0 },
  };
}

/** The existing index, or null if it does not open or does not match the segment files. */
async function loadIndex(
  indexDir: string,
  segmentsDir: string,
  onDisk: number[],
): Promise<LoadedIndex | null> {
  let opened: ReturnType<typeof openEnv> | undefined;
  try {
    opened = openEnv(indexDir);
    const { meta } = opened;
    const checkpoint = meta.get("checkpoint") as LoadedIndex["checkpoint"] | undefined;
    const totals = meta.get("totals") as Totals | undefined;
    if (meta.get("format") !== INDEX_FORMAT || !checkpoint || !totals) throw new Error("no index");
    const segments = new Map<number, SegmentCounters>();
    const stale: string[] = [];
    for (const { key, value } of meta.getRange({ start: "segment:", end: "segment;" })) {
      const n = Number(key.slice("segment:".length));
      const c = value as SegmentCounters;
      if (onDisk.includes(n)) segments.set(n, c);
      else if (c.live === 0)
        stale.push(key); // removed by compaction just before a crash
      else throw new Error(`segment ${n} with live chunks is missing`);
    }
    const cpSize = onDisk.includes(checkpoint.segment)
      ? (await fs.stat(join(segmentsDir, segmentFileName(checkpoint.segment)))).size
      : -1;
    if (cpSize < checkpoint.offset) throw new Error("checkpoint past the end of the segments");
    if (onDisk.some((n) => n < checkpoint.segment && !segments.has(n)))
      throw new Error("segment missing from the index");
    if (stale.length > 0)
      opened.env.transactionSync(() => {
        for (const k of stale) meta.removeSync(k);
      });
    return { ...opened, segments, totals, checkpoint };
  } catch {
    await opened?.env.close();
    return null;
  }
}

/**
 * False if the index was left with unsynced writes by a system that has since rebooted
 * (power loss, kernel crash): a noSync LMDB file may then be torn, so it is not opened.
 * After a process crash the OS still holds every write, so the index is good.
 */
async function indexSurvived(dir: string): Promise<boolean> {
  const marker = await fs.readFile(join(dir, DIRTY_MARKER), "utf8").catch(() => null);
  if (marker === null) return true;
  const boot = await bootId();
  return boot !== null && marker === boot;
}

/** Records that the index may now hold writes not yet on disk, made during this boot. */
async function markIndexDirty(dir: string): Promise<void> {
  const file = await fs.open(join(dir, DIRTY_MARKER), "w");
  try {
    await file.writeFile((await bootId()) ?? "unknown");
    await file.sync();
  } finally {
    await file.close();
  }
  await syncDir(dir);
}

/** Linux's id of this boot; null elsewhere (then any dirty index is rebuilt). */
async function bootId(): Promise<string | null> {
  return fs.readFile("/proc/sys/kernel/random/boot_id", "utf8").then(
    (s) => s.trim(),
    () => null,
  );
}

/**
 * True if `data.mdb` starts like an LMDB file. lmdb-js takes the whole process down when
 * LMDB refuses a file (its open error path double-frees), so a damaged or foreign index
 * must be caught here and rebuilt, never handed to it.
 */
async function looksLikeLmdb(indexDir: string): Promise<boolean> {
  try {
    const file = await fs.open(join(indexDir, "data.mdb"), "r");
    try {
      const head = Buffer.alloc(LMDB_HEAD_BYTES);
      await file.read(head, 0, head.byteLength, 0);
      return (await file.stat()).size >= LMDB_MIN_BYTES && head.indexOf(LMDB_MAGIC) >= 0;
    } finally {
      await file.close();
    }
  } catch {
    return false;
  }
}

/** Refs from `refs/`; leftovers of an unfinished casRef (dot files) are removed. */
async function loadRefs(refsDir: string, store: string): Promise<RefTable> {
  const refs = new RefTable();
  for (const file of await fs.readdir(refsDir)) {
    const path = join(refsDir, file);
    if (file.startsWith(".")) await fs.rm(path, { force: true });
    if (!REF_NAME_PATTERN.test(file)) continue;
    let entry: RefEntry | null = null;
    try {
      const parsed = JSON.parse(await fs.readFile(path, "utf8"));
      if (typeof parsed?.version === "string" && typeof parsed?.value === "string") entry = parsed;
    } catch {}
    // Refs are never written in place, so a bad one is damage: refuse rather than forget a head.
    if (!entry)
      throw new StoreUnavailableError(store, `ref file ${path} is not a {version, value} JSON document`);
    refs.set(file, { version: entry.version, value: entry.value });
  }
  return refs;
}

/** One record found by {@link scanRecords}; `hash` and `data` are valid until the next step. */
interface ScannedRecord {
  readonly offset: number;
  readonly hash: Buffer;
  readonly length: number;
  readonly data: Buffer;
  /** The data hashes to the header's hash. */
  readonly intact: boolean;
}

/**
 * Whole records of a segment from `from` on, each checked against its hash. Stops at the
 * first invalid header or a record that runs past the end of the file.
 */
async function* scanRecords(handle: FileHandle, from: number): AsyncGenerator<ScannedRecord> {
  const buf = Buffer.allocUnsafeSlow(SCAN_BUFFER_BYTES);
  let bufStart = from; // file position of buf[0]
  let bufEnd = from; // file position after the last byte read into buf
  let pos = from;
  for (let filledAt = -1; ; ) {
    const at = pos - bufStart;
    const header = decodeHeader(buf.subarray(0, bufEnd - bufStart), at);
    const need = header ? recordBytes(header.length) : RECORD.HEADER_BYTES;
    if (bufEnd - pos < need) {
      if (filledAt === pos) return; // the file ends inside this record
      const { bytesRead } = await handle.read(buf, 0, buf.byteLength, pos);
      bufStart = pos;
      bufEnd = pos + bytesRead;
      filledAt = pos;
      continue;
    }
    if (!header) return;
    const hash = buf.subarray(at + RECORD.HASH_OFFSET, at + RECORD.HASH_OFFSET + header.hash.byteLength);
    const data = buf.subarray(at + RECORD.HEADER_BYTES, at + need);
    yield { offset: pos, hash, length: header.length, data, intact: hash.equals(hashBytes(data)) };
    pos += need;
  }
}

interface Reader {
  readonly handle: Promise<FileHandle>;
  users: number;
  retired: boolean;
}

/**
 * Read handles of segment files: opened on first use, shared by concurrent reads, and
 * closed only once the last read using them is done (after eviction or {@link retire}).
 */
class SegmentReaders {
  readonly #dir: string;
  /** Least recently used first. */
  readonly #open = new Map<number, Reader>();

  constructor(dir: string) {
    this.#dir = dir;
  }

  /** Positional read of up to `into.byteLength` bytes; returns how many were read. */
  async read(n: number, into: Uint8Array, position: number): Promise<number> {
    let r = this.#open.get(n);
    if (r) this.#open.delete(n);
    else r = { handle: fs.open(join(this.#dir, segmentFileName(n)), "r"), users: 0, retired: false };
    this.#open.set(n, r);
    for (const old of this.#open.keys()) {
      if (this.#open.size <= MAX_OPEN_SEGMENTS) break;
      this.retire(old);
    }
    r.users++;
    try {
      const handle = await r.handle;
      let got = 0;
      while (got < into.byteLength) {
        const { bytesRead } = await handle.read(into, got, into.byteLength - got, position + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got;
    } catch (e) {
      if (this.#open.get(n) === r) this.retire(n); // reopen next time
      throw e;
    } finally {
      r.users--;
      if (r.retired && r.users === 0) void closeReader(r);
    }
  }

  /** Forgets segment `n` (removed or evicted); its handle closes when no read uses it. */
  retire(n: number): void {
    const r = this.#open.get(n);
    if (!r) return;
    this.#open.delete(n);
    r.retired = true;
    if (r.users === 0) void closeReader(r);
  }

  async close(): Promise<void> {
    const all = [...this.#open.values()];
    this.#open.clear();
    await Promise.all(all.map(closeReader));
  }
}

function closeReader(r: Reader): Promise<void> {
  return r.handle.then((h) => h.close()).catch(() => {});
}

function keyOf(hash: Hash): Buffer {
  return Buffer.from(hash, "hex");
}

function segmentKey(n: number): string {
  return `segment:${n}`;
}

function encodeLocation(loc: Location): Buffer {
  const b = Buffer.allocUnsafe(LOCATION_BYTES);
  b.writeUInt32LE(loc.segment, 0);
  b.writeUInt32LE(loc.length, 4);
  b.writeDoubleLE(loc.offset, 8);
  return b;
}

function decodeLocation(b: Buffer): Location {
  return { segment: b.readUInt32LE(0), length: b.readUInt32LE(4), offset: b.readDoubleLE(8) };
}

/** Opens the segment that batches are appended to, read-write with O_DSYNC plus `flags`. */
function openActive(path: string, flags: number): Promise<FileHandle> {
  return fs.open(path, fsConstants.O_RDWR | (O_DSYNC ?? 0) | flags);
}

/**
 * Writes `parts` (`size` bytes in all) at `position` with one writev; a short write (not
 * expected on a regular file) finishes with plain writes of the rest.
 */
async function writevAll(
  handle: FileHandle,
  parts: Uint8Array[],
  size: number,
  position: number,
): Promise<void> {
  const { bytesWritten } = await handle.writev(parts, position);
  if (bytesWritten >= size) return;
  const rest = Buffer.concat(parts).subarray(bytesWritten);
  await writeAll(handle, rest, position + bytesWritten);
}

async function writeAll(handle: FileHandle, buffer: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < buffer.byteLength; ) {
    const { bytesWritten } = await handle.write(buffer, done, buffer.byteLength - done, position + done);
    done += bytesWritten;
  }
}

/** Makes a rename, create or unlink in `dir` durable. */
async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Flushes the index to disk (it is opened with noSync). */
function syncEnv(env: RootDatabase): Promise<void> {
  const withSync = env as unknown as { sync(callback: (error?: Error) => void): void };
  return new Promise((resolve, reject) => withSync.sync((error) => (error ? reject(error) : resolve())));
}

async function freeBytes(dir: string): Promise<number> {
  const st = await fs.statfs(dir);
  return st.bavail * st.bsize;
}

/** A failed append as callers see it: full for ENOSPC, unavailable for anything else. */
function writeError(store: string, segment: number, e: unknown): Error {
  if (errorCode(e) === "ENOSPC") {
    return new StoreFullError(
      store,
      `no space left on the device while appending to segment ${segment} (ENOSPC)`,
    );
  }
  return new StoreUnavailableError(store, `cannot append to segment ${segment}: ${message(e)}`, { cause: e });
}

function errorCode(e: unknown): string | undefined {
  return (e as { code?: string } | null)?.code;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
