/**
 * The dashboard's state beside the cluster's: garbage collection as `GET /v1/gc` answers
 * it and the gateway's backup jobs, read from a real in-process gateway (memory stores),
 * a real collector and real backup jobs into a memory repository. Shown through the real
 * event stream: the snapshot on connect carries both (so a reconnect needs no history),
 * and a running pass, a finished pass and a backup job each arrive as changes (a running
 * pass, held between two steps, as a change of the gc section alone).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { Hono } from "hono";
import { backupPins } from "../../../gateway/backup/backup-cluster.ts";
import { BackupClusterAdapter } from "../../../gateway/backup/backup-cluster-adapter.ts";
import { type BackupJobStatus, BackupJobs } from "../../../gateway/backup/backup-jobs.ts";
import { MemoryObjectStore } from "../../../gateway/backup/memory-object-store.ts";
import type { GcReport } from "../../../gateway/gc/collector.ts";
import {
  DASHBOARD_FINISHED_JOBS,
  type DashboardBackupJob,
  dashboardBackupJobs,
  readDashboardState,
} from "../../../gateway/http/dashboard-state.ts";
import { EventStreams, eventsHandler } from "../../../gateway/http/events.ts";
import { IoTimeline } from "../../../gateway/http/io-timeline.ts";
import { serveHttp } from "../../../runtime/serve-http.ts";
import { type EventReader, openEvents, type TestEvent } from "../../support/event-stream.ts";
import { write } from "../backup/_backup-fixture.ts";
import { testCollector } from "../gc/_gc-fixture.ts";
import { imageService, pattern } from "../image/_image-fixture.ts";

const MiB = 1024 * 1024;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A gateway over memory stores with an image overwritten once (so a pass has garbage), its collector and jobs. */
async function setup(hooks?: { afterCondemn?: () => Promise<void> }) {
  const { service, core } = await imageService();
  cleanups.push(() => service.close());
  await service.create("vm-1", 4 * MiB);
  await write(service, "vm-1", 0, pattern(2 * MiB, 1));
  await write(service, "vm-1", 0, pattern(2 * MiB, 2)); // the first 2 MiB are garbage now
  const gc = testCollector(core, hooks);
  const repo = new MemoryObjectStore("memory://dash");
  const backups = new BackupJobs({
    cluster: new BackupClusterAdapter(service),
    pins: backupPins(service.ctx),
    log: () => {},
    openStore: () => repo,
  });
  return { service, core, gc, backups };
}

async function waitJob(backups: BackupJobs, id: string): Promise<BackupJobStatus> {
  for (let i = 0; i < 200; i++) {
    const s = backups.status(id)!;
    if (s.state !== "running") return s;
    await Bun.sleep(25);
  }
  throw new Error(`job ${id} did not finish`);
}

const deleted = (r: GcReport) => r.stores.reduce((n, s) => n + s.deleted, 0);

