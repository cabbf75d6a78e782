/**
 * The garbage collection panel (`GET /v1/gc`'s answer): the pass running on this gateway
 * as a step indicator, with a countdown to the sweep during the grace, and the last
 * finished pass of any gateway with what it deleted per store.
 */
import { h, keyed, replace, setAttr, text } from "./dom.js";
import { bytes, clock, count, duration, shortId, took, when } from "./format.js";

/** The steps of a pass, in order, as `GcReport.phase` names them (then "done" or "failed"). */
const STEPS = [
  ["mark", "Mark", "every chunk a version references"],
  ["condemn", "Condemn", "the stored chunks not marked"],
  ["barrier", "Barrier", "every head stamped"],
  ["grace", "Grace", "gateways on older versions move on"],
  ["sweep", "Sweep", "mark again, delete what is still condemned"],
];

const $ = (id) => document.getElementById(id);

/** The running pass last rendered, and its clock (for the countdown between events). */
let shown = null;
let nowOf = () => Date.now();
let ticker = null;

/**
 * Renders `{running, last}`; `now()` is the gateway's clock as this page estimates it
 * (the countdown's end is in the gateway's time).
 */
export function renderGc(gc, now = () => Date.now()) {
  nowOf = now;
  const summary = $("gc-summary");
  const running = $("gc-running");
  const last = $("gc-last");
  if (!gc) {
    text(summary, "Not known yet.");
    running.hidden = true;
    last.hidden = true;
    showRunning(null);
    return;
  }
  const l = gc.last;
  const lastWords = !l
    ? "No pass has finished in this cluster yet."
    : l.phase === "failed"
      ? `The last pass (gateway ${l.gateway}) failed at ${when(l.finishedAt)}.`
      : `The last pass (gateway ${l.gateway}) finished at ${when(l.finishedAt)} and deleted ${count(total(l, "deleted"))} chunk(s), ${bytes(total(l, "bytesDeleted"))}.`;
  text(
    summary,
    `${gc.running ? `A pass is running on this gateway (${phaseWord(gc.running.phase)}).` : "No pass is running on this gateway."} ${lastWords}`,
  );
  running.hidden = !gc.running;
  showRunning(gc.running);
  last.hidden = !l;
  if (l) showLast(l);
}

function total(report, field) {
  return report.stores.reduce((n, s) => n + s[field], 0);
}

function phaseWord(phase) {
  return STEPS.find(([p]) => p === phase)?.[1].toLowerCase() ?? phase;
}

/** When the grace ends (epoch ms, the gateway's clock), and whether that is exact or a lower bound. */
function sweepAt(r) {
  const start = Date.parse(r.startedAt);
  const m = r.stepMs ?? {};
  if (m.barrier !== undefined) {
    const barrierDone = start + (m.mark ?? 0) + (m.condemn ?? 0) + m.barrier;
    return { at: barrierDone + r.graceMs, barrierDone, exact: true };
  }
  return { at: start + r.graceMs, barrierDone: null, exact: false };
}

