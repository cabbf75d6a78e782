/**
 * The dashboard page: reads the gateway's live stream (`/v1/events`), keeps the state it
 * sends (a snapshot, then the sections that change), renders the panels, and runs the
 * actions (maintenance, heal limits, a snapshot) through the API after a confirmation.
 * The page itself holds no data; without a token it sends none, and when the API
 * answers 401 it asks for one (kept in this tab's sessionStorage).
 */
import { ApiError, AuthRequiredError, apiJson, getToken, setToken } from "./api.js";
import { renderBackups } from "./backups-panel.js";
import { IoCharts, WINDOW_MS } from "./chart-panel.js";
import { ask } from "./dialogs.js";
import { h, text } from "./dom.js";
import { EventClient } from "./event-client.js";
import { clock } from "./format.js";
import { renderGc } from "./gc-panel.js";
import { renderHeals } from "./heal-panel.js";
import { renderImages } from "./images-panel.js";
import { LimitsForm } from "./limits-panel.js";
import { renderSafety } from "./safety-panel.js";
import { renderStores } from "./stores-panel.js";

/** Image and snapshot names the gateway accepts (gateway/image/head.ts IMAGE_NAME_PATTERN). */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const $ = (id) => document.getElementById(id);

const state = {
  gateway: null,
  sections: { stores: null, heal: null, images: null, safeToRemove: null, gc: null, backups: null },
  problem: null,
  samples: [],
  marks: [],
  /** When the last event arrived (what the panels are as of, once the stream is down). */
  dataAt: null,
  /** The gateway's clock minus this browser's, from the last snapshot or change (for countdowns). */
  clockOffsetMs: 0,
  live: false,
};

const charts = new IoCharts();
const limits = new LimitsForm(applyLimits);

function render() {
  const s = state.sections;
  text($("gateway-id"), state.gateway ? state.gateway.id : "(not connected yet)");
  renderStores(s.stores);
  renderHeals(s.heal);
  renderSafety(s.safeToRemove, s.stores, maintenance);
  renderImages(s.images, snapshot);
  renderBackups(s.backups);
  renderGc(s.gc, gatewayNow);
  limits.show(s.heal?.limits ?? null);
  const down = s.stores?.stores.filter((x) => x.state === "down" || x.state === "replaced").length ?? 0;
  document.title = down > 0 ? `blockmend: ${down} store(s) down` : "blockmend dashboard";
  const problem = $("problem-banner");
  problem.hidden = !state.problem;
  if (state.problem)
    text(
      problem,
      `Since ${clock(state.problem.since)} the gateway cannot read the cluster state: ${state.problem.message}. The panels show what it read last.`,
    );
}

/** Now, by the gateway's clock as far as this page can tell (its events' `at`). */
function gatewayNow() {
  return Date.now() + state.clockOffsetMs;
}

function trim(list) {
  const since = Date.now() - WINDOW_MS;
  return list.filter((x) => x.t >= since);
}

function onEvent({ type, data }) {
  state.dataAt = Date.now();
  if (type === "snapshot" || type === "change") {
    const at = Date.parse(data.at);
    if (Number.isFinite(at)) state.clockOffsetMs = at - state.dataAt;
  }
  if (type === "snapshot") {
    state.gateway = data.gateway;
    if (data.sections) Object.assign(state.sections, data.sections);
    state.problem = data.problem;
    // Keep what this page saw before the first sample the gateway has (a restarted
    // gateway starts with none), then the gateway's.
    const first = data.samples[0]?.t ?? Number.POSITIVE_INFINITY;
    state.samples = trim([...state.samples.filter((x) => x.t < first), ...data.samples]);
    const keys = new Set(data.marks.map((m) => `${m.t}|${m.kind}|${m.store}`));
    state.marks = trim([
      ...state.marks.filter((m) => !keys.has(`${m.t}|${m.kind}|${m.store}`) && m.t < first),
      ...data.marks,
    ]);
    charts.set(state.samples, state.marks);
    render();
  } else if (type === "change") {
    Object.assign(state.sections, data.sections);
    state.problem = data.problem;
    render();
  } else if (type === "sample") {
    state.samples = trim([...state.samples, data]);
    state.marks = trim(state.marks);
    charts.set(state.samples, state.marks);
  } else if (type === "mark") {
    state.marks = trim([...state.marks, data]);
    charts.set(state.samples, state.marks);
  }
}

