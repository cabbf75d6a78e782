/**
 * Locks of a repository, made of objects, for S3 servers whose compare-and-set losers may
 * get a 500 instead of a 412 (radosgw) and whose answers can be lost (a timeout after the
 * write landed):
 *
 * - `locks/exclusive` (a prune): created with `If-None-Match: *`, holding a unique owner
 *   token and an expiry. Whatever the answer (200, 412, 500, a dropped connection) the
 *   holder is decided by reading the object back: the lock is ours only if it holds our
 *   token. An expired lock (its expiry plus CLOCK_SKEW_MS passed) is taken over with
 *   `If-Match: ETAG` of the expired object, so of two takers only one wins, and that too
 *   is read back. Renewals are `If-Match` the holder's own object, read back.
 * - `locks/shared-TOKEN` (a backup running): a plain PUT of a key no one else writes.
 *
 * Mutual exclusion between them is the order of writes and reads: a backup writes its
 * shared lock, then reads `locks/exclusive`; a prune writes the exclusive lock, then lists
 * the shared ones. With read-after-write consistency (S3, radosgw) at least one of two
 * concurrent starters sees the other and backs off. Locks are renewed every third of their
 * lifetime; a holder that could not renew within the lifetime knows its lock may be gone
 * ({@link RepositoryLock.valid}) and stops before its next irreversible step.
 */
import { PreconditionFailedError, RepositoryLockedError } from "./backup-errors.ts";
import type { ObjectStore } from "./object-store.ts";
import { KEYS } from "./repository-format.ts";

/** A lock lives this long without renewal (a killed holder blocks prunes this long). */
export const DEFAULT_LOCK_TTL_MS = 120_000;
/** Clocks of gateways writing one repository must agree within this. */
export const CLOCK_SKEW_MS = 30_000;
/** Pause between attempts while another holder has the repository. */
const RETRY_MS = 1_000;

/** What a lock object holds (plain JSON; no image names, even in encrypted repositories). */
export interface LockBody {
  readonly token: string;
  readonly kind: "exclusive" | "shared";
  readonly operation: string;
  readonly gateway: string;
  readonly createdAt: string;
  readonly expiresAt: string;
}

/** Options of taking a lock. */
export interface LockOptions {
  readonly operation: string;
  readonly gateway: string;
  readonly ttlMs?: number;
  /** Keep trying this long while the repository is locked (0: fail at once). */
  readonly waitMs?: number;
  /** Told while waiting. */
  readonly onWait?: (why: string) => void;
  readonly now?: () => number;
}

/** A held lock, renewed in the background until {@link release}. */
export class RepositoryLock {
  readonly key: string;
  readonly token: string;
  readonly #store: ObjectStore;
  readonly #body: Omit<LockBody, "expiresAt">;
  readonly #ttl: number;
  readonly #now: () => number;
  #renewedAt: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #lost = false;

  private constructor(
    store: ObjectStore,
    key: string,
    body: Omit<LockBody, "expiresAt">,
    ttl: number,
    now: () => number,
    at: number,
  ) {
    this.#store = store;
    this.key = key;
    this.token = body.token;
    this.#body = body;
    this.#ttl = ttl;
    this.#now = now;
    this.#renewedAt = at;
  }

  /** Takes a shared lock (backups), waiting while a prune holds the exclusive one. */
  static async shared(store: ObjectStore, options: LockOptions): Promise<RepositoryLock> {
    const now = options.now ?? Date.now;
    const ttl = options.ttlMs ?? DEFAULT_LOCK_TTL_MS;
    const deadline = now() + (options.waitMs ?? 0);
    const token = crypto.randomUUID();
    const key = `${KEYS.sharedLockPrefix}${token}`;
    const body = base(token, "shared", options, now);
    for (;;) {
      const at = now();
      await store.put(key, encode({ ...body, expiresAt: new Date(at + ttl).toISOString() }));
      const ex = await readLock(store, KEYS.exclusiveLock);
      if (!ex || expired(ex.body, now())) return new RepositoryLock(store, key, body, ttl, now, at).#start();
      await store.delete(key);
      const why = `the repository is locked by a ${ex.body.operation} on gateway ${ex.body.gateway} until ${ex.body.expiresAt}`;
      if (now() >= deadline) throw new RepositoryLockedError(`Cannot start: ${why}`);
      options.onWait?.(why);
      await sleep(RETRY_MS);
    }
  }

  /** Takes the exclusive lock (prune), waiting while another prune or any backup runs. */
  static async exclusive(store: ObjectStore, options: LockOptions): Promise<RepositoryLock> {
    const now = options.now ?? Date.now;
    const ttl = options.ttlMs ?? DEFAULT_LOCK_TTL_MS;
    const deadline = now() + (options.waitMs ?? 0);
    const token = crypto.randomUUID();
    const body = base(token, "exclusive", options, now);
    for (;;) {
      const at = now();
      const bytes = encode({ ...body, expiresAt: new Date(at + ttl).toISOString() });
      let why: string;
      if (await takeExclusive(store, bytes, token, now)) {
        const busy = await liveSharedLocks(store, now());
        if (busy.length === 0)
          return new RepositoryLock(store, KEYS.exclusiveLock, body, ttl, now, at).#start();
        await releaseIfOurs(store, KEYS.exclusiveLock, token);
        why = `${busy.length} backup(s) are running (${busy.map((b) => `${b.operation} on ${b.gateway}`).join(", ")})`;
      } else {
        const ex = await readLock(store, KEYS.exclusiveLock);
        why = ex
          ? `a ${ex.body.operation} on gateway ${ex.body.gateway} holds it until ${ex.body.expiresAt}`
          : "it changed hands";
      }
      if (now() >= deadline) throw new RepositoryLockedError(`Cannot lock ${store.name} exclusively: ${why}`);
      options.onWait?.(why);
      await sleep(RETRY_MS);
    }
  }

