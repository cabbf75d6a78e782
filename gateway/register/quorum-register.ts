/**
 * The embedded register: a CASPaxos register (Rystsov, "CASPaxos: Replicated State
 * Machines without Logs", 2018) over the ref-holding stores. Each store is an acceptor;
 * its state for a key is one ref (`acceptor-state.ts`) changed only by compare-and-set, so
 * the acceptor's rule ("promise nothing lower than you promised, accept nothing lower than
 * you promised") is checked against exactly the state the write replaces, even though the
 * logic runs here and not in the store.
 *
 * An update is Paxos with the value a function of the previous one:
 * 1. prepare: pick a ballot above every one seen and get a majority of promises; the
 *    accepted value with the highest ballot among them is the current value;
 * 2. accept: run the change on it and get the answer accepted by a majority at that ballot.
 * The accept also promises the proposer's next ballot, so a gateway that changes a key
 * again (an image's owner committing) skips phase 1 and pays one round trip; a competing
 * proposer's higher promise makes that accept fail and the next update runs both phases.
 *
 * A read asks a majority and answers at once when a majority holds the same accepted
 * ballot (that value is chosen, and no later one can be, or the majorities would
 * intersect in a higher ballot); otherwise, after a short wait for stragglers, it runs a
 * full round that writes the current value back.
 *
 * Members known to be down are not asked unless the rest are no majority. A member that
 * answers with another store identity (a wiped disk) is refused by the store layer and
 * counts as no answer: an acceptor that lost its state must never vote.
 *
 * Collecting a key (an image's tombstone, `collect`) must not let an old proposal land on
 * the emptied key: a gateway still holding a promise or a value from before would write
 * its stale value there, and the next read would choose it. So each member keeps a ballot
 * floor (`FLOOR_REF`): a key it does not hold counts as promised to the floor, and every
 * write to a key it does not hold is guarded on the floor's version (the store checks it in
 * the same step, `RefGuard`), so a proposer that read an older floor is refused. A key is
 * collected only once every member accepted its value at one ballot; each member's floor is
 * raised to the key's promise before the key is deleted there. A member that lost its state
 * gets the highest floor of the others before it rejoins.
 */
import { LRUCache } from "lru-cache";
import type { ChunkStore, RefEntry } from "../../chunkstore/chunk-store.ts";
import {
  type AcceptorState,
  type Ballot,
  compareBallots,
  decodeAcceptorState,
  decodeFloor,
  encodeAcceptorState,
  encodeFenced,
  encodeFloor,
  FLOOR_REF,
  isFencedText,
  maxBallot,
  nextBallot,
  ZERO_BALLOT,
} from "./acceptor-state.ts";
import { firstQuorum } from "./quorum.ts";
import {
  type Change,
  type Decision,
  keep,
  type Register,
  RegisterUnavailableError,
  type RegisterValue,
} from "./register.ts";

/** One acceptor: a store that holds refs. */
export interface RegisterMember {
  readonly id: string;
  readonly store: ChunkStore;
}

/** Options of {@link QuorumRegister}. */
export interface QuorumRegisterOptions {
  /** This proposer's id, unique in the cluster (the gateway id). */
  readonly proposer: string;
  /** Members believed down are skipped while the others are a majority. */
  readonly isDown?: (id: string) => boolean;
  /** Told about every failed request to a member (the health tracker listens). */
  readonly onFailure?: (id: string, error: unknown) => void;
  /** An operation that has no majority after this long fails. Default 5 s. */
  readonly deadlineMs?: number;
}

/** What the register knows of one member's state for one key: its ref version and decoded state. */
interface Seen {
  readonly version: string | null;
  readonly state: AcceptorState | null;
}

/** After the first majority of a read disagrees, wait this long for the other members. */
const READ_SETTLE_MS = 30;
/** Fast reads tried before a read falls back to a full (writing) round. */
const FAST_READ_TRIES = 3;
/** Rounds an update tries before it gives up as contended. */
const MAX_ROUNDS = 12;
/** Compare-and-set retries on one member within one round (its state moved under us). */
const MEMBER_CAS_TRIES = 4;
/** Keys whose member states are cached (an entry is a few hundred bytes): bounds memory. */
const CACHED_KEYS = 50_000;