function onState(kind, detail) {
  const conn = $("connection");
  conn.dataset.state = kind;
  state.live = kind === "live";
  const words = {
    connecting: "Connecting…",
    live: "Live",
    retrying: `Reconnecting in ${Math.round((detail.inMs ?? 0) / 1000)} s`,
    auth: "Token needed",
    stopped: "Stopped",
  };
  text(conn, words[kind] ?? kind);
  const stale = $("stale-banner");
  const hadData = state.dataAt !== null;
  $("main").classList.toggle("stale", !state.live && hadData);
  stale.hidden = state.live || !hadData;
  if (!state.live && hadData) {
    const why =
      kind === "auth"
        ? "the gateway wants an API token"
        : kind === "retrying"
          ? `the live stream is down (${detail.reason}); reconnecting in ${Math.round(detail.inMs / 1000)} s`
          : "reconnecting";
    text(stale, `Stale: these panels show the state as of ${clock(state.dataAt)}; ${why}.`);
  }
  if (kind === "auth") void askToken(detail.message);
}

let asking = false;
async function askToken(message) {
  if (asking) return;
  asking = true;
  try {
    const token = await ask({
      title: "API token",
      body: [
        h("p", {}, message ? `The gateway answered: ${message}` : "Paste the gateway's API token."),
        h(
          "p",
          {},
          "It is kept in this browser tab only (sessionStorage) and sent as an Authorization header; leave it empty to forget the stored one.",
        ),
      ],
      confirmLabel: "Use this token",
      input: { label: "Bearer token", type: "password", value: "" },
    });
    if (token !== null) {
      setToken(token);
      updateTokenButton();
      client.restart();
    }
  } finally {
    asking = false;
  }
}

function updateTokenButton() {
  text($("token-button"), getToken() ? "API token (set)…" : "API token…");
}

function report(message, kind = "ok") {
  const el = $("action-status");
  el.hidden = false;
  el.dataset.kind = kind;
  text(el, message);
}

/** Runs an API call of an action; asks for a token on 401, reports errors in words. */
async function act(what, call) {
  try {
    return await call();
  } catch (err) {
    if (err instanceof AuthRequiredError) {
      report(`${what}: the gateway wants an API token (${err.message}).`, "error");
      void askToken(err.message);
    } else if (err instanceof ApiError) report(`${what} failed: ${err.message}`, "error");
    else report(`${what} failed: ${err instanceof Error ? err.message : String(err)}`, "error");
    return null;
  }
}

async function maintenance(id, on) {
  const ok = await ask({
    title: on ? `Start maintenance of store ${id}?` : `End maintenance of store ${id}?`,
    body: on
      ? [
          h(
            "p",
            {},
            `Store ${id} leaves: new writes stop counting its copies toward the minimum, so they put them elsewhere, or fail rather than depend on it. Every image head is stamped.`,
          ),
          h(
            "p",
            {},
            "Once safe-to-remove says yes, it stays yes until maintenance ends (unless another store fails).",
          ),
        ]
      : [
          h(
            "p",
            {},
            `Store ${id} counts for new writes again. If it was stopped meanwhile, start it first; it heals what it missed.`,
          ),
        ],
    typed: id,
    confirmLabel: on ? `Start maintenance of ${id}` : `End maintenance of ${id}`,
  });
  if (!ok) return;
  const res = await act(`Maintenance of store ${id}`, () =>
    apiJson("PUT", `/v1/stores/${encodeURIComponent(id)}/maintenance`, { on }),
  );
  if (res)
    report(
      on
        ? `Store ${id} is in maintenance (${res.headsStamped} image head(s) stamped). Wait for "safe to remove" before stopping it.`
        : `Store ${id} is out of maintenance.`,
    );
}

async function snapshot(image) {
  const name = await ask({
    title: `Take a snapshot of image ${image}?`,
    body: [
      h(
        "p",
        {},
        `A read-only copy of ${image} as of its last flush; it takes no space until the image changes.`,
      ),
    ],
    confirmLabel: "Take the snapshot",
    input: {
      label: "Snapshot name",
      value: `snap-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-")}`,
      hint: "1 to 128 of A-Z a-z 0-9 . _ -, starting with a letter or digit.",
      check: (v) =>
        NAME_PATTERN.test(v) ? null : "Use 1 to 128 of A-Z a-z 0-9 . _ -, starting with a letter or digit",
    },
  });
  if (name === null) return;
  const res = await act(`Snapshot of ${image}`, () =>
    apiJson("POST", `/v1/images/${encodeURIComponent(image)}/snapshots`, { name }),
  );
  if (res) report(`Snapshot ${image}@${res.name} taken.`);
}

async function applyLimits(change, words) {
  const ok = await ask({
    title: "Change the heal limits?",
    body: [h("p", {}, "These limits change at once:"), h("ul", {}, ...words)],
    confirmLabel: "Apply the limits",
  });
  if (!ok) return false;
  const res = await act("Heal limits", () => apiJson("PUT", "/v1/heal/limits", change));
  if (res) report("Heal limits changed.");
  return res !== null;
}

const client = new EventClient("/v1/events", { onEvent, onState });
$("token-button").addEventListener("click", () => void askToken(null));
updateTokenButton();
render();
client.restart();
