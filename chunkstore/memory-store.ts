/** `memory:` backend: chunks and refs in process memory, for tests. Not persistent. */
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
import { ChunkNotFoundError } from "./errors.ts";
import { assertHash } from "./hash.ts";
import { IdentityExpectation, newIdentity } from "./identity.ts";
import { isPrepared, RefTable } from "./ref-table.ts";
import { verifyPut, verifyPutMany, verifyRead } from "./verify.ts";

/** An in-memory chunk store. `corrupt()` exists so tests can exercise read verification. */
export class MemoryStore implements ChunkStore {
  readonly capabilities = {
    chunks: true,
    refs: true,
    persistent: false,
    sweep: true,
    local: true,
    refGuards: true,
  } as const;
  readonly #condemned = new CondemnedSet();
  readonly #chunks = new Map<Hash, Uint8Array>();
  readonly #refs = new RefTable();
  #bytes = 0;
  readonly name: string;
  /** This store's identity; {@link wipe} gives it a new one, as a replaced disk would have. */
  #identity = newIdentity();
  readonly #expected = new IdentityExpectation();

  constructor(name = "memory:") {
    this.name = name;
  }

  async probe(): Promise<StoreProbe> {
    return { identity: this.#identity, capabilities: this.capabilities };
  }

  expectIdentity(identity: string | null): void {
    this.#expected.set(identity);
  }

  /** Test hook: loses every chunk and ref and takes a new identity (a wiped or replaced disk). */
  wipe(): void {
    this.#chunks.clear();
    for (const n of this.#refs.names()) this.#refs.remove(n);
    this.#bytes = 0;
    this.#identity = newIdentity();
  }

  #check(): void {
    this.#expected.check(this.name, this.#identity);
  }

  async scanRefs(prefix: string, options?: { after?: string; limit?: number }): Promise<RefPage> {
    this.#check();
    return this.#refs.scan(prefix, options);
  }

  async has(hashes: readonly Hash[]): Promise<boolean[]> {
    this.#check();
    return hashes.map((h) => {
      assertHash(h);
      return this.#chunks.has(h);
    });
  }

  async get(hash: Hash): Promise<Uint8Array> {
    this.#check();
    assertHash(hash);
    const bytes = this.#chunks.get(hash);
    if (!bytes) throw new ChunkNotFoundError(this.name, hash);
    return verifyRead(this.name, hash, bytes.slice());
  }

  async getMany(hashes: readonly Hash[]): Promise<(Uint8Array | undefined)[]> {
    return Promise.all(
      hashes.map((h) =>
        this.get(h).catch((e) => (e instanceof ChunkNotFoundError ? undefined : Promise.reject(e))),
      ),
    );
  }

  async put(hash: Hash, bytes: Uint8Array): Promise<{ existed: boolean }> {
    this.#check();
    verifyPut(this.name, hash, bytes);
    return this.#store(hash, bytes);
  }

  async putMany(chunks: readonly ChunkPut[]): Promise<{ existed: boolean }[]> {
    this.#check();
    verifyPutMany(this.name, chunks);
    return chunks.map((c) => this.#store(c.hash, c.bytes));
  }

  async condemn(hashes: readonly Hash[], token: string): Promise<number> {
    this.#check();
    return this.#condemned.condemn(hashes, token, (h) => this.#chunks.has(h));
  }

  async sweep(hashes: readonly Hash[], token: string): Promise<SweepResult> {
    this.#check();
    let bytes = 0;
    const gone = this.#condemned.take(hashes, token);
    for (const h of gone) {
      bytes += this.#chunks.get(h)?.byteLength ?? 0;
      this.#bytes -= this.#chunks.get(h)?.byteLength ?? 0;
      this.#chunks.delete(h);
    }
    return { deleted: gone.length, bytes };
  }

  #store(hash: Hash, bytes: Uint8Array): { existed: boolean } {
    this.#condemned.revive([hash]);
    if (this.#chunks.has(hash)) return { existed: true };
    this.#chunks.set(hash, bytes.slice());
    this.#bytes += bytes.byteLength;
    return { existed: false };
  }

  async delete(hash: Hash): Promise<boolean> {
    this.#check();
    assertHash(hash);
    const bytes = this.#chunks.get(hash);
    if (!bytes) return false;
    this.#chunks.delete(hash);
    this.#bytes -= bytes.byteLength;
    return true;
  }

  async *list(options: ListOptions = {}): AsyncIterable<Hash> {
    this.#check();
    const after = options.after ?? "";
    for (const h of [...this.#chunks.keys()].sort()) if (h > after) yield h;
  }

  async stats(): Promise<StoreStats> {
    this.#check();
    return { chunks: this.#chunks.size, bytes: this.#bytes, freeBytes: null };
  }

  async getRef(name: string): Promise<RefEntry | null> {
    this.#check();
    return this.#refs.get(name);
  }

  async casRef(name: string, expected: string | null, value: string, guard?: RefGuard): Promise<CasResult> {
    this.#check();
    const prepared = this.#refs.prepare(name, expected, value, guard);
    if (!isPrepared(prepared)) return prepared;
    this.#refs.set(name, prepared);
    return { ok: true, version: prepared.version };
  }

  async deleteRef(name: string, expected: string): Promise<CasResult> {
    this.#check();
    const current = this.#refs.get(name);
    if (current?.version !== expected) return { ok: false, current };
    this.#refs.remove(name);
    return { ok: true, version: expected };
  }

  async listRefs(prefix = ""): Promise<string[]> {
    this.#check();
    return this.#refs.names(prefix);
  }

  /** Test hook: flips a byte of a stored chunk so reads must detect it. */
  corrupt(hash: Hash): void {
    const bytes = this.#chunks.get(hash);
    if (!bytes || bytes.byteLength === 0) throw new ChunkNotFoundError(this.name, hash);
    bytes[0] = bytes[0]! ^ 0xff;
  }

  async close(): Promise<void> {}
}