function showRunning(r) {
  shown = r;
  const inGrace = r?.phase === "grace";
  if (inGrace && ticker === null) ticker = setInterval(countdown, 1000);
  if (!inGrace && ticker !== null) {
    clearInterval(ticker);
    ticker = null;
  }
  if (!r) return;
  const card = $("gc-running");
  setAttr(card, "data-phase", r.phase);
  text($("gc-running-title"), `Pass ${shortId(r.token)} on gateway ${r.gateway}`);
  const badge = $("gc-running-badge");
  text(badge, phaseWord(r.phase));
  const index = STEPS.findIndex(([p]) => p === r.phase);
  const bar = $("gc-steps-bar");
  setAttr(bar, "max", String(STEPS.length));
  bar.value = Math.max(0, index);
  setAttr(bar, "aria-valuetext", `step ${index + 1} of ${STEPS.length}: ${phaseWord(r.phase)}`);
  keyed(
    $("gc-steps"),
    STEPS.map(([phase, name, what], i) => ({ phase, name, what, i, index, ms: r.stepMs?.[phase] })),
    (s) => s.phase,
    stepItem,
  );
  countdown();
  const rows = [
    ["Started", when(r.startedAt)],
    ["Grace", duration(r.graceMs / 1000)],
  ];
  if (index > 0) rows.push(["Referenced", `${count(r.referenced)} chunk(s) at the first mark`]);
  if (r.gcEpoch !== null) rows.push(["Barrier", `gcEpoch ${r.gcEpoch}`]);
  replace($("gc-running-facts"), ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  replace(
    $("gc-running-stores"),
    ...r.stores.map((s) =>
      h(
        "li",
        {},
        s.skipped
          ? `${s.store}: left alone, ${s.skipped}`
          : s.error
            ? `${s.store}: error: ${s.error}`
            : `${s.store}: ${count(s.condemned)} of ${count(s.stored)} stored chunk(s) condemned (not referenced)`,
      ),
    ),
  );
}

function stepItem() {
  const name = h("span", { class: "step-name" });
  const state = h("span", { class: "step-state" });
  const el = h("li", {}, name, " ", state);
  return {
    el,
    update(s) {
      const st = s.i < s.index ? "done" : s.i === s.index ? "current" : "todo";
      setAttr(el, "data-step", st);
      setAttr(el, "aria-current", st === "current" ? "step" : null);
      text(name, s.name);
      text(
        state,
        st === "done"
          ? `done${s.ms === undefined ? "" : ` in ${s.ms < 1000 ? "under 1 s" : duration(s.ms / 1000)}`}`
          : st === "current"
            ? `now: ${s.what}`
            : s.what,
      );
    },
  };
}

/** The grace's countdown line (every second while in grace, from the last report). */
function countdown() {
  const line = $("gc-countdown");
  const r = shown;
  if (r?.phase !== "grace") {
    line.hidden = true;
    return;
  }
  line.hidden = false;
  const s = sweepAt(r);
  const left = Math.max(0, (s.at - nowOf()) / 1000);
  const due = left > 0 ? `Sweep in ${duration(left)} (at ${clock(s.at)})` : "Sweep due now";
  text(
    line,
    s.exact
      ? `${due}: the ${duration(r.graceMs / 1000)} grace began when the barrier was set, at ${clock(s.barrierDone)}.`
      : `${due} at the earliest: the ${duration(r.graceMs / 1000)} grace began after the barrier.`,
  );
}

function showLast(r) {
  const card = $("gc-last");
  const deleted = total(r, "deleted");
  setAttr(card, "data-state", r.phase);
  setAttr(card, "data-deleted", String(deleted));
  text($("gc-last-title"), `Last pass ${shortId(r.token)}`);
  const badge = $("gc-last-badge");
  text(badge, r.phase === "done" ? "done" : r.phase);
  setAttr(badge, "data-state", r.phase);
  const rows = [
    ["Finished", `${when(r.finishedAt)}${r.finishedAt ? ` (took ${took(r.startedAt, r.finishedAt)})` : ""}`],
    ["Run by", `gateway ${r.gateway}`],
    ["Referenced", `${count(r.referenced)} chunk(s) at the first mark`],
    ["Grace", duration(r.graceMs / 1000)],
    ["Deleted", `${count(deleted)} chunk(s), ${bytes(total(r, "bytesDeleted"))}`],
  ];
  const kept = total(r, "kept");
  if (kept > 0) rows.push(["Kept", `${count(kept)} condemned chunk(s) written or referenced again in time`]);
  if (r.error) rows.push(["Error", h("span", { class: "lost" }, r.error)]);
  replace($("gc-last-facts"), ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  replace(
    $("gc-last-stores"),
    ...r.stores.map((s) =>
      h(
        "li",
        { "data-key": s.store, "data-deleted": String(s.deleted) },
        s.skipped
          ? `${s.store}: left alone, ${s.skipped}`
          : `${s.store}: ${count(s.deleted)} chunk(s) deleted (${bytes(s.bytesDeleted)}) of ${count(s.stored)} stored, ${count(s.condemned)} unreferenced${s.kept > 0 ? `, ${count(s.kept)} kept` : ""}`,
        s.error ? "; " : null,
        s.error ? h("span", { class: "lost" }, `error: ${s.error}`) : null,
      ),
    ),
  );
}
