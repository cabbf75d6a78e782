/**
 * `StoreHealth` and `withDeadline` (replication/store-health.ts): stores start down, a
 * good probe brings one up, a failed or timed-out request or probe takes it down, a store
 * answering with another identity stays down, and the listeners fire once per transition.
 * In-memory stores whose probe can be made to fail or hang stand in for store servers.
 */
import { afterEach, expect, test } from "bun:test";
import type { StoreProbe } from "../../../chunkstore/chunk-store.ts";
import { StoreFullError, StoreIdentityError, StoreUnavailableError } from "../../../chunkstore/errors.ts";
import { hashChunk } from "../../../chunkstore/hash.ts";
import { newIdentity } from "../../../chunkstore/identity.ts";
import { MemoryStore } from "../../../chunkstore/memory-store.ts";
import { StoreHealth, withDeadline } from "../../../gateway/replication/store-health.ts";
import type { StoreMember } from "../../../gateway/replication/store-member.ts";

/** A memory store whose probe answers, fails or never answers, as the test sets `mode`. */
class FakeStore extends MemoryStore {
  mode: "ok" | "fail" | "hang" = "ok";
  probes = 0;
  statsCalls = 0;
  /** What stats() says of the high-water mark (undefined: a store that cannot tell). */
  full: boolean | undefined = undefined;
  /** Added to the used bytes stats() reports (a store filling up). */
  extraBytes = 0;
  /** Resolves the probes left hanging, with a good answer (a store that answers too late). */
  readonly #late: (() => void)[] = [];

