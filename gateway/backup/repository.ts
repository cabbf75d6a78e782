/**
 * A backup repository over an {@link ObjectStore}: its config (created on first use), the
 * index objects, packs and manifests, sealed and named by the repository's cipher. The
 * layout and the formats are frozen in `repository-format.ts`; README.md describes them.
 */

import { Buffer } from "node:buffer";
import pLimit from "p-limit";
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { fromHex, hashBytes, hashChunk, toHex } from "../../chunkstore/hash.ts";
import {
  BackupNotFoundError,
  PreconditionFailedError,
  RepositoryFormatError,
  RepositoryKeyError,
} from "./backup-errors.ts";
import { decodeManifest, type Manifest } from "./backup-manifest.ts";
import type { ObjectStore } from "./object-store.ts";
import { encryptionCipher, PLAIN, type RepositoryCipher } from "./repository-crypto.ts";
import {
  ENCRYPTION_SCHEME,
  KEY_CHECK_PLAINTEXT,
  KEYS,
  OBJECT_FORMAT,
  PACK_TARGET_BYTES,
  type PackKind,
  REPOSITORY_FORMAT,
  REPOSITORY_VERSION,
  SALT_BYTES,
} from "./repository-format.ts";
import { type PackRecord, RepositoryIndex } from "./repository-index.ts";

/** The `config` object: plain JSON, so any installation can tell what it is looking at. */
export interface RepositoryConfig {
  readonly format: typeof REPOSITORY_FORMAT;
  readonly version: typeof REPOSITORY_VERSION;
  readonly id: string;
  readonly createdAt: string;
  readonly packTargetBytes: number;
  readonly encryption: null | { readonly scheme: string; readonly salt: string; readonly keyCheck: string };
}

/** A stored chunk could not be read back right (a missing pack, a bad hash, a failed tag). */
export class BlobCorruptError extends Error {
  override readonly name = "BlobCorruptError";
  readonly hash: Hash;
  constructor(hash: Hash, detail: string) {
    super(`Backup chunk "${hash}" is damaged: ${detail}`);
    this.hash = hash;
  }
}

/** Objects read at once when loading the index or listing manifests. */
const LOAD_CONCURRENCY = 8;

/** An open repository. */
export class Repository {
  readonly store: ObjectStore;
  readonly cipher: RepositoryCipher;
  readonly config: RepositoryConfig;

  private constructor(store: ObjectStore, cipher: RepositoryCipher, config: RepositoryConfig) {
    this.store = store;
    this.cipher = cipher;
    this.config = config;
  }

  /**
   * Opens the repository in `store`; with `create`, makes it first if the prefix holds none
   * (encrypted when a key is given). Throws RepositoryFormatError for no or an unknown
   * repository, RepositoryKeyError for a missing or wrong key.
   */
  static async open(
    store: ObjectStore,
    options: { key?: Uint8Array; create?: boolean } = {},
  ): Promise<Repository> {
    let raw = await store.get(KEYS.config);
    if (raw === null) {
      if (!options.create)
        throw new RepositoryFormatError(
          `${store.name} holds no blockmend backup repository (no "${KEYS.config}" object)`,
        );
      raw = await Repository.#create(store, options.key);
    }
    let config: RepositoryConfig;
    try {
      config = JSON.parse(new TextDecoder().decode(raw)) as RepositoryConfig;
    } catch (err) {
      throw new RepositoryFormatError(`${store.name}/${KEYS.config} is not JSON`, { cause: err });
    }
    if (config.format !== REPOSITORY_FORMAT)
      throw new RepositoryFormatError(`${store.name}/${KEYS.config} is not a blockmend backup repository`);
    if (config.version !== REPOSITORY_VERSION)
      throw new RepositoryFormatError(
        `${store.name} is repository version ${config.version}; this blockmend reads version ${REPOSITORY_VERSION}`,
      );
    if (!config.encryption) {
      if (options.key) throw new RepositoryKeyError(`${store.name} is not encrypted: leave out the key file`);
      return new Repository(store, PLAIN, config);
    }
    if (config.encryption.scheme !== ENCRYPTION_SCHEME)
      throw new RepositoryFormatError(
        `${store.name} uses encryption "${config.encryption.scheme}", unknown here`,
      );
    if (!options.key)
      throw new RepositoryKeyError(`${store.name} is encrypted: give its key file (--key-file)`);
    const cipher = await encryptionCipher(options.key, Buffer.from(config.encryption.salt, "base64"));
    try {
      const check = await cipher.open(Buffer.from(config.encryption.keyCheck, "base64"));
      if (new TextDecoder().decode(check) !== KEY_CHECK_PLAINTEXT) throw new Error("key check text differs");
    } catch (err) {
      throw new RepositoryKeyError(`The key file does not open ${store.name} (wrong key)`, { cause: err });
    }
    return new Repository(store, cipher, config);
  }

