/**
 * FROZEN: the acceptor state each ref-holding store keeps per register key, as the ref's
 * value. Changing the encoding breaks every existing cluster; add fields, never rename.
 *
 *   {"bm":1,"p":[counter,"proposer"],"a":[counter,"proposer"]|null,"v":<JSON value>|null}
 *
 * - `p`: the highest ballot this acceptor promised (it accepts nothing lower).
 * - `a`, `v`: the ballot and value it last accepted (null: none yet).
 *
 * Ballots are [counter, proposer id] ordered by counter, then proposer id, so two
 * proposers never use the same ballot and a value is identified by its ballot.
 */

/** A Paxos ballot: counter, then the proposer's id as the tiebreak. */
export type Ballot = readonly [number, string];

/** The lowest ballot: below every real one. */
export const ZERO_BALLOT: Ballot = [0, ""];

/** One acceptor's state for one key. */
export interface AcceptorState {
  readonly promised: Ballot;
  readonly accepted: Ballot | null;
  readonly value: unknown;
}

/** Format marker of the encoding. */
const FORMAT = 1;

/** -1, 0, 1 as `a` is below, equal to or above `b`. */
export function compareBallots(a: Ballot, b: Ballot): number {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1;
  if (a[1] === b[1]) return 0;
  return a[1] < b[1] ? -1 : 1;
}

/** The higher of two ballots (a null counts as the lowest). */
export function maxBallot(a: Ballot | null, b: Ballot | null): Ballot | null {
  if (a === null) return b;
  if (b === null) return a;
  return compareBallots(a, b) >= 0 ? a : b;
}

/** The ballot of `proposer` that comes after every ballot seen so far. */
export function nextBallot(seen: Ballot | null, proposer: string): Ballot {
  return [(seen?.[0] ?? 0) + 1, proposer];
}

/** Serializes a state for storing as a ref value. */
export function encodeAcceptorState(state: AcceptorState): string {
  return JSON.stringify({ bm: FORMAT, p: state.promised, a: state.accepted, v: state.value ?? null });
}

/** Parses a stored state; throws a TypeError on anything that is not one (a FencedMemberError on a fenced member). */
export function decodeAcceptorState(text: string): AcceptorState {
  const raw = JSON.parse(text) as { bm?: unknown; p?: unknown; a?: unknown; v?: unknown; fenced?: unknown };
  if (raw?.fenced) throw new FencedMemberError();
  if (raw === null || typeof raw !== "object" || raw.bm !== FORMAT || !isBallot(raw.p)) {
    throw new TypeError(`Not a register acceptor state: ${text.slice(0, 120)}`);
  }
  if (raw.a !== null && !isBallot(raw.a))
    throw new TypeError(`Malformed accepted ballot: ${text.slice(0, 120)}`);
  return { promised: raw.p, accepted: raw.a as Ballot | null, value: raw.v ?? null };
}

function isBallot(value: unknown): value is Ballot {
  return (
    Array.isArray(value) &&
    value.length === 2 &&
    Number.isSafeInteger(value[0]) &&
    (value[0] as number) >= 0 &&
    typeof value[1] === "string"
  );
}

/**
 * FROZEN: the ref on every member that holds its ballot floor,
 * `{"bm":1,"floor":[counter,"proposer"]}`. A key that member does not hold counts as
 * promised to the floor, so once a collected key's promise went into the floor, no
 * proposal made before the collection can land on the key (quorum-register.ts, `collect`).
 */
export const FLOOR_REF = "register-floor";

/** Serializes a member's floor. */
export function encodeFloor(floor: Ballot): string {
  return JSON.stringify({ bm: FORMAT, floor });
}

/** Parses a member's floor; throws a TypeError on anything that is not one (a FencedMemberError on a fenced member). */
export function decodeFloor(text: string): Ballot {
  const raw = JSON.parse(text) as { bm?: unknown; floor?: unknown; fenced?: unknown };
  if (raw?.fenced) throw new FencedMemberError();
  if (raw === null || typeof raw !== "object" || raw.bm !== FORMAT || !isBallot(raw.floor))
    throw new TypeError(`Not a register floor: ${text.slice(0, 120)}`);
  return raw.floor;
}

/**
 * FROZEN: what a member removed from the register holds in place of every key and of its
 * floor, `{"bm":1,"fenced":{"since":ISO,"by":"gateway"}}`. It decodes as neither a state nor
 * a floor (in this version and in older ones, which need `p` and `floor`), so no proposer
 * can count a vote of that member again: it is as if down for good (quorum-register.ts,
 * `removeMember`).
 */
export function encodeFenced(by: string): string {
  return JSON.stringify({ bm: FORMAT, fenced: { since: new Date().toISOString(), by } });
}

/** Whether a ref's value is the fence marker. */
export function isFencedText(text: string): boolean {
  try {
    return Boolean((JSON.parse(text) as { fenced?: unknown } | null)?.fenced);
  } catch {
    return false;
  }
}

/** The member was removed from the register: it holds no state that may vote. */
export class FencedMemberError extends TypeError {
  override readonly name = "FencedMemberError";
  constructor() {
    super("This store was removed from the register (its refs are fenced): it has no vote");
  }
}
