/**
 * The I/O panel: two uPlot charts over the last 10 minutes (VM latency p50/p99; VM read
 * and write and heal throughput), with store down/up and heal start/end drawn as vertical
 * lines, and the same marks as a list in words (a chart says nothing to a screen reader).
 * Colours come from the stylesheet's custom properties, so both schemes are readable.
 */
import { h, keyed, setAttr, text } from "./dom.js";
import { clock, rate } from "./format.js";
import uPlot from "./vendor/uplot/uPlot.esm.js";

/** The chart's window, as the server keeps it (io-timeline.ts HISTORY_MS). */
export const WINDOW_MS = 10 * 60 * 1000;
const HEIGHT = 200;
/** The shortest time the chart spans. */
const MIN_SPAN_MS = 60 * 1000;
/** The newest marks listed in words (all of them are drawn on the charts). */
const MARKS_LISTED = 12;
const MiB = 1024 * 1024;

const MARK_COLOURS = {
  "store-down": "--c-down",
  "store-up": "--c-up",
  "heal-start": "--c-mark-heal",
  "heal-end": "--c-mark-heal",
};

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

/** Draws each mark in the visible window as a vertical line with the store id at its top. */
function marksPlugin(getMarks) {
  return {
    hooks: {
      draw: [
        (u) => {
          const ctx = u.ctx;
          const { left, top, width, height } = u.bbox;
          const ratio = window.devicePixelRatio || 1;
          ctx.save();
          ctx.font = `${11 * ratio}px system-ui, sans-serif`;
          for (const m of getMarks()) {
            const x = Math.round(u.valToPos(m.t / 1000, "x", true));
            if (x < left || x > left + width) continue;
            ctx.strokeStyle = cssVar(MARK_COLOURS[m.kind] ?? "--muted");
            ctx.fillStyle = ctx.strokeStyle;
            ctx.lineWidth = 2 * ratio;
            ctx.setLineDash(m.kind.startsWith("heal") ? [5 * ratio, 4 * ratio] : []);
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
            ctx.fillText(m.store, x + 3 * ratio, top + 12 * ratio);
          }
          ctx.restore();
        },
      ],
    },
  };
}

/** The two charts and the list of marks. */
export class IoCharts {
  #latencyEl = document.getElementById("latency-chart");
  #throughputEl = document.getElementById("throughput-chart");
  #latency = null;
  #throughput = null;
  #samples = [];
  #marks = [];
  #range = [0, 1];

  constructor() {
    const build = () => this.#build();
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", build);
    const resize = new ResizeObserver(() => {
      for (const [u, el] of [
        [this.#latency, this.#latencyEl],
        [this.#throughput, this.#throughputEl],
      ])
        u?.setSize({ width: Math.max(200, el.clientWidth), height: HEIGHT });
    });
    resize.observe(this.#latencyEl);
    resize.observe(this.#throughputEl);
    this.#build();
  }

  /** Shows `samples` and `marks` (each oldest first, `t` in ms since the epoch). */
  set(samples, marks) {
    this.#samples = samples;
    this.#marks = marks;
    // From the first sample (at most WINDOW_MS back, at least MIN_SPAN_MS), so a young
    // gateway's minute of history fills the chart instead of its last tenth.
    const now = Date.now();
    const from = Math.max(now - WINDOW_MS, Math.min(now - MIN_SPAN_MS, samples[0]?.t ?? now));
    this.#range = [from / 1000, now / 1000];
    const xs = samples.map((s) => s.t / 1000);
    this.#latency?.setData([xs, samples.map((s) => s.p50Ms), samples.map((s) => s.p99Ms)]);
    this.#throughput?.setData([
      xs,
      samples.map((s) => s.readBytesPerSecond / MiB),
      samples.map((s) => s.writeBytesPerSecond / MiB),
      samples.map((s) => s.healBytesPerSecond / MiB),
    ]);
    this.#words();
  }

  #build() {
    this.#latency?.destroy();
    this.#throughput?.destroy();
    this.#latencyEl.replaceChildren();
    this.#throughputEl.replaceChildren();
    const fg = cssVar("--fg");
    const grid = cssVar("--c-grid");
    const axis = (label) => ({
      stroke: fg,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
      label,
    });
    const base = (el, series, yLabel) => ({
      width: Math.max(200, el.clientWidth),
      height: HEIGHT,
      legend: { show: false },
      cursor: { show: false },
      scales: {
        x: { time: true, range: () => this.#range },
        y: { range: (_u, _min, max) => [0, Math.max(1, max ?? 1)] },
      },
      axes: [axis(), { ...axis(yLabel), size: 50 }],
      series: [{}, ...series],
      plugins: [marksPlugin(() => this.#marks)],
    });
    const line = (label, colour) => ({
      label,
      stroke: cssVar(colour),
      width: 2,
      spanGaps: false,
      points: { show: false },
    });
    this.#latency = new uPlot(
      base(this.#latencyEl, [line("p50 (ms)", "--c-p50"), line("p99 (ms)", "--c-p99")], "ms"),
      [[], [], []],
      this.#latencyEl,
    );
    this.#throughput = new uPlot(
      base(
        this.#throughputEl,
        [line("VM reads", "--c-read"), line("VM writes", "--c-write"), line("heal copies", "--c-heal")],
        "MiB/s",
      ),
      [[], [], [], []],
      this.#throughputEl,
    );
    this.set(this.#samples, this.#marks);
  }

  /** The newest sample in words, and the marks as a list, newest first. */
  #words() {
    const last = this.#samples.at(-1);
    const now = document.getElementById("io-now");
    if (!last) text(now, "No sample yet.");
    else {
      const lat =
        last.p50Ms === null
          ? "no VM request"
          : `p50 ${last.p50Ms.toFixed(2)} ms, p99 ${last.p99Ms.toFixed(2)} ms, ${last.requestsPerSecond} requests/s`;
      text(
        now,
        `At ${clock(last.t)}: ${lat}; VM reads ${rate(last.readBytesPerSecond)}, writes ${rate(last.writeBytesPerSecond)}; heal copies ${rate(last.healBytesPerSecond)}.`,
      );
    }
    const list = document.getElementById("mark-list");
    const shown = [...this.#marks].reverse().slice(0, MARKS_LISTED);
    document.getElementById("marks-none").hidden = shown.length > 0;
    keyed(
      list,
      shown,
      (m) => `${m.t}|${m.kind}|${m.store}`,
      () => {
        const time = h("time");
        const what = h("span");
        const el = h("li", {}, time, what);
        return {
          el,
          update(m) {
            setAttr(el, "data-kind", m.kind);
            setAttr(time, "datetime", new Date(m.t).toISOString());
            text(time, clock(m.t));
            text(what, m.text);
          },
        };
      },
    );
  }
}