  /** True while the lock is certainly held: renewed within its lifetime and never found taken. */
  valid(): boolean {
    return !this.#lost && this.#now() - this.#renewedAt < this.#ttl - CLOCK_SKEW_MS / 2;
  }

  /** Throws RepositoryLockedError unless {@link valid}. */
  assertValid(): void {
    if (!this.valid())
      throw new RepositoryLockedError(
        `The ${this.#body.kind} lock on ${this.#store.name} lapsed (not renewed in time, or taken over): stopped before changing anything more; run again`,
      );
  }

  #start(): this {
    this.#timer = setInterval(() => void this.renew(), Math.max(100, this.#ttl / 3));
    (this.#timer as { unref?: () => void }).unref?.();
    return this;
  }

  /** Extends the lock (the timer does this; tests call it directly). */
  async renew(): Promise<void> {
    if (this.#lost) return;
    const at = this.#now();
    const bytes = encode({ ...this.#body, expiresAt: new Date(at + this.#ttl).toISOString() });
    try {
      if (this.#body.kind === "shared") {
        await this.#store.put(this.key, bytes);
      } else {
        const cur = await readLock(this.#store, this.key);
        if (!cur || cur.body.token !== this.token) {
          this.#lost = true;
          return;
        }
        await this.#store.put(this.key, bytes, { ifMatch: cur.etag }).catch(async (err) => {
          const back = await readLock(this.#store, this.key);
          if (
            back?.body.token !== this.token ||
            back.body.expiresAt !== JSON.parse(new TextDecoder().decode(bytes)).expiresAt
          )
            throw err;
        });
      }
      this.#renewedAt = at;
    } catch {
      // Not renewed this time; valid() turns false once the lifetime has passed.
    }
  }

  /** Stops renewing and removes the lock (the exclusive one only if it is still ours). */
  async release(): Promise<void> {
    clearInterval(this.#timer);
    if (this.#body.kind === "shared") await this.#store.delete(this.key).catch(() => {});
    else await releaseIfOurs(this.#store, this.key, this.token).catch(() => {});
  }
}

/** Creates the exclusive lock, or takes over an expired one; the answer is decided by reading back. */
async function takeExclusive(
  store: ObjectStore,
  bytes: Uint8Array,
  token: string,
  now: () => number,
): Promise<boolean> {
  try {
    await store.put(KEYS.exclusiveLock, bytes, { ifNoneMatch: true });
  } catch (err) {
    if (!(err instanceof PreconditionFailedError)) {
      // 500 from a compare-and-set loser, or a lost answer: the read below decides.
    }
  }
  const cur = await readLock(store, KEYS.exclusiveLock);
  if (cur?.body.token === token) return true;
  if (!cur || !expired(cur.body, now())) return false;
  try {
    await store.put(KEYS.exclusiveLock, bytes, { ifMatch: cur.etag });
  } catch {
    // decided by the read below
  }
  return (await readLock(store, KEYS.exclusiveLock))?.body.token === token;
}

async function releaseIfOurs(store: ObjectStore, key: string, token: string): Promise<void> {
  const cur = await readLock(store, key);
  if (cur?.body.token === token) await store.delete(key);
}

/** Shared locks that have not expired. */
export async function liveSharedLocks(store: ObjectStore, now: number): Promise<LockBody[]> {
  const out: LockBody[] = [];
  for await (const o of store.list(KEYS.sharedLockPrefix)) {
    const l = await readLock(store, o.key);
    if (l && !expired(l.body, now)) out.push(l.body);
  }
  return out;
}

/** A lock object and its ETag, or null (absent, or not a lock we can read: treated as absent only if unparsable and expired). */
async function readLock(store: ObjectStore, key: string): Promise<{ body: LockBody; etag: string } | null> {
  const head = await store.head(key);
  if (!head) return null;
  const raw = await store.get(key);
  if (!raw) return null;
  // The ETag of the bytes we parse: read again if the object changed between the two requests.
  const again = await store.head(key);
  if (!again || again.etag !== head.etag) return readLock(store, key);
  try {
    return { body: JSON.parse(new TextDecoder().decode(raw)) as LockBody, etag: head.etag };
  } catch {
    // Garbage in a lock object: treat it as an expired lock anyone may take over.
    return {
      body: {
        token: "",
        kind: "exclusive",
        operation: "unknown",
        gateway: "unknown",
        createdAt: "",
        expiresAt: new Date(0).toISOString(),
      },
      etag: head.etag,
    };
  }
}

function expired(l: LockBody, now: number): boolean {
  return now > Date.parse(l.expiresAt) + CLOCK_SKEW_MS || Number.isNaN(Date.parse(l.expiresAt));
}

function base(
  token: string,
  kind: LockBody["kind"],
  o: LockOptions,
  now: () => number,
): Omit<LockBody, "expiresAt"> {
  return {
    token,
    kind,
    operation: o.operation,
    gateway: o.gateway,
    createdAt: new Date(now()).toISOString(),
  };
}

function encode(b: LockBody): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(b)}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