/** Who a round asks and how many must accept: normally a majority of the eligible members. */
interface Scope {
  readonly members: readonly RegisterMember[];
  readonly need: number;
}

type Outcome =
  | { readonly ok: true; readonly before: AcceptorState | null }
  | { readonly ok: false; readonly state: AcceptorState | null };

/** A linearizable register over a majority of ref-holding stores. */
export class QuorumRegister implements Register {
  #members: readonly RegisterMember[];
  readonly #proposer: string;
  readonly #isDown: (id: string) => boolean;
  readonly #onFailure: (id: string, error: unknown) => void;
  readonly #deadlineMs: number;
  readonly #seen = new LRUCache<string, Map<string, Seen>>({ max: CACHED_KEYS });
  /** Per key: the ballot this proposer holds promises for on a majority, and the value it wrote. */
  readonly #reserved = new LRUCache<string, { ballot: Ballot; value: Stored | null }>({
    max: CACHED_KEYS,
  });
  /** Per key: the highest ballot seen anywhere, so the next one goes above it. */
  readonly #highest = new LRUCache<string, Ballot>({ max: CACHED_KEYS });
  /** Per key: the tail of the updates queued in this process (one ballot carries one value). */
  readonly #queues = new Map<string, Promise<unknown>>();
  /** Members kept out of every round (a replaced store until it has rejoined). */
  readonly #excluded = new Set<string>();
  /** Per member: its ballot floor and the floor ref's version, as last read. */
  readonly #floors = new Map<string, Floor>();

  constructor(members: readonly RegisterMember[], options: QuorumRegisterOptions) {
    if (members.length === 0) throw new RangeError("A register needs at least one member that holds refs");
    if (!options.proposer) throw new TypeError("A register proposer needs an id");
    this.#members = members;
    this.#proposer = options.proposer;
    this.#isDown = options.isDown ?? (() => false);
    this.#onFailure = options.onFailure ?? (() => {});
    this.#deadlineMs = options.deadlineMs ?? 5000;
  }

  /** The acceptors, in configuration order. */
  get members(): readonly RegisterMember[] {
    return this.#members;
  }

  /** How many members make a quorum: a majority. */
  get majority(): number {
    return Math.floor(this.#members.length / 2) + 1;
  }

  // ---- the Register interface

  async read(key: string): Promise<RegisterValue | null> {
    for (let attempt = 0; attempt < FAST_READ_TRIES; attempt++) {
      const decided = this.#decide(await this.#collect(key));
      if (decided) return decided.value?.d ?? null;
      await sleep(5 * 2 ** attempt);
    }
    return this.update(key, (current) => keep(current));
  }

  update<T>(key: string, change: Change<T>): Promise<T> {
    return this.#queued(key, () => this.#update(key, change));
  }

  /** Runs `fn` after the updates of `key` queued before it in this process. */
  #queued<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#queues.get(key) ?? Promise.resolve();
    const run = prev.catch(() => {}).then(fn);
    const tail = run.catch(() => {});
    this.#queues.set(key, tail);
    void tail.then(() => {
      if (this.#queues.get(key) === tail) this.#queues.delete(key);
    });
    return run;
  }

  async scan(prefix: string): Promise<Map<string, RegisterValue>> {
    const perMember = await firstQuorum(
      this.#eligible(),
      (m) => this.#scanMember(m, prefix),
      (done, errors) => done.size + errors.size >= this.members.length,
      { deadlineMs: this.#deadlineMs },
    );
    for (const [id, err] of perMember.errors) this.#onFailure(id, err);
    if (perMember.done.size < this.majority) {
      throw new RegisterUnavailableError(
        `only ${perMember.done.size} of ${this.members.length} members answered a scan of "${prefix}*" (need ${this.majority})`,
      );
    }
    const keys = new Set<string>();
    for (const states of perMember.done.values()) for (const k of states.keys()) keys.add(k);
    const out = new Map<string, RegisterValue>();
    const undecided: string[] = [];
    for (const key of [...keys].sort()) {
      const answers = new Map<string, AcceptorState | null>();
      for (const [id, states] of perMember.done) answers.set(id, states.get(key)?.state ?? null);
      const decided = this.#decide(answers);
      if (!decided) undecided.push(key);
      else if (decided.value !== null) out.set(key, decided.value.d);
    }
    for (const key of undecided) {
      const value = await this.read(key);
      if (value !== null) out.set(key, value);
    }
    return out;
  }

  // ---- updates

  async #update<T>(key: string, change: Change<T>): Promise<T> {
    const start = performance.now();
    const op = crypto.randomUUID();
    // A round's write can be accepted by a minority, fail, and be adopted by a later round
    // (Paxos must keep a value that may have been chosen). So every written value carries
    // each proposer's last update tag, and a round that finds one of its own earlier
    // attempts in the current value is done: each update applies exactly once.
    const attempts = new Map<string, T>();
    const applied = (current: Stored | null): { done: true; result: T } | null => {
      const tag = current?.ops[this.#proposer];
      return tag !== undefined && attempts.has(tag) ? { done: true, result: attempts.get(tag)! } : null;
    };
    for (let round = 0; round < MAX_ROUNDS; round++) {
      if (round > 0 && performance.now() - start > this.#deadlineMs)
        throw new RegisterUnavailableError(
          `no round on key "${key}" succeeded within ${this.#deadlineMs} ms`,
        );
      const tag = `${op}:${round}`;
      const reserved = this.#reserved.get(key);
      if (reserved) {
        const done = applied(reserved.value);
        if (done) return done.result;
        // What this proposer wrote last is the current value only if an accept at the reserved
        // ballot still succeeds; a decision that writes nothing (keep, or a refusal) must be
        // confirmed against the members first, or it would answer from a stale value.
        let decision: Decision<T>;
        try {
          decision = change(reserved.value?.d ?? null);
        } catch (err) {
          const decided = this.#decide(await this.#collect(key));
          if (decided && sameJson(decided.value, reserved.value)) throw err;
          this.#reserved.delete(key);
          continue;
        }
        if ("keep" in decision) {
          // Deciding to keep needs the current value confirmed (a read), not assumed.
          const decided = this.#decide(await this.#collect(key));
          if (decided && sameJson(decided.value, reserved.value)) return decision.result;
          this.#reserved.delete(key);
          continue;
        }
        attempts.set(tag, decision.result);
        // A ballot carries one value only: the reservation is used up by this attempt,
        // whatever becomes of it (a failed or lost accept must never be retried with another value).
        this.#reserved.delete(key);
        if (
          await this.#accept(
            key,
            reserved.ballot,
            stored(decision.write, reserved.value, this.#proposer, tag),
          )
        )
          return decision.result;
        continue; // someone promised a higher ballot: run phase 1 next round
      }
      const ballot = nextBallot(this.#highest.get(key) ?? null, this.#proposer);
      const promised = await this.#prepare(key, ballot);
      if (!promised) {
        await sleep(Math.random() * 10 * (round + 1));
        continue;
      }
      const done = applied(promised.value);
      if (done) {
        // Our earlier attempt is the current value; make sure it is chosen before answering.
        if (promised.chosen || (await this.#accept(key, ballot, promised.value))) return done.result;
        continue;
      }
      const decision = change(promised.value?.d ?? null);
      if ("keep" in decision) {
        if (promised.chosen) return decision.result;
        // The current value may be accepted by a minority only: write it back so that what
        // this round saw stays the answer.
        if (await this.#accept(key, ballot, promised.value)) return decision.result;
        continue;
      }
      attempts.set(tag, decision.result);
      if (await this.#accept(key, ballot, stored(decision.write, promised.value, this.#proposer, tag)))
        return decision.result;
      await sleep(Math.random() * 10 * (round + 1));
    }
    throw new RegisterUnavailableError(`key "${key}" is contended: no round won after ${MAX_ROUNDS} tries`);
  }

  /**
   * Phase 1. Resolves with the highest accepted value among a majority of promises (and
   * whether that value was already accepted by a majority of them), or null if no majority
   * promised.
   */
  async #prepare(
    key: string,
    ballot: Ballot,
    scope = this.#scope(),
  ): Promise<{ value: Stored | null; chosen: boolean } | null> {
    const outcome = await this.#round(key, scope, (state) =>
      compareBallots(state?.promised ?? ZERO_BALLOT, ballot) >= 0 ||
      compareBallots(state?.accepted ?? ZERO_BALLOT, ballot) >= 0
        ? null
        : { promised: ballot, accepted: state?.accepted ?? null, value: state?.value ?? null },
    );
    if (!outcome) return null;
    let best: AcceptorState | null = null;
    for (const before of outcome.values()) {
      if (before?.accepted && (!best?.accepted || compareBallots(before.accepted, best.accepted) > 0))
        best = before;
    }
    const top = best?.accepted ?? null;
    const agreeing = [...outcome.values()].filter((b) =>
      top === null ? !b?.accepted : b?.accepted && compareBallots(b.accepted, top) === 0,
    ).length;
    return { value: asStored(best?.value), chosen: agreeing >= scope.need };
  }

  /** Phase 2, also promising this proposer's next ballot. True once a majority accepted. */
  async #accept(key: string, ballot: Ballot, value: Stored | null, scope = this.#scope()): Promise<boolean> {
    const next = nextBallot(ballot, this.#proposer);
    const outcome = await this.#round(key, scope, (state) =>
      compareBallots(state?.promised ?? ZERO_BALLOT, ballot) > 0
        ? null
        : { promised: next, accepted: ballot, value },
    );
    if (!outcome) return false;
    this.#reserved.set(key, { ballot: next, value });
    this.#note(key, next);
    return true;
  }

  /**
   * Applies `transform` to every eligible member's state by compare-and-set; resolves with
   * each accepting member's state before the change once a majority accepted, or null when
   * that can no longer happen.
   */
  async #round(
    key: string,
    scope: Scope,
    transform: (state: AcceptorState | null) => AcceptorState | null,
  ): Promise<Map<string, AcceptorState | null> | null> {
    const { members, need } = scope;
    const { done, errors } = await firstQuorum(
      members,
      (m) => this.#casMember(m, key, transform),
      (d, e) => {
        let ok = 0;
        let refused = 0;
        for (const o of d.values()) o.ok ? ok++ : refused++;
        return ok >= need || members.length - refused - e.size < need;
      },
      { deadlineMs: this.#deadlineMs },
    );
    const refused = [...done.values()].filter((o) => !o.ok).length;
    if (done.size - refused < need && refused === 0) {
      // Not a lost race: too few members answered at all. Retrying cannot help now.
      const why = [...errors].map(([id, e]) => `${id}: ${(e as Error)?.message ?? e}`).join("; ");
      throw new RegisterUnavailableError(
        `only ${done.size} of ${this.members.length} members answered for "${key}" (need ${need})${why ? `: ${why}` : ""}`,
      );
    }
    const accepted = new Map<string, AcceptorState | null>();
    for (const [id, o] of done) {
      if (o.ok) accepted.set(id, o.before);
      else if (o.state) this.#note(key, maxBallot(o.state.promised, o.state.accepted)!);
    }
    return accepted.size >= need ? accepted : null;
  }

  /** One member: compare-and-set its state through `transform`, retrying when it moved. */
  async #casMember(
    m: RegisterMember,
    key: string,
    transform: (state: AcceptorState | null) => AcceptorState | null,
  ): Promise<Outcome> {
    try {
      let seen = this.#cached(key).get(m.id) ?? (await this.#fetch(m, key));
      let state: AcceptorState | null = seen.state;
      for (let attempt = 0; attempt < MEMBER_CAS_TRIES; attempt++) {
        // A key the member does not hold is promised to its floor, and the write is guarded
        // on the floor it was judged against.
        const floor = seen.state === null ? await this.#floor(m) : null;
        state = floor?.ballot ? { promised: floor.ballot, accepted: null, value: null } : seen.state;
        const next = transform(state);
        if (!next) return { ok: false, state };
        const guard = floor ? { name: FLOOR_REF, version: floor.version } : undefined;
        const r = await m.store.casRef(key, seen.version, encodeAcceptorState(next), guard);
        if (r.ok) {
          this.#remember(key, m.id, { version: r.version, state: next });
          return { ok: true, before: seen.state };
        }
        if (floor) this.#floors.delete(m.id);
        seen = this.#remember(key, m.id, toSeen(r.current));
      }
      return { ok: false, state };
    } catch (err) {
      this.#cached(key).delete(m.id);
      if (!(err instanceof TypeError)) this.#onFailure(m.id, err);
      throw err;
    }
  }

  // ---- reads

  /** Every eligible member's state for `key`: the first majority, then stragglers for a moment. */
  async #collect(key: string): Promise<Map<string, AcceptorState | null>> {
    const members = this.#eligible();
    let settleTimer: ReturnType<typeof setTimeout> | undefined;
    let settled = false;
    let recheck: () => void = () => {};
    const { done, errors } = await firstQuorum(
      members,
      (m) => this.#fetch(m, key),
      (d, e) => {
        if (d.size + e.size === members.length) return true;
        if (d.size < this.majority) return false;
        if (this.#decide(new Map([...d].map(([id, s]) => [id, s.state])))) return true;
        settleTimer ??= setTimeout(() => {
          settled = true;
          recheck();
        }, READ_SETTLE_MS);
        return settled;
      },
      { deadlineMs: this.#deadlineMs, recheck: (fn) => (recheck = fn) },
    );
    clearTimeout(settleTimer);
    if (done.size < this.majority) {
      const why = [...errors].map(([id, e]) => `${id}: ${(e as Error)?.message ?? e}`).join("; ");
      throw new RegisterUnavailableError(
        `only ${done.size} of ${this.members.length} members answered reading "${key}" (need ${this.majority})${why ? `: ${why}` : ""}`,
      );
    }
    return new Map([...done].map(([id, s]) => [id, s.state]));
  }

  /** The chosen value if a majority of `states` hold the same highest accepted ballot. */
  #decide(states: ReadonlyMap<string, AcceptorState | null>): { value: Stored | null } | null {
    let top: AcceptorState | null = null;
    for (const s of states.values()) {
      if (s?.accepted && (!top?.accepted || compareBallots(s.accepted, top.accepted) > 0)) top = s;
    }
    const ballot = top?.accepted ?? null;
    let agreeing = 0;
    for (const s of states.values()) {
      if (ballot === null ? !s?.accepted : s?.accepted && compareBallots(s.accepted, ballot) === 0)
        agreeing++;
    }
    return agreeing >= this.majority ? { value: asStored(top?.value) } : null;
  }

  async #fetch(m: RegisterMember, key: string): Promise<Seen> {
    return this.#remember(key, m.id, toSeen(await this.#getRef(m, key)));
  }

  /** One ref of `m`; a failure is reported to the health tracker and rethrown. */
  async #getRef(m: RegisterMember, name: string): Promise<RefEntry | null> {
    try {
      return await m.store.getRef(name);
    } catch (err) {
      this.#onFailure(m.id, err);
      throw err;
    }
  }

  async #scanMember(m: RegisterMember, prefix: string): Promise<Map<string, Seen>> {
    const out = new Map<string, Seen>();
    let after: string | undefined;
    do {
      const page = await m.store.scanRefs(prefix, after === undefined ? {} : { after });
      for (const r of page.refs) {
        if (r.name === FLOOR_REF) continue; // the member's floor, not a key
        const seen = toSeen(r);
        out.set(r.name, seen);
        this.#remember(r.name, m.id, seen);
      }
      after = page.next ?? undefined;
    } while (after !== undefined);
    return out;
  }

  // ---- bookkeeping

  #eligible(): RegisterMember[] {
    const usable = this.members.filter((m) => !this.#excluded.has(m.id));
    const up = usable.filter((m) => !this.#isDown(m.id));
    return up.length >= this.majority ? up : usable;
  }

  #scope(): Scope {
    return { members: this.#eligible(), need: this.majority };
  }

  // ---- replaced members

  /** Keeps `member` out of every round (and every read) until {@link include}. */
  exclude(member: string): void {
    if (!this.members.some((m) => m.id === member)) throw new RangeError(`No register member "${member}"`);
    this.#excluded.add(member);
  }

  include(member: string): void {
    this.#excluded.delete(member);
  }

  /** Members kept out now. */
  get excluded(): ReadonlySet<string> {
    return this.#excluded;
  }

  /**
   * Brings back an excluded member that lost its state (a wiped disk answering with a new
   * identity; its store object must already expect that identity). A member that forgot
   * its promises could let a proposal made before the wipe complete against a value chosen
   * since, so for every key a full round writes the current value back at a ballot above
   * all in use, and must be accepted by EVERY member, the returning one included: after
   * that no older proposal can complete anywhere. Then the member is included again.
   * Resolves with the number of keys copied; throws if a member did not answer (retry later).
   */
  async rejoin(member: string): Promise<number> {
    if (!this.#excluded.has(member)) throw new RangeError(`Register member "${member}" is not excluded`);
    const all: Scope = { members: [...this.members], need: this.members.length };
    // It forgot its floor too: it gets the highest of all before it holds any key again.
    let highest: Ballot | null = null;
    for (const m of this.members) {
      this.#floors.delete(m.id);
      const floor = await this.#floor(m).catch((err) => {
        throw new RegisterUnavailableError(`every member must answer a rejoin; ${m.id} did not`, {
          cause: err,
        });
      });
      highest = maxBallot(highest, floor.ballot);
    }
    const returning = this.members.find((m) => m.id === member)!;
    if (highest) await this.#raiseFloor(returning, highest);
    const keys = await this.#allKeys();
    for (const key of keys) await this.#queued(key, () => this.#rewrite(key, all));
    this.#excluded.delete(member);
    return keys.length;
  }

  async #allKeys(valid: readonly RegisterMember[] = this.#eligible()): Promise<string[]> {
    const { done, errors } = await firstQuorum(
      valid,
      (m) => this.#scanMember(m, ""),
      (d, e) => d.size + e.size >= valid.length,
      { deadlineMs: this.#deadlineMs },
    );
    if (errors.size > 0 || done.size < valid.length) {
      throw new RegisterUnavailableError(
        `every member must answer a rejoin or a removal; ${[...errors.keys()].join(", ")} did not`,
      );
    }
    const keys = new Set<string>();
    for (const states of done.values()) for (const k of states.keys()) keys.add(k);
    return [...keys].sort();
  }

  /** One key: prepare and write back its current value, accepted by every member of `scope`. */
  async #rewrite(key: string, scope: Scope): Promise<void> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      this.#reserved.delete(key);
      const ballot = nextBallot(this.#highest.get(key) ?? null, this.#proposer);
      const promised = await this.#prepare(key, ballot, scope);
      if (promised && (await this.#accept(key, ballot, promised.value, scope))) return;
      await sleep(Math.random() * 10 * (round + 1));
    }
    throw new RegisterUnavailableError(`could not rewrite key "${key}" on every member`);
  }

  // ---- removing a member for good

  /** Why `member` cannot be removed from the register now, or null. */
  removalBlocker(member: string): string | null {
    if (!this.#members.some((m) => m.id === member)) return `"${member}" is not a register member`;
    if (this.#members.length < 3)
      return `${this.#members.length} head holder(s): at least two must remain (replace the store at the same id instead)`;
    return this.collectBlocker();
  }

  /**
   * Removes `member` from the register for good (a head holder leaving the cluster). Going
   * from n members to n-1 is safe by itself: a majority of n and a majority of the other n-1
   * always share a member, so a proposer that still counts `member` (another gateway, not yet
   * told) and one that does not never both win. Two steps are taken so that the NEXT removal
   * is safe too, whoever runs it and however late other gateways learn of this one:
   * 1. fence: every key of `member`, and its floor, is replaced by a marker that decodes as
   *    nothing (`encodeFenced`), so no proposer ever counts its vote again; it is as if down
   *    for good, which Paxos tolerates. The floor goes first, so no key appears there since.
   * 2. rewrite: every key gets its current value written back at a new ballot, accepted by
   *    EVERY remaining member, so that any later quorum of any subset sees it.
   * Then the member is dropped here. Stopping half way is safe (a fenced member is a member
   * that never answers) and calling again finishes. Throws RegisterUnavailableError when a
   * member did not answer, and a RangeError naming the {@link removalBlocker}.
   */
  async removeMember(member: string, by: string = this.#proposer): Promise<{ rewritten: number }> {
    const blocker = this.removalBlocker(member);
    if (blocker) throw new RangeError(`Cannot remove register member "${member}": ${blocker}`);
    const leaving = this.#members.find((m) => m.id === member)!;
    await this.#fence(leaving, by);
    const remaining = this.#members.filter((m) => m.id !== member);
    const all: Scope = { members: remaining, need: remaining.length };
    const keys = await this.#allKeys(remaining);
    for (const key of keys) await this.#queued(key, () => this.#rewrite(key, all));
    this.forgetMember(member);
    return { rewritten: keys.length };
  }

  /** Drops a member another gateway removed (its refs are fenced already); no I/O. */
  forgetMember(member: string): void {
    if (!this.#members.some((m) => m.id === member) || this.#members.length === 1) return;
    this.#members = this.#members.filter((m) => m.id !== member);
    this.#excluded.delete(member);
    this.#floors.delete(member);
  }

  /** Replaces every ref of `m` (its floor first) by the fence marker, by compare-and-set. */
  async #fence(m: RegisterMember, by: string): Promise<void> {
    const marker = encodeFenced(by);
    const fenceRef = async (name: string, entry: RefEntry | null) => {
      for (let attempt = 0; attempt < MAX_ROUNDS; attempt++) {
        if (entry && isFencedText(entry.value)) return;
        const r = await m.store.casRef(name, entry?.version ?? null, marker);
        if (r.ok) return;
        entry = r.current;
      }
      throw new RegisterUnavailableError(
        `could not fence ref "${name}" of member ${m.id}: it keeps changing`,
      );
    };
    try {
      await fenceRef(FLOOR_REF, await m.store.getRef(FLOOR_REF));
      this.#floors.delete(m.id);
      let after: string | undefined;
      do {
        const page = await m.store.scanRefs("", after === undefined ? {} : { after });
        for (const r of page.refs) if (r.name !== FLOOR_REF) await fenceRef(r.name, r);
        after = page.next ?? undefined;
      } while (after !== undefined);
    } catch (err) {
      if (err instanceof RegisterUnavailableError) throw err;
      throw new RegisterUnavailableError(`member ${m.id} must answer while it is fenced; it did not`, {
        cause: err,
      });
    }
  }

  // ---- collecting keys

  collectBlocker(): string | null {
    if (this.#excluded.size > 0)
      return `register member(s) ${[...this.#excluded].join(", ")} not rejoined yet`;
    const down = this.members.filter((m) => this.#isDown(m.id)).map((m) => m.id);
    if (down.length > 0) return `register member(s) ${down.join(", ")} down: every member must answer`;
    const old = this.members.filter((m) => m.store.capabilities.refGuards !== true).map((m) => m.id);
    if (old.length > 0)
      return `register member(s) ${old.join(", ")} cannot guard ref writes (an older store)`;
    return null;
  }

  /**
   * Removes `key` from every member once `collectable` says its value is one nothing can
   * tell from no value. First a round at a new ballot accepted by EVERY member (so none
   * holds an older value a read could choose); then, member by member, the floor is raised
   * to the key's promise and the key deleted if it is still exactly that. Stopping half way
   * is safe: a member without the key counts as promised to its floor and holding nothing,
   * and a read that meets the value elsewhere writes it back. Resolves true when every
   * member dropped the key, false when the value is not collectable or moved meanwhile;
   * throws RegisterUnavailableError when a member did not answer (try again later).
   */
  collect(key: string, collectable: (value: RegisterValue | null) => boolean): Promise<boolean> {
    return this.#queued(key, async () => {
      const blocker = this.collectBlocker();
      if (blocker) throw new RegisterUnavailableError(`cannot collect "${key}": ${blocker}`);
      const all: Scope = { members: [...this.members], need: this.members.length };
      let ballot: Ballot | null = null;
      for (let round = 0; round < MAX_ROUNDS && ballot === null; round++) {
        this.#reserved.delete(key);
        const b = nextBallot(this.#highest.get(key) ?? null, this.#proposer);
        const promised = await this.#prepare(key, b, all);
        if (promised) {
          if (!collectable(promised.value?.d ?? null)) return false;
          if (await this.#accept(key, b, promised.value, all)) ballot = b;
        }
        if (ballot === null) await sleep(Math.random() * 10 * (round + 1));
      }
      if (ballot === null) throw new RegisterUnavailableError(`key "${key}" is contended: not collected`);
      this.#reserved.delete(key); // its promise goes into the floors: never use it
      for (const m of this.members) {
        const seen = await this.#fetch(m, key);
        if (!seen.state?.accepted || compareBallots(seen.state.accepted, ballot) !== 0) return false;
        await this.#raiseFloor(m, seen.state.promised);
        const r = await m.store.deleteRef(key, seen.version!);
        if (!r.ok) return false;
        this.#cached(key).delete(m.id);
      }
      this.#seen.delete(key);
      return true;
    });
  }

  /** The member's floor as last read, or read now. */
  async #floor(m: RegisterMember): Promise<Floor> {
    const known = this.#floors.get(m.id);
    if (known) return known;
    const entry = await this.#getRef(m, FLOOR_REF);
    const floor: Floor = entry
      ? { version: entry.version, ballot: decodeFloor(entry.value) }
      : { version: null, ballot: null };
    this.#floors.set(m.id, floor);
    return floor;
  }

  /** Raises `m`'s floor to at least `to` (compare-and-set, retried while it moves). */
  async #raiseFloor(m: RegisterMember, to: Ballot): Promise<void> {
    for (let attempt = 0; attempt < MAX_ROUNDS; attempt++) {
      const floor = await this.#floor(m);
      if (floor.ballot && compareBallots(floor.ballot, to) >= 0) return;
      const r = await m.store.casRef(FLOOR_REF, floor.version, encodeFloor(to));
      if (r.ok) {
        this.#floors.set(m.id, { version: r.version, ballot: to });
        return;
      }
      this.#floors.delete(m.id);
    }
    throw new RegisterUnavailableError(`could not raise the floor of member ${m.id}`);
  }

  #cached(key: string): Map<string, Seen> {
    let m = this.#seen.get(key);
    if (!m) {
      m = new Map();
      this.#seen.set(key, m);
    }
    return m;
  }

  #remember(key: string, member: string, seen: Seen): Seen {
    this.#cached(key).set(member, seen);
    if (seen.state) this.#note(key, maxBallot(seen.state.promised, seen.state.accepted)!);
    return seen;
  }

  #note(key: string, ballot: Ballot): void {
    const h = this.#highest.get(key);
    if (!h || compareBallots(ballot, h) > 0) this.#highest.set(key, ballot);
  }
}

