/**
 * Leases on the register: a key names a holder until a wall-clock expiry, so that work
 * which should run once in the cluster (healing or scrubbing a store) runs on one gateway
 * at a time, and another takes over when the holder dies.
 *
 * Time: the holder counts its lease from when it SENT the request that took or renewed it
 * (monotonic clock), and stops acting `SAFETY_MS` before the expiry; another gateway takes
 * a lease only `CLOCK_SKEW_MS` after the expiry by its own wall clock. Clocks of the
 * gateways must agree within CLOCK_SKEW_MS (NTP does far better). A holder that was
 * stopped (SIGSTOP) past its lease finds `valid` false when it resumes and must not act.
 * Work done under a lease must also be harmless if done twice: a lease bounds duplicate
 * work, it is not what keeps data safe.
 */
import { keep, type Register, write } from "./register.ts";

/** Wall-clock allowance between gateways. */
export const CLOCK_SKEW_MS = 2000;
/** The holder stops acting this long before its lease ends. */
const SAFETY_MS = 500;

/** A lease as stored in the register. */
export interface LeaseValue {
  readonly holder: string;
  /** Bumped each time the lease changes hands (a fencing token). */
  readonly token: number;
  /** Wall-clock ms (Date.now()) after which the lease is free. */
  readonly expiresAt: number;
  /** What the holder reports (for example a heal's progress), for every gateway to show. */
  readonly data?: unknown;
}

/** Register key prefix of leases. */
export const LEASE_PREFIX = "lease.";

/** One named lease, from the point of view of one would-be holder. */
export class Lease {
  readonly key: string;
  readonly #register: Register;
  readonly #holder: string;
  readonly #ttlMs: number;
  /** Monotonic time until which this holder may act. */
  #validUntil = 0;
  #token = 0;

  constructor(register: Register, name: string, holder: string, ttlMs = 10_000) {
    if (ttlMs <= SAFETY_MS + 1000) throw new RangeError(`A lease must last more than ${SAFETY_MS + 1000} ms`);
    this.key = `${LEASE_PREFIX}${name}`;
    this.#register = register;
    this.#holder = holder;
    this.#ttlMs = ttlMs;
  }

  /** True while this holder holds the lease by its own clock. */
  get valid(): boolean {
    return performance.now() < this.#validUntil;
  }

  /** How much longer this holder may act by its own clock (0 when not held). */
  get remainingMs(): number {
    return Math.max(0, this.#validUntil - performance.now());
  }

  /** The fencing token of the current holding (0 when never held). */
  get token(): number {
    return this.#token;
  }

  /**
   * Takes the lease if it is free (or expired, or ours), or renews it, publishing `data`.
   * Resolves true if held now; false if another holder has it.
   */
  async acquire(data?: unknown): Promise<boolean> {
    const sent = performance.now();
    const result = await this.#register.update(this.key, (cur) => {
      const now = Date.now();
      const lease = cur as LeaseValue | null;
      const ours = lease?.holder === this.#holder;
      const free = !lease || now > lease.expiresAt + CLOCK_SKEW_MS;
      if (!ours && !free) return keep({ held: false, token: lease!.token });
      const token = ours && !free ? lease!.token : (lease?.token ?? 0) + 1;
      const next: LeaseValue = {
        holder: this.#holder,
        token,
        expiresAt: now + this.#ttlMs,
        ...(data === undefined ? {} : { data }),
      };
      return write(next, { held: true, token });
    });
    if (result.held) {
      this.#validUntil = sent + this.#ttlMs - SAFETY_MS;
      this.#token = result.token;
    } else {
      this.#validUntil = 0;
    }
    return result.held;
  }

  /** Gives the lease up (if still ours), so another gateway need not wait for the expiry. */
  async release(): Promise<void> {
    this.#validUntil = 0;
    await this.#register.update(this.key, (cur) => {
      const lease = cur as LeaseValue | null;
      if (lease?.holder !== this.#holder) return keep(undefined);
      return write({ ...lease, expiresAt: 0 }, undefined);
    });
  }
}

/** Reads a lease as any gateway sees it: the holder and what it published, or null if free. */
export async function readLease(register: Register, name: string): Promise<LeaseValue | null> {
  const v = (await register.read(`${LEASE_PREFIX}${name}`)) as LeaseValue | null;
  return v && Date.now() <= v.expiresAt + CLOCK_SKEW_MS ? v : null;
}