describe("the dashboard's gc and backups sections", () => {
  test("read as GET /v1/gc and GET /v1/backups/jobs answer, jobs without their results", async () => {
    const { core, gc, backups } = await setup();
    const before = await readDashboardState({ status: core.status, gc, backups });
    expect(before.gc).toEqual({ running: null, last: null });
    expect(before.backups).toEqual([]);

    const job = await backups.start({ kind: "create", target: "s3://dash-test/x", image: "vm-1" });
    const done = await waitJob(backups, job.id);
    expect(done.state).toBe("done");
    const report = await gc.run({ graceMs: 0 });
    expect(report.phase).toBe("done");
    expect(deleted(report)).toBeGreaterThan(0);

    const after = await readDashboardState({ status: core.status, gc, backups });
    expect(after.gc.running).toBeNull(); // finished: the API's `running` is null
    expect(after.gc.last).toEqual(report); // from the register, as every gateway reads it
    expect(after.backups).toHaveLength(1);
    const shown = after.backups[0]!;
    expect(shown).not.toHaveProperty("result");
    expect(shown).toMatchObject({ id: job.id, kind: "create", state: "done", image: "vm-1" });
    expect(shown.bytesTotal).toBeGreaterThan(0);
    expect(shown.bytesDone).toBe(shown.bytesTotal);
    expect(shown.backup).toBe((done.result as { id: string }).id);
    // The other sections are still there.
    expect(after.images.map((i) => i.name)).toEqual(["vm-1"]);
    expect(Object.keys(after.safeToRemove).sort()).toEqual(["a", "b", "c"]);
  }, 30_000);

  test("every running job and the last finished ones, newest first", () => {
    const job = (i: number, state: BackupJobStatus["state"]): BackupJobStatus => ({
      id: `j${i}`,
      kind: "create",
      state,
      phase: state === "running" ? "uploading" : state,
      target: "s3://b/p",
      image: "vm",
      backup: null,
      gateway: "gw",
      startedAt: "2026-01-01T00:00:00.000Z",
      finishedAt: state === "running" ? null : "2026-01-01T00:01:00.000Z",
      bytesDone: 1,
      bytesTotal: 2,
      rateBytesPerSecond: 1,
      etaSeconds: state === "running" ? 1 : 0,
      result: null,
      error: state === "failed" ? "boom" : null,
    });
    // A running job older than many finished ones is shown still.
    const list = [
      job(30, "running"),
      ...Array.from({ length: 15 }, (_, i) => job(29 - i, i % 3 === 0 ? "failed" : "done")),
      job(1, "running"),
    ];
    const shown: DashboardBackupJob[] = dashboardBackupJobs(list);
    expect(shown.map((j) => j.id)).toEqual([
      "j30",
      ...Array.from({ length: DASHBOARD_FINISHED_JOBS }, (_, i) => `j${29 - i}`),
      "j1",
    ]);
    expect(shown.every((j) => !("result" in j))).toBe(true);
  });

  test("the snapshot carries both, and a running pass, a finished pass and a job arrive as changes", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let condemned!: () => void;
    const atBarrier = new Promise<void>((r) => {
      condemned = r;
    });
    const { core, gc, backups } = await setup({
      afterCondemn: async () => {
        condemned();
        await gate; // the pass waits here, in phase "barrier", until the test has seen it
      },
    });
    const timeline = new IoTimeline({
      latency: core.latency,
      healedBytes: () => 0,
      healing: () => [],
      wentDown: core.health.wentDown,
      returned: core.health.returned,
    });
    const streams = new EventStreams(
      {
        read: async () => ({ ...(await readDashboardState({ status: core.status, gc, backups })) }),
        timeline,
        gateway: { id: core.id, startedAt: new Date().toISOString() },
      },
      { intervalMs: 50 },
    );
    const app = new Hono();
    app.get("/v1/events", eventsHandler(streams));
    const server = await serveHttp(app.fetch, { hostname: "127.0.0.1", port: 0 });
    const readers: EventReader[] = [];
    cleanups.push(async () => {
      release();
      for (const r of readers) await r.cancel();
      streams.close();
      await server.close();
    });
    const open = async () => {
      const r = await openEvents(`${server.url}/v1/events`);
      readers.push(r);
      return r;
    };
    type S = { gc?: { running: GcReport | null; last: GcReport | null }; backups?: DashboardBackupJob[] };
    const sections = (e: TestEvent) => e.data.sections as S;

    const r = await open();
    const snap = await r.next();
    expect(snap.type).toBe("snapshot");
    expect(sections(snap).gc).toEqual({ running: null, last: null });
    expect(sections(snap).backups).toEqual([]);

    // A pass, held after its condemn step: the running pass arrives, alone in its change.
    const { done } = await gc.start({ graceMs: 0 });
    await atBarrier;
    const running = (
      await r.until((e) => e.type === "change" && sections(e).gc?.running?.phase === "barrier")
    ).hit;
    expect(Object.keys(sections(running))).toEqual(["gc"]);
    const pass = sections(running).gc!.running!;
    expect(pass.gateway).toBe(core.id);
    expect(pass.stores.reduce((n, s) => n + s.condemned, 0)).toBeGreaterThan(0);
    expect(sections(running).gc!.last).toBeNull();
    // A page that connects now gets the running pass in its snapshot.
    const late = await open();
    expect(sections(await late.next()).gc?.running?.token).toBe(pass.token);
    await late.cancel();

    release();
    const report = await done;
    const finished = (await r.until((e) => e.type === "change" && sections(e).gc?.last?.token === pass.token))
      .hit;
    expect(sections(finished).gc).toEqual({ running: null, last: report });
    expect(deleted(report)).toBeGreaterThan(0);

    // A backup job: it arrives as a change of the backups section, running or already done.
    const job = await backups.start({ kind: "create", target: "s3://dash-test/x", image: "vm-1" });
    const seen = (
      await r.until(
        (e) =>
          e.type === "change" &&
          (sections(e).backups?.some((j) => j.id === job.id && j.state === "done") ?? false),
      )
    ).seen;
    const jobChanges = seen.filter((e) => e.type === "change" && sections(e).backups);
    expect(jobChanges.length).toBeGreaterThan(0);
    const last = sections(jobChanges.at(-1)!).backups![0]!;
    expect(last).toMatchObject({ id: job.id, kind: "create", state: "done", image: "vm-1", error: null });
    expect(last.bytesDone).toBe(last.bytesTotal);

    // A reconnect: one snapshot holds both, nothing else needed.
    const again = await open();
    const snap2 = await again.next();
    expect(snap2.type).toBe("snapshot");
    expect(sections(snap2).gc).toEqual({ running: null, last: report });
    expect(sections(snap2).backups!.map((j) => [j.id, j.state])).toEqual([[job.id, "done"]]);
  }, 30_000);
});
