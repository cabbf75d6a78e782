/** An {@link ObjectStore} in memory, for tests (conditional puts honoured exactly). */
import { PreconditionFailedError } from "./backup-errors.ts";
import type { ObjectInfo, ObjectStore, PutCondition } from "./object-store.ts";

/** Objects in a Map; ETags are a counter. */
export class MemoryObjectStore implements ObjectStore {
  readonly name: string;
  readonly objects = new Map<string, { bytes: Uint8Array; etag: string }>();
  #etag = 0;

  constructor(name = "memory://backups") {
    this.name = name;
  }

  async get(key: string): Promise<Uint8Array | null> {
    return this.objects.get(key)?.bytes.slice() ?? null;
  }

  async getRange(key: string, start: number, end: number): Promise<Uint8Array | null> {
    return this.objects.get(key)?.bytes.slice(start, end) ?? null;
  }

  async head(key: string): Promise<{ etag: string; size: number } | null> {
    const o = this.objects.get(key);
    return o ? { etag: o.etag, size: o.bytes.byteLength } : null;
  }

  async put(key: string, bytes: Uint8Array, condition: PutCondition = {}): Promise<void> {
    const current = this.objects.get(key);
    if (condition.ifNoneMatch && current) throw new PreconditionFailedError(`${key} exists`);
    if (condition.ifMatch !== undefined && current?.etag !== condition.ifMatch)
      throw new PreconditionFailedError(`${key} changed`);
    this.objects.set(key, { bytes: bytes.slice(), etag: `e${++this.#etag}` });
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
    for (const key of keys) yield { key, size: this.objects.get(key)!.bytes.byteLength };
  }

  async close(): Promise<void> {}
}