  static async #create(store: ObjectStore, key: Uint8Array | undefined): Promise<Uint8Array> {
    let encryption: RepositoryConfig["encryption"] = null;
    if (key) {
      const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES));
      const cipher = await encryptionCipher(key, salt);
      const check = await cipher.seal(new TextEncoder().encode(KEY_CHECK_PLAINTEXT));
      encryption = {
        scheme: ENCRYPTION_SCHEME,
        salt: Buffer.from(salt).toString("base64"),
        keyCheck: Buffer.from(check).toString("base64"),
      };
    }
    const config: RepositoryConfig = {
      format: REPOSITORY_FORMAT,
      version: REPOSITORY_VERSION,
      id: crypto.randomUUID(),
      createdAt: new Date().toISOString(),
      packTargetBytes: PACK_TARGET_BYTES,
      encryption,
    };
    const bytes = new TextEncoder().encode(`${JSON.stringify(config, null, 2)}\n`);
    try {
      await store.put(KEYS.config, bytes, { ifNoneMatch: true });
    } catch (err) {
      // Another writer made the repository first (or our own write landed before an error): use what is there.
      if (!(err instanceof PreconditionFailedError)) {
        const there = await store.get(KEYS.config);
        if (there === null) throw err;
        return there;
      }
    }
    return (await store.get(KEYS.config)) ?? bytes;
  }

  // ---- index

  /**
   * Every index object, merged. With `existingPacks`, packs the index names but the bucket
   * no longer holds are left out (one listing of `packs/`), so a backup sends their chunks
   * again instead of counting on a deleted pack.
   */
  async loadIndex(options: { existingPacks?: boolean } = {}): Promise<RepositoryIndex> {
    const index = new RepositoryIndex();
    const keys: string[] = [];
    for await (const o of this.store.list(KEYS.index)) keys.push(o.key);
    const limit = pLimit(LOAD_CONCURRENCY);
    const loaded = await Promise.all(keys.map((k) => limit(() => this.#readIndexObject(k))));
    let present: Set<string> | null = null;
    if (options.existingPacks) {
      present = new Set();
      for await (const o of this.store.list(KEYS.packs)) present.add(o.key.slice(o.key.lastIndexOf("/") + 1));
    }
    for (const [i, packs] of loaded.entries()) {
      if (packs === null) continue; // removed by a prune meanwhile: its packs are in the prune's index
      index.objects.push(keys[i]!);
      for (const p of packs) if (!present || present.has(p.name)) index.add(p);
    }
    return index;
  }

  async #readIndexObject(key: string): Promise<PackRecord[] | null> {
    const raw = await this.store.get(key);
    if (raw === null) return null;
    const parsed = JSON.parse(new TextDecoder().decode(await this.cipher.open(raw))) as {
      format?: number;
      packs?: PackRecord[];
    };
    if (parsed.format !== OBJECT_FORMAT || !Array.isArray(parsed.packs))
      throw new RepositoryFormatError(`Index object ${this.store.name}/${key} has an unknown format`);
    return parsed.packs;
  }

  /** Writes an index object recording `packs`; resolves with its key and stored size. */
  async writeIndex(packs: readonly PackRecord[]): Promise<{ key: string; bytes: number }> {
    const id = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex");
    const key = `${KEYS.index}${await this.cipher.name("index", id)}`;
    const body = await this.cipher.seal(
      new TextEncoder().encode(JSON.stringify({ format: OBJECT_FORMAT, packs })),
    );
    await this.store.put(key, body, { ifNoneMatch: true });
    return { key, bytes: body.byteLength };
  }

  // ---- packs

  packKey(name: string): string {
    return `${KEYS.packs}${name.slice(0, 2)}/${name}`;
  }

  /** Seals one chunk as a pack blob (its raw hash is the additional data). */
  sealBlob(hash: Hash, bytes: Uint8Array): Promise<Uint8Array> {
    return this.cipher.encrypted ? this.cipher.seal(bytes, fromHex(hash)) : Promise.resolve(bytes);
  }

  /** Opens a stored blob and checks it hashes to `hash`; throws BlobCorruptError. */
  async openBlob(hash: Hash, stored: Uint8Array): Promise<Uint8Array> {
    let bytes: Uint8Array;
    try {
      bytes = this.cipher.encrypted ? await this.cipher.open(stored, fromHex(hash)) : stored;
    } catch (err) {
      throw new BlobCorruptError(hash, (err as Error).message);
    }
    const actual = hashChunk(bytes);
    if (actual !== hash) throw new BlobCorruptError(hash, `its bytes hash to ${actual}`);
    return bytes;
  }

  /** Uploads a pack of sealed blobs; resolves with its index record. */
  async putPack(
    kind: PackKind,
    parts: readonly Uint8Array[],
    blobs: PackRecord["blobs"],
  ): Promise<PackRecord> {
    const total = parts.reduce((a, p) => a + p.byteLength, 0);
    const body = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      body.set(p, at);
      at += p.byteLength;
    }
    const id = toHex(hashBytes(body));
    const name = await this.cipher.name("pack", id);
    await this.store.put(this.packKey(name), body);
    return { id, name, kind, bytes: total, blobs };
  }

  /** Bytes `[start, end)` of a pack, or null when the pack is gone. */
  readPack(name: string, start?: number, end?: number): Promise<Uint8Array | null> {
    const key = this.packKey(name);
    return start === undefined || end === undefined
      ? this.store.get(key)
      : this.store.getRange(key, start, end);
  }

  // ---- manifests

  async #manifestKey(id: string): Promise<string> {
    return `${KEYS.manifests}${await this.cipher.name("manifest", id)}`;
  }

  /** Writes a manifest once (a second write of the same id is refused). Resolves with its stored size. */
  async writeManifest(m: Manifest): Promise<number> {
    const body = await this.cipher.seal(new TextEncoder().encode(`${JSON.stringify(m, null, 2)}\n`));
    await this.store.put(await this.#manifestKey(m.id), body, { ifNoneMatch: true });
    return body.byteLength;
  }

  async readManifest(id: string): Promise<Manifest> {
    const key = await this.#manifestKey(id);
    const raw = await this.store.get(key);
    if (raw === null) throw new BackupNotFoundError(this.store.name, id);
    return decodeManifest(await this.cipher.open(raw), `${this.store.name}/${key}`);
  }

  /** Every backup, oldest first. */
  async listManifests(): Promise<Manifest[]> {
    const keys: string[] = [];
    for await (const o of this.store.list(KEYS.manifests)) keys.push(o.key);
    const limit = pLimit(LOAD_CONCURRENCY);
    const out = await Promise.all(
      keys.map((k) =>
        limit(async () => {
          const raw = await this.store.get(k);
          return raw === null ? null : decodeManifest(await this.cipher.open(raw), `${this.store.name}/${k}`);
        }),
      ),
    );
    return out
      .filter((m): m is Manifest => m !== null)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  async deleteManifest(id: string): Promise<void> {
    await this.store.delete(await this.#manifestKey(id));
  }
}
