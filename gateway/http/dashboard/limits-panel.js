/**
 * The heal limits form: shows the live limits (a field being edited is left alone) and,
 * on Apply, sends only the fields the user changed, after a confirmation naming them.
 */
import { h } from "./dom.js";
import { rate } from "./format.js";

const MiB = 1024 * 1024;
/** Field name -> [element id, words, is a rate]. */
const FIELDS = {
  rateBytesPerSecond: ["limit-rate", "rate now", true],
  floorBytesPerSecond: ["limit-floor", "floor", true],
  ceilingBytesPerSecond: ["limit-ceiling", "ceiling", true],
  concurrency: ["limit-concurrency", "batches at once", false],
  scrubBytesPerSecond: ["limit-scrub", "scrub rate", true],
};

export class LimitsForm {
  #dirty = new Set();
  #limits = null;

  /** `apply(change, words)` sends the change (after its own confirmation); resolves true when applied. */
  constructor(apply) {
    const form = document.getElementById("limits-form");
    for (const [key, [id]] of Object.entries(FIELDS))
      document.getElementById(id).addEventListener("input", () => this.#dirty.add(key));
    document.getElementById("limits-reset").addEventListener("click", () => {
      this.#dirty.clear();
      this.show(this.#limits);
    });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const change = {};
      const words = [];
      for (const key of this.#dirty) {
        const [id, label, isRate] = FIELDS[key];
        const input = document.getElementById(id);
        const n = Number(input.value);
        if (input.value === "" || !Number.isFinite(n) || !input.checkValidity()) {
          input.focus();
          input.reportValidity();
          return;
        }
        change[key] = isRate ? Math.round(n * MiB) : Math.round(n);
        words.push(h("li", {}, `${label}: ${isRate ? rate(change[key]) : change[key]}`));
      }
      if (words.length === 0) {
        document.getElementById("limit-rate").focus();
        return;
      }
      if (await apply(change, words)) {
        this.#dirty.clear();
        this.show(this.#limits);
      }
    });
  }

  /** Shows `limits` in every field not being edited. */
  show(limits) {
    this.#limits = limits;
    if (!limits) return;
    for (const [key, [id, , isRate]] of Object.entries(FIELDS)) {
      if (this.#dirty.has(key)) continue;
      const input = document.getElementById(id);
      const v = limits[key];
      const shown = isRate ? String(Math.round((v / MiB) * 1000) / 1000) : String(v);
      if (input.value !== shown) input.value = shown;
    }
  }
}
