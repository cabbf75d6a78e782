/**
 * Pins: versions a gateway is reading although no head may name them by the end (an S3
 * GET of a version that a new upload supersedes meanwhile, a backup of a snapshot deleted
 * meanwhile). Garbage collection marks from every gateway's live pins as well as from the
 * heads, so a long read is not cut short by a pass.
 *
 * A gateway's pins are one register value, `pins.<gateway>`, with an expiry that the
 * gateway renews while it holds any: a dead (or long-paused) gateway's pins lapse. A pin
 * is durable when `pin` resolves; a reader pins before it reads. (A pass whose second mark
 * ran between the reader's head read and its pin, with the version already dropped, can
 * still take chunks: the read then fails loudly, it never returns other bytes.)
 */
import type { Hash } from "../../chunkstore/chunk-store.ts";
import { CLOCK_SKEW_MS } from "../register/lease.ts";
import { type Register, write } from "../register/register.ts";

/** Register key prefix of pin sets. */
export const PINS_PREFIX = "pins.";
/** A pin set lapses this long after its last renewal. */
const PIN_TTL_MS = 60_000;

/** A pinned version: enough to walk its tree. */
export interface PinnedVersion {
  readonly root: Hash;
  readonly size: number;
  readonly chunkSize: number;
  /** Why (for status): "s3 GET web01", "backup web01@daily". */
  readonly why: string;
}

/** A gateway's pin set as stored. */
interface PinSetValue {
  readonly expiresAt: number;
  readonly versions: readonly PinnedVersion[];
}

/** This gateway's pins. */
export class Pins {
  readonly #register: Register;
  readonly #key: string;
  readonly #held = new Map<number, PinnedVersion>();
  #next = 0;
  #publishing: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(register: Register, gatewayId: string) {
    this.#register = register;
    this.#key = `${PINS_PREFIX}${gatewayId}`;
  }

  /** Pins `version`; resolves, durable, with the function that releases it. */
  async pin(version: PinnedVersion): Promise<() => Promise<void>> {
    const id = this.#next++;
    this.#held.set(id, version);
    this.#renewing();
    await this.#publish();
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      this.#held.delete(id);
      if (this.#held.size === 0) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
      await this.#publish().catch(() => {}); // it lapses by itself otherwise
    };
  }

  /** Versions pinned here now. */
  get held(): PinnedVersion[] {
    return [...this.#held.values()];
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #renewing(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => {
      this.#publish().catch(() => {});
    }, PIN_TTL_MS / 4);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Writes the whole set (serialized: the last write carries the latest set). */
  #publish(): Promise<void> {
    const run = this.#publishing
      .catch(() => {})
      .then(() =>
        this.#register.update(this.#key, () =>
          write({ expiresAt: Date.now() + PIN_TTL_MS, versions: this.held } satisfies PinSetValue, undefined),
        ),
      );
    this.#publishing = run;
    return run;
  }
}

/** Every gateway's unexpired pins. */
export async function livePins(register: Register): Promise<PinnedVersion[]> {
  const out: PinnedVersion[] = [];
  const now = Date.now();
  for (const value of (await register.scan(PINS_PREFIX)).values()) {
    const set = value as PinSetValue | null;
    if (!set || !Array.isArray(set.versions) || now > set.expiresAt + CLOCK_SKEW_MS) continue;
    out.push(...set.versions);
  }
  return out;
}