  override async probe(): Promise<StoreProbe> {
    this.probes++;
    if (this.mode === "fail") throw new StoreUnavailableError(this.name, "connection refused");
    if (this.mode === "hang") {
      await new Promise<void>((resolve) => this.#late.push(resolve));
    }
    return super.probe();
  }

  override async stats() {
    this.statsCalls++;
    const s = await super.stats();
    return {
      ...s,
      bytes: s.bytes + this.extraBytes,
      ...(this.full === undefined ? {} : { full: this.full }),
    };
  }

  answerLate(): void {
    for (const r of this.#late.splice(0)) r();
  }
}

const FAST = { probeIntervalMs: 20, probeTimeoutMs: 100 };

function member(id: string, store: FakeStore, options: Partial<StoreMember> = {}): StoreMember {
  return { id, url: `memory:${id}`, store, chunks: true, refs: true, ...options };
}

/** Records every event of `health`. */
function events(health: StoreHealth) {
  const log: string[] = [];
  health.returned.add((id) => log.push(`returned ${id}`));
  health.wentDown.add((id, reason) => log.push(`down ${id}: ${reason}`));
  health.identitySeen.add((id, identity) => log.push(`identity ${id} ${identity}`));
  return log;
}

const started: StoreHealth[] = [];
afterEach(() => {
  for (const h of started.splice(0)) h.stop();
});

/** A tracker over fresh fake stores `ids`, expecting no particular identity. */
function tracker(ids: string[], expected: (id: string) => string | null = () => null) {
  const stores = Object.fromEntries(ids.map((id) => [id, new FakeStore(`memory:${id}`)]));
  const health = new StoreHealth(
    ids.map((id) => member(id, stores[id]!)),
    expected,
    FAST,
  );
  started.push(health);
  return { stores, health, log: events(health) };
}

test("withDeadline resolves with the promise's value when it settles in time", async () => {
  expect(await withDeadline(Promise.resolve(42), 50, "answer")).toBe(42);
  expect(
    await withDeadline(
      Bun.sleep(5).then(() => "late but in time"),
      200,
      "answer",
    ),
  ).toBe("late but in time");
});

test("withDeadline passes the promise's own rejection through", async () => {
  await expect(withDeadline(Promise.reject(new Error("refused")), 200, "probe")).rejects.toThrow("refused");
});

test("withDeadline rejects after `ms` naming what did not answer", async () => {
  const t0 = performance.now();
  const never = new Promise<never>(() => {});
  await expect(withDeadline(never, 40, "probe of a")).rejects.toThrow("probe of a: no answer within 40 ms");
  const elapsed = performance.now() - t0;
  expect(elapsed).toBeGreaterThanOrEqual(35);
  expect(elapsed).toBeLessThan(1000);
});

test("every store is down until its first probe, with a reason", () => {
  const { health, stores } = tracker(["a", "b"]);
  expect(health.isDown("a")).toBe(true);
  expect(health.isDown("b")).toBe(true);
  const s = health.status("a")!;
  expect(s).toMatchObject({ id: "a", url: "memory:a", up: false, reason: "not probed yet", identity: null });
  expect(s.failures).toBe(0);
  expect(s.lastProbe).toBeNull();
  expect(stores.a!.probes).toBe(0);
});

test("all() lists every store in configuration order; unknown ids are down and have no status", () => {
  const { health } = tracker(["c", "a", "b"]);
  expect(health.all().map((s) => s.id)).toEqual(["c", "a", "b"]);
  expect(health.status("zz")).toBeUndefined();
  expect(health.isDown("zz")).toBe(true);
  health.reportFailure("zz", new Error("ignored")); // no throw, no entry made
  expect(health.all()).toHaveLength(3);
});

test("a good probe brings a store up and fires `returned` once; later good probes fire nothing", async () => {
  const { health, stores, log } = tracker(["a", "b"]);
  await health.probeAll();
  expect(health.isDown("a")).toBe(false);
  expect(health.isDown("b")).toBe(false);
  expect(log.sort()).toEqual(["returned a", "returned b"]);
  const s = health.status("a")!;
  expect(s.up).toBe(true);
  expect(s.reason).toBeNull();
  expect(s.identity).toBe((await stores.a!.probe()).identity);
  expect(s.lastProbe).not.toBeNull();
  await health.probeAll();
  await health.probeAll();
  expect(log).toHaveLength(2);
  expect(stores.a!.probes).toBe(4); // three rounds plus the one this test made
});

test("a reported failure takes a store down at once; `wentDown` fires once, failures count every one", async () => {
  const { health, log } = tracker(["a", "b"]);
  await health.probeAll();
  log.length = 0;
  const sinceUp = health.status("a")!.since;
  await Bun.sleep(2);
  health.reportFailure("a", new Error("read timed out"));
  expect(health.isDown("a")).toBe(true);
  expect(health.isDown("b")).toBe(false);
  expect(log).toEqual(["down a: read timed out"]);
  const s = health.status("a")!;
  expect(s.reason).toBe("read timed out");
  expect(s.failures).toBe(1);
  expect(s.since).not.toBe(sinceUp);
  // Further failures while down: counted and the reason kept current, but no second event.
  health.reportFailure("a", "socket hang up");
  expect(log).toHaveLength(1);
  expect(health.status("a")!.failures).toBe(2);
  expect(health.status("a")!.reason).toBe("socket hang up");
  expect(health.status("a")!.since).toBe(s.since);
});

test("after a failure the next good probe brings the store back, firing `returned` once", async () => {
  const { health, log } = tracker(["a"]);
  await health.probeAll();
  health.reportFailure("a", new Error("boom"));
  log.length = 0;
  await health.probeAll();
  expect(health.isDown("a")).toBe(false);
  expect(health.status("a")!.reason).toBeNull();
  expect(log).toEqual(["returned a"]);
  await health.probeAll();
  expect(log).toEqual(["returned a"]);
});

test("a probe answer sent before a request failed does not bring the store back; the next probe does", async () => {
  const { stores, health } = tracker(["a"]);
  await health.probeAll();
  expect(health.isDown("a")).toBe(false);
  stores.a!.mode = "hang";
  const inFlight = health.probeAll(); // sent while the store looked fine
  await Bun.sleep(10);
  health.reportFailure("a", new Error("put failed"));
  stores.a!.answerLate(); // the old probe's good answer arrives after the failure
  await inFlight;
  expect(health.isDown("a")).toBe(true);
  stores.a!.mode = "ok";
  await health.probeAll();
  expect(health.isDown("a")).toBe(false);
});

test("a failing probe takes the store down and counts a failure; it returns when probes succeed", async () => {
  const { health, stores, log } = tracker(["a", "b"]);
  await health.probeAll();
  log.length = 0;
  stores.a!.mode = "fail";
  await health.probeAll();
  expect(health.isDown("a")).toBe(true);
  expect(health.isDown("b")).toBe(false);
  expect(health.status("a")!.reason).toContain("connection refused");
  expect(health.status("a")!.failures).toBe(1);
  await health.probeAll();
  expect(health.status("a")!.failures).toBe(2);
  expect(log.filter((l) => l.startsWith("down a"))).toHaveLength(1);
  expect(log.some((l) => l.startsWith("returned"))).toBe(false);
  stores.a!.mode = "ok";
  await health.probeAll();
  expect(health.isDown("a")).toBe(false);
  expect(log.filter((l) => l === "returned a")).toHaveLength(1);
});

test("a store never reached that fails its first probe stays down without a `wentDown` event", async () => {
  const { health, stores, log } = tracker(["a"]);
  stores.a!.mode = "fail";
  await health.probeAll();
  expect(health.isDown("a")).toBe(true);
  expect(health.status("a")!.failures).toBe(1);
  expect(log).toEqual([]); // it was never up: nothing went down
});

test("a hung probe counts as a failure after the probe timeout; a late answer does not bring it back", async () => {
  const { health, stores, log } = tracker(["a", "b"]);
  await health.probeAll();
  log.length = 0;
  stores.a!.mode = "hang";
  const t0 = performance.now();
  await health.probeAll();
  const elapsed = performance.now() - t0;
  expect(elapsed).toBeGreaterThanOrEqual(FAST.probeTimeoutMs - 5);
  expect(elapsed).toBeLessThan(1000);
  expect(health.isDown("a")).toBe(true);
  expect(health.isDown("b")).toBe(false);
  expect(health.status("a")!.reason).toBe(`probe of a: no answer within ${FAST.probeTimeoutMs} ms`);
  expect(log).toEqual([`down a: probe of a: no answer within ${FAST.probeTimeoutMs} ms`]);
  stores.a!.answerLate();
  await Bun.sleep(5);
  expect(health.isDown("a")).toBe(true);
  expect(log).toHaveLength(1);
  stores.a!.mode = "ok";
  await health.probeAll();
  expect(health.isDown("a")).toBe(false);
  expect(log).toEqual([`down a: probe of a: no answer within ${FAST.probeTimeoutMs} ms`, "returned a"]);
});

test("a store answering with another identity than expected stays down; `identitySeen` fires once", async () => {
  const recorded: Record<string, string | null> = { a: null };
  const { health, stores, log } = tracker(["a"], (id) => recorded[id] ?? null);
  const original = (await stores.a!.probe()).identity;
  recorded.a = original;
  await health.probeAll();
  expect(health.isDown("a")).toBe(false);
  log.length = 0;
  stores.a!.wipe(); // a replaced disk behind the same address
  const fresh = (await stores.a!.probe()).identity;
  expect(fresh).not.toBe(original);
  await health.probeAll();
  expect(health.isDown("a")).toBe(true);
  expect(health.status("a")!.identity).toBe(fresh);
  expect(health.status("a")!.reason).toContain("answers as another store");
  expect(log).toEqual([`identity a ${fresh}`, `down a: ${health.status("a")!.reason}`]);
  // It answers, but as the wrong store: still down, and the same identity is not reported again.
  await health.probeAll();
  expect(health.isDown("a")).toBe(true);
  expect(log).toHaveLength(2);
  // Once the cluster record names the new identity, the next probe brings it back.
  recorded.a = fresh;
  await health.probeAll();
  expect(health.isDown("a")).toBe(false);
  expect(log.at(-1)).toBe("returned a");
});

test("with no expected identity yet, any identity is accepted and none is reported", async () => {
  const { health, stores, log } = tracker(["a"]);
  await health.probeAll();
  stores.a!.wipe();
  await health.probeAll();
  expect(health.isDown("a")).toBe(false);
  expect(health.status("a")!.identity).toBe((await stores.a!.probe()).identity);
  expect(log).toEqual(["returned a"]);
});

test("a StoreIdentityError reported by a request records the identity and fires `identitySeen`", async () => {
  const expected = newIdentity();
  const actual = newIdentity();
  const { health, log } = tracker(["a"], () => expected);
  health.reportFailure("a", new StoreIdentityError("memory:a", expected, actual));
  expect(health.isDown("a")).toBe(true);
  expect(health.status("a")!.identity).toBe(actual);
  expect(log).toEqual([`identity a ${actual}`]); // never up: no `wentDown`
  health.reportFailure("a", new StoreIdentityError("memory:a", expected, actual));
  expect(log).toHaveLength(1);
  // An identity error without an answer (no identity) records nothing.
  health.reportFailure("a", new StoreIdentityError("memory:a", expected, null));
  expect(health.status("a")!.identity).toBe(actual);
  expect(health.status("a")!.failures).toBe(3);
});

test("a good probe refreshes a data store's counters; witnesses and S3 stores are not asked", async () => {
  const data = new FakeStore("memory:a");
  const witness = new FakeStore("memory:w");
  const s3 = new FakeStore("memory:s");
  const bytes = new TextEncoder().encode("hello");
  await data.put(hashChunk(bytes), bytes);
  const health = new StoreHealth(
    [member("a", data), member("w", witness, { chunks: false }), member("s", s3, { url: "s3://bucket/x" })],
    () => null,
    FAST,
  );
  started.push(health);
  await health.probeAll();
  await Bun.sleep(5); // counters arrive after the probe answered
  expect(health.status("a")).toMatchObject({ chunks: 1, bytes: 5, freeBytes: null });
  expect(data.statsCalls).toBe(1);
  expect(witness.statsCalls).toBe(0);
  expect(s3.statsCalls).toBe(0);
  expect(health.status("w")!.chunks).toBeNull();
  expect(health.status("s")!.chunks).toBeNull();
  // Not on every probe: at most once per stats interval (seconds).
  await health.probeAll();
  expect(data.statsCalls).toBe(1);
});

test("start() probes at once and then every interval; stop() ends the loop", async () => {
  const { health, stores, log } = tracker(["a"]);
  stores.a!.mode = "fail";
  health.start();
  await Bun.sleep(5 * FAST.probeIntervalMs);
  const probes = stores.a!.probes;
  expect(probes).toBeGreaterThanOrEqual(2);
  expect(health.isDown("a")).toBe(true);
  // The store comes back: the loop notices within an interval or two, without a call from the test.
  stores.a!.mode = "ok";
  await waitFor(() => !health.isDown("a"), 1000);
  expect(log).toEqual(["returned a"]);
  health.stop();
  await Bun.sleep(2 * FAST.probeIntervalMs); // a round running at stop() may still finish
  const after = stores.a!.probes;
  await Bun.sleep(4 * FAST.probeIntervalMs);
  expect(stores.a!.probes).toBe(after);
});

test("a refusal for space makes a store full, not down; its stats, checked every probe while full, clear it", async () => {
  const { health, stores, log } = tracker(["a"]);
  const changes: string[] = [];
  health.fullChanged.add((id, full) => changes.push(`${id} ${full ? "full" : "has room"}`));
  await health.probeAll();
  expect(health.isDown("a")).toBe(false);
  health.reportFailure("a", new StoreFullError("memory:a", "1000 bytes free, below the reserve"));
  expect(health.isFull("a")).toBe(true);
  expect(health.isDown("a")).toBe(false); // reads go on
  expect(health.status("a")!.failures).toBe(0);
  expect(health.status("a")!.fullReason).toContain("below the reserve");
  expect(changes).toEqual(["a full"]);
  // A store that cannot tell (no `full` in its stats) stays full until it says otherwise.
  await health.probeAll();
  await Bun.sleep(5);
  expect(health.isFull("a")).toBe(true);
  stores.a!.full = true;
  await health.probeAll();
  await Bun.sleep(5);
  expect(health.isFull("a")).toBe(true);
  const calls = stores.a!.statsCalls;
  stores.a!.full = false;
  await health.probeAll(); // while full, stats are read every probe (not every 5 s)
  await Bun.sleep(5);
  expect(stores.a!.statsCalls).toBe(calls + 1);
  expect(health.isFull("a")).toBe(false);
  expect(health.status("a")!.fullReason).toBeNull();
  expect(changes).toEqual(["a full", "a has room"]);
  expect(log).toEqual(["returned a"]); // never down
});

test("the fill rate follows the used bytes between stats samples", async () => {
  const { health, stores } = tracker(["a"]);
  await health.probeAll();
  await Bun.sleep(5);
  expect(health.status("a")!.fillBytesPerSecond).toBeNull(); // one sample: no rate yet
  stores.a!.full = true; // read stats every probe from here
  health.reportFailure("a", new StoreFullError("memory:a", "full"));
  const t0 = performance.now();
  await Bun.sleep(100);
  stores.a!.extraBytes = 10 * 1024 * 1024;
  await health.probeAll();
  await Bun.sleep(5);
  const rate = health.status("a")!.fillBytesPerSecond!;
  const seconds = (performance.now() - t0) / 1000;
  // 10 MiB over about a tenth of a second, from the first sample's time.
  expect(rate).toBeGreaterThan((10 * 1024 * 1024) / (seconds + 0.5));
  expect(rate).toBeLessThan((10 * 1024 * 1024) / 0.09);
});

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const until = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > until) throw new Error(`condition not met within ${ms} ms`);
    await Bun.sleep(5);
  }
}