/**
 * FROZEN, with acceptor-state.ts: an accepted value is `{"d": <the caller's value>,
 * "ops": {<proposer>: <tag of the last update it wrote>}}`. A proposer runs one update
 * per key at a time, so its own entry is all it needs to recognise an earlier attempt of
 * the update it is running, however many other proposers wrote since.
 */
interface Stored {
  readonly d: RegisterValue;
  readonly ops: Readonly<Record<string, string>>;
}

/** Proposers remembered in a value (the most recent writers): far more than gateways in a cluster. */
const KEPT_PROPOSERS = 64;

function stored(value: RegisterValue, previous: Stored | null, proposer: string, tag: string): Stored {
  const ops: Record<string, string> = {};
  const earlier = Object.entries(previous?.ops ?? {}).filter(([p]) => p !== proposer);
  for (const [p, t] of earlier.slice(-(KEPT_PROPOSERS - 1))) ops[p] = t;
  ops[proposer] = tag;
  return { d: value, ops };
}

function asStored(value: unknown): Stored | null {
  if (value === null || value === undefined) return null;
  const v = value as Partial<Stored>;
  if (typeof v !== "object" || typeof v.ops !== "object" || v.ops === null || !("d" in v))
    throw new TypeError("Register value is not in the stored form {d, ops}");
  return v as Stored;
}

/** A member's ballot floor and the version of its floor ref (null: none written yet). */
interface Floor {
  readonly version: string | null;
  readonly ballot: Ballot | null;
}

/** A member's ref as the register sees it; a value that is not an acceptor state is an error. */
function toSeen(entry: RefEntry | null): Seen {
  if (!entry) return { version: null, state: null };
  return { version: entry.version, state: decodeAcceptorState(entry.value) };
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
