/**
 * A store that answers with a new identity is a wiped or replaced disk behind the same
 * address: it holds nothing it held before. This brings it back:
 * 1. a head holder first rejoins the register (every key rewritten on every member; until
 *    then it is kept out of every quorum, since a member that forgot its promises must not
 *    vote, see quorum-register.ts);
 * 2. the cluster record then names the new identity; every gateway's requests expect it
 *    from then on, and every replica state recorded for the old identity counts as nothing;
 * 3. the heal copies it everything by a full walk (heal-scheduler.ts), image by image.
 * Steps 1-2 retry until they succeed (every register member must answer for a rejoin). A
 * store replaced again while that runs (wiped twice) is brought back with its newest
 * identity: each retry takes the identity the store answered with last.
 */
import type { QuorumRegister } from "../register/quorum-register.ts";
import type { Cluster } from "../replication/cluster.ts";
import type { StoreMember } from "../replication/store-member.ts";

/** How long to wait before trying a failed rejoin again. */
const RETRY_MS = 2000;

/** Handles replaced stores; one at a time per store. */
export class Replacements {
  readonly #members: Map<string, StoreMember>;
  readonly #register: QuorumRegister;
  readonly #cluster: Cluster;
  readonly #log: (line: string) => void;
  readonly #running = new Map<string, Promise<void>>();
  /** The identity each store answered with last (a store may be replaced again meanwhile). */
  readonly #latest = new Map<string, string>();
  #stopped = false;

  constructor(
    members: readonly StoreMember[],
    register: QuorumRegister,
    cluster: Cluster,
    log: (line: string) => void,
  ) {
    this.#members = new Map(members.map((m) => [m.id, m]));
    this.#register = register;
    this.#cluster = cluster;
    this.#log = log;
    // Recorded by another gateway (after its rejoin): take the member back into quorums.
    cluster.identityChanged.add((id) => {
      if (this.#register.excluded.has(id) && !this.#running.has(id)) this.#register.include(id);
    });
  }

  /** Store `id` answered as `identity`, not the recorded one: bring it back as a new store. */
  handle(id: string, identity: string): void {
    if (this.#stopped) return;
    this.#latest.set(id, identity);
    if (this.#running.has(id)) return; // the running one takes the newest identity on its next try
    const member = this.#members.get(id);
    if (!member || this.#cluster.identity(id) === identity) return;
    const run = this.#bringBack(member, identity)
      .catch((err) => this.#log(`store ${id}: bringing it back failed: ${(err as Error).message}`))
      .finally(() => this.#running.delete(id));
    this.#running.set(id, run);
  }

  /** A store joined the cluster (a replacement of it is handled like any other's). */
  addMember(member: StoreMember): void {
    this.#members.set(member.id, member);
  }

  /** A store left the cluster. */
  removeMember(id: string): void {
    this.#members.delete(id);
  }

  /** Stores being brought back now. */
  get running(): ReadonlySet<string> {
    return new Set(this.#running.keys());
  }

  stop(): void {
    this.#stopped = true;
  }

  async #bringBack(member: StoreMember, first: string): Promise<void> {
    let identity = first;
    const old = this.#cluster.identity(member.id);
    this.#log(
      `store ${member.id}: answers with a new identity ${identity} (recorded ${old}): treated as a new, empty store`,
    );
    if (member.refs && !this.#register.excluded.has(member.id)) this.#register.exclude(member.id);
    member.store.expectIdentity(identity);
    for (let attempt = 1; !this.#stopped; attempt++) {
      // What the store answers now decides: wiped again, it may answer with an identity
      // another gateway already brought back and recorded, and then this gateway's health
      // sees nothing new (the store answers as recorded) to hand in (soak seed 754).
      const answered = await member.store.probe().then(
        (p) => p.identity,
        () => null,
      );
      if (answered) this.#latest.set(member.id, answered);
      const latest = this.#latest.get(member.id) ?? identity;
      if (latest !== identity) {
        this.#log(`store ${member.id}: replaced again meanwhile (now ${latest}): bringing that one back`);
        identity = latest;
        member.store.expectIdentity(identity);
      }
      try {
        const recorded = this.#cluster.identity(member.id);
        if (recorded !== identity) {
          if (member.refs) {
            const keys = await this.#register.rejoin(member.id);
            this.#log(`store ${member.id}: rejoined the register (${keys} keys rewritten on every member)`);
          }
          const now = (await this.#cluster.recordIdentity(member.id, identity, recorded ?? "")).stores[
            member.id
          ]?.identity;
          // Another gateway recorded another replacement meanwhile: look again at what the store answers.
          if (now !== identity)
            throw new Error(`the record names ${now} now (another gateway recorded it meanwhile)`);
        }
        if (member.refs) this.#register.include(member.id);
        this.#log(`store ${member.id}: recorded with identity ${identity}; a full heal follows`);
        return;
      } catch (err) {
        if (attempt === 1 || attempt % 10 === 0)
          this.#log(`store ${member.id}: bringing it back failed (${(err as Error).message}); retrying`);
        if (!this.#register.excluded.has(member.id) && member.refs) this.#register.exclude(member.id);
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
  }
}
