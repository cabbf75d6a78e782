import { describe, expect, test } from "bun:test";
import { CommitQueue } from "../../../gateway/image/commit-queue.ts";

/** A commit function whose runs the test finishes one by one. */
function gatedCommits() {
  const runs: { finish: (error?: Error) => void }[] = [];
  const commit = () =>
    new Promise<void>((resolve, reject) => {
      runs.push({ finish: (error) => (error ? reject(error) : resolve()) });
    });
  return { runs, commit };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe("CommitQueue", () => {
  test("runs one commit at a time; callers while one is queued share it", async () => {
    const { runs, commit } = gatedCommits();
    const q = new CommitQueue(commit);
    const first = q.commit();
    await tick();
    expect(runs.length).toBe(1);
    expect(q.queued).toBe(false); // the first one runs
    const second = q.commit();
    const third = q.commit();
    expect(second).toBe(third);
    expect(q.queued).toBe(true);
    await tick();
    expect(runs.length).toBe(1); // not before the running one ends
    runs[0]!.finish();
    await first;
    await tick();
    expect(runs.length).toBe(2);
    expect(q.queued).toBe(false);
    runs[1]!.finish();
    await second;
    expect(runs.length).toBe(2);
  });

  test("a failed commit fails its callers only; the next one still runs", async () => {
    const { runs, commit } = gatedCommits();
    const q = new CommitQueue(commit);
    const first = q.commit().then(
      () => "ok",
      (error: Error) => error.message,
    );
    await tick();
    const second = q.commit();
    runs[0]!.finish(new Error("disk on fire"));
    expect(await first).toBe("disk on fire");
    await tick();
    expect(runs.length).toBe(2);
    runs[1]!.finish();
    await second;
  });

  test("serialized changes wait for the running and queued commits, and commits wait for them", async () => {
    const { runs, commit } = gatedCommits();
    const q = new CommitQueue(commit);
    const order: string[] = [];
    const c1 = q.commit().then(() => order.push("commit 1"));
    await tick(); // commit 1 runs
    const change = q.serialized(async () => {
      order.push("change");
      return 42;
    });
    const c2 = q.commit().then(() => order.push("commit 2"));
    await tick();
    expect(runs.length).toBe(1);
    runs[0]!.finish();
    expect(await change).toBe(42);
    await tick();
    runs[1]!.finish();
    await Promise.all([c1, c2]);
    expect(order).toEqual(["commit 1", "change", "commit 2"]);
  });
});
