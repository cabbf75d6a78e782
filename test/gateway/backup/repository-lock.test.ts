/**
 * The repository lock over a store that behaves as radosgw can: a compare-and-set loser
 * gets a 500 instead of a 412, and a write that landed can still answer 500 (a lost
 * answer). The holder is decided by reading back, so neither misleads it.
 */
import { describe, expect, test } from "bun:test";
import { BackupTargetError, PreconditionFailedError } from "../../../gateway/backup/backup-errors.ts";
import { MemoryObjectStore } from "../../../gateway/backup/memory-object-store.ts";
import type { ObjectStore, PutCondition } from "../../../gateway/backup/object-store.ts";
import { KEYS } from "../../../gateway/backup/repository-format.ts";
import { CLOCK_SKEW_MS, RepositoryLock } from "../../../gateway/backup/repository-lock.ts";

/** Wraps a store: conditional losers get 500, and (when `lose`) a landed write answers 500 too. */
class RadosLikeStore extends MemoryObjectStore implements ObjectStore {
  loseAnswers = false;
  override async put(key: string, bytes: Uint8Array, condition: PutCondition = {}): Promise<void> {
    try {
      await super.put(key, bytes, condition);
    } catch (err) {
      if (err instanceof PreconditionFailedError)
        throw new BackupTargetError(this.name, "answered 500 UnknownError", 500);
      throw err;
    }
    if (this.loseAnswers) throw new BackupTargetError(this.name, "answered 500 UnknownError", 500);
  }
}

const opts = { operation: "test", gateway: "gw-1", ttlMs: 60_000 };

describe("repository lock", () => {
  test("a write that landed but answered 500 still takes the lock (read back)", async () => {
    const store = new RadosLikeStore();
    store.loseAnswers = true;
    const lock = await RepositoryLock.exclusive(store, opts);
    expect(lock.valid()).toBe(true);
    store.loseAnswers = false;
    await lock.release();
    expect(await store.get(KEYS.exclusiveLock)).toBeNull();
  });

  test("a compare-and-set loser that gets 500 does not think it holds the lock", async () => {
    const store = new RadosLikeStore();
    const first = await RepositoryLock.exclusive(store, opts);
    await expect(RepositoryLock.exclusive(store, { ...opts, gateway: "gw-2" })).rejects.toThrow(
      /holds it until/,
    );
    expect(JSON.parse(new TextDecoder().decode((await store.get(KEYS.exclusiveLock))!)).token).toBe(
      first.token,
    );
    await first.release();
  });

  test("of many concurrent takers exactly one wins", async () => {
    const store = new RadosLikeStore();
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => RepositoryLock.exclusive(store, { ...opts, gateway: `gw-${i}` })),
    );
    const won = results.filter((r) => r.status === "fulfilled");
    expect(won.length).toBe(1);
    await (won[0] as PromiseFulfilledResult<RepositoryLock>).value.release();
  });

  test("an expired lock is taken over; its old holder finds it lost", async () => {
    const store = new RadosLikeStore();
    let now = Date.now();
    const clock = () => now;
    const old = await RepositoryLock.exclusive(store, { ...opts, ttlMs: 1_000, now: clock });
    now += 1_000 + CLOCK_SKEW_MS + 1;
    const fresh = await RepositoryLock.exclusive(store, { ...opts, gateway: "gw-2", now: clock });
    expect(old.valid()).toBe(false);
    await old.renew();
    expect(old.valid()).toBe(false);
    await old.release(); // not ours any more: left alone
    expect(JSON.parse(new TextDecoder().decode((await store.get(KEYS.exclusiveLock))!)).token).toBe(
      fresh.token,
    );
    await fresh.release();
  });

  test("a backup's shared lock keeps a prune out, and a prune's exclusive lock keeps backups out", async () => {
    const store = new RadosLikeStore();
    const backup = await RepositoryLock.shared(store, opts);
    await expect(RepositoryLock.exclusive(store, opts)).rejects.toThrow(/backup\(s\) are running/);
    expect(await store.get(KEYS.exclusiveLock)).toBeNull(); // the prune took its lock back
    await backup.release();
    const prune = await RepositoryLock.exclusive(store, opts);
    await expect(RepositoryLock.shared(store, opts)).rejects.toThrow(/locked by a test/);
    expect([...store.objects.keys()].filter((k) => k.startsWith(KEYS.sharedLockPrefix))).toEqual([]);
    await prune.release();
    const again = await RepositoryLock.shared(store, opts);
    await again.release();
  });

  test("a waiting prune starts once the backup ends", async () => {
    const store = new RadosLikeStore();
    const backup = await RepositoryLock.shared(store, opts);
    const waits: string[] = [];
    const pending = RepositoryLock.exclusive(store, {
      ...opts,
      waitMs: 10_000,
      onWait: (w) => waits.push(w),
    });
    await Bun.sleep(300);
    await backup.release();
    const prune = await pending;
    expect(waits.length).toBeGreaterThan(0);
    await prune.release();
  });
});
