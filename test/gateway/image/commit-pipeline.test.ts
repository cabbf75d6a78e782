/**
 * The commit pipeline racing maintenance: a store enters maintenance while a commit's (or a
 * resize's) chunks are on their way to it. The new version must still end on `minReplicas`
 * stores besides the one leaving; the test then acts on that: the store goes down and a
 * gateway that never saw the image reads all of it back.
 */
import { expect, test } from "bun:test";
import type { Hash } from "../../../chunkstore/chunk-store.ts";
import { levelsFor, ZERO_HASH } from "../../../gateway/image/block-map.ts";
import { blockCount, type Head } from "../../../gateway/image/head.ts";
import { changedChunks } from "../../../gateway/image/tree-diff.ts";
import { imageService, pattern, SwitchableStore } from "./_image-fixture.ts";

const MiB = 1024 * 1024;

/** A store whose chunk puts take effect, then wait while `held` (a commit lingering on the wire). */
class GatedStore extends SwitchableStore {
  held = false;
  /** Hashes whose put took effect while held. */
  readonly heldPuts: Hash[] = [];
  #release: (() => void)[] = [];
  #reached: (() => void)[] = [];

  /** Resolves once a put reached this store while it was held. */
  reached(): Promise<void> {
    return this.heldPuts.length > 0 ? Promise.resolve() : new Promise((r) => this.#reached.push(r));
  }

  release(): void {
    this.held = false;
    for (const r of this.#release.splice(0)) r();
  }

  async #linger(hashes: Hash[]): Promise<void> {
    if (!this.held) return;
    this.heldPuts.push(...hashes);
    for (const r of this.#reached.splice(0)) r();
    await new Promise<void>((r) => this.#release.push(r));
  }

  override async put(h: string, b: Uint8Array) {
    const r = await super.put(h, b);
    await this.#linger([h]);
    return r;
  }

  override async putMany(c: Parameters<SwitchableStore["putMany"]>[0]) {
    const r = await super.putMany(c);
    await this.#linger(c.map((p) => p.hash));
    return r;
  }
}

/** Every chunk version `root` of an image of `size` bytes references (pages and data). */
async function referenced(stores: GatedStore[], head: Head): Promise<Set<Hash>> {
  const get = async (h: Hash) => {
    for (const s of stores) if ((await s.has([h]))[0]) return s.get(h);
    throw new Error(`chunk ${h} is on no store`);
  };
  const levels = levelsFor(Math.max(1, blockCount(head)));
  const out = new Set<Hash>();
  for await (const c of changedChunks(get, ZERO_HASH, head.root, levels)) out.add(c.hash);
  return out;
}

for (const change of ["resize", "flush"] as const) {
  test(`a store entering maintenance while a ${change}'s chunks travel: the new version ends on minReplicas other stores, and reads back without it`, async () => {
    const stores = ["a", "b", "c"].map((n) => new GatedStore(n));
    const g = await imageService(stores, { replicas: 2, minReplicas: 2 });
    await g.service.create("r", 16 * MiB);
    const img = await g.service.open("r");
    const before = pattern(16 * MiB, 41);
    await img.write(0, before, { fua: true });
    const old = await referenced(stores, img.head);

    for (const s of stores) s.held = true;
    const extra = pattern(4 * 65536, 42);
    const done =
      change === "resize"
        ? img.resize(64 * MiB)
        : img.write(8 * MiB, extra, { fua: false }).then(() => img.flush());
    // The first store one of the new chunks reached goes into maintenance while they linger.
    const leaving = await Promise.race(stores.map((s) => s.reached().then(() => s)));
    await g.core.setMaintenance(leaving.name, true);
    for (const s of stores) s.release();
    await done;

    const added = [...(await referenced(stores, img.head))].filter((h) => !old.has(h));
    expect(added.length).toBeGreaterThan(0);
    // The race happened: some of what the change added went to the leaving store first.
    expect(added.some((h) => leaving.heldPuts.includes(h))).toBe(true);
    for (const h of added) {
      const copies = [];
      for (const s of stores) if (s !== leaving && (await s.has([h]))[0]) copies.push(s.name);
      expect({ chunk: h, copies: copies.length }).toEqual({ chunk: h, copies: 2 });
    }

    // Act on it: the leaving store goes away; a gateway that never saw the image reads it all.
    leaving.down = true;
    const fresh = await imageService(stores, { replicas: 2, minReplicas: 1 });
    const view = await fresh.service.open("r");
    const expected = new Uint8Array(change === "resize" ? 64 * MiB : 16 * MiB);
    expected.set(before);
    if (change === "flush") expected.set(extra, 8 * MiB);
    expect(view.size).toBe(expected.byteLength);
    expect(Buffer.from(await view.read(0, view.size)).equals(Buffer.from(expected))).toBe(true);
    await fresh.service.close();
    leaving.down = false;
    await g.service.close();
  });
}
