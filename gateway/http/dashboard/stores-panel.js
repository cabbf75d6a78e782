/** The stores panel: every store with its state, identity, capacity and fill. */
import { h, keyed, replace, setAttr, text } from "./dom.js";
import { bytes, count, percent, when } from "./format.js";

const STATE_WORDS = {
  "in-sync": "in sync",
  healing: "healing",
  full: "full",
  draining: "draining",
  drained: "drained",
  down: "down",
  replaced: "replaced",
};

/** Renders `GET /v1/stores`'s answer into the panel. */
export function renderStores(answer) {
  const summary = document.getElementById("stores-summary");
  const list = document.getElementById("store-list");
  if (!answer) {
    text(summary, "Not known yet.");
    keyed(list, [], (s) => s.id, storeCard);
    return;
  }
  const byState = {};
  for (const s of answer.stores) byState[s.state] = (byState[s.state] ?? 0) + 1;
  const parts = Object.entries(byState).map(([state, n]) => `${n} ${STATE_WORDS[state] ?? state}`);
  text(
    summary,
    `${answer.stores.length} store(s): ${parts.join(", ")}. Each image is kept on ${answer.replicas} data stores; a write needs ${answer.minReplicas}.`,
  );
  keyed(list, answer.stores, (s) => s.id, storeCard);
}

function storeCard() {
  const title = h("span");
  const badge = h("span", { class: "badge" });
  const maint = h("span", { class: "badge", "data-maintenance": "true" }, "maintenance");
  const facts = h("dl", { class: "facts" });
  const fill = h("meter", { min: "0", max: "1", low: "0.8", high: "0.9", optimum: "0" });
  const fillText = h("p", { class: "bar-label" });
  const fillBox = h("div", {}, fill, fillText);
  const reasons = h("ul", { class: "reasons" });
  const lag = h("ul", { class: "lag" });
  const el = h("li", { class: "card" }, h("h3", {}, title, badge, maint), facts, fillBox, reasons, lag);
  return {
    el,
    update(s) {
      setAttr(el, "data-key", s.id);
      setAttr(el, "data-state", s.state);
      text(title, `Store ${s.id}`);
      text(badge, STATE_WORDS[s.state] ?? s.state);
      setAttr(badge, "data-state", s.state);
      maint.hidden = !s.maintenance;
      const rows = [
        ["Role", s.role === "witness" ? "witness (register state only, no chunks)" : "data"],
        ["Identity", h("code", {}, s.identity)],
      ];
      if (s.observedIdentity && s.observedIdentity !== s.identity)
        rows.push(["Answers as", h("code", {}, s.observedIdentity)]);
      rows.push(["Address", s.url]);
      if (s.role === "data") {
        rows.push(["Holds", s.chunks === null ? "unknown" : `${count(s.chunks)} chunks, ${bytes(s.bytes)}`]);
        rows.push(["Free", s.freeBytes === null ? "not reported (S3 or not read yet)" : bytes(s.freeBytes)]);
      }
      if (s.damagedChunks > 0) rows.push(["Damaged", `${count(s.damagedChunks)} chunk(s) not yet repaired`]);
      if (s.maintenance)
        rows.push(["Maintenance", `since ${when(s.maintenance.since)} (by ${s.maintenance.by})`]);
      rows.push([s.state === "down" ? "Down since" : "Up since", when(s.since)]);
      replace(facts, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
      // Fill: the store's chunks against chunks plus free space (the disk's size is not
      // reported, so other files on it are not counted).
      const known = s.role === "data" && s.bytes !== null && s.freeBytes !== null;
      fillBox.hidden = !known;
      if (known) {
        const room = s.bytes + s.freeBytes;
        const share = room > 0 ? s.bytes / room : 0;
        fill.value = share;
        setAttr(fill, "aria-label", `Fill of store ${s.id}`);
        setAttr(fill, "aria-valuetext", `${percent(s.bytes, room)} used`);
        text(fillText, `Fill: ${percent(s.bytes, room)} of the ${bytes(room)} it can use`);
      }
      replace(reasons, ...s.reasons.map((r) => h("li", {}, r)));
      replace(
        lag,
        ...s.lag.map((l) =>
          h(
            "li",
            {},
            // The reason is in words already; the generations only where it does not name them.
            /generation/.test(l.reason)
              ? `${l.image}: ${l.reason}`
              : `${l.image}: ${l.reason} (holds generation ${l.syncedGeneration} of ${l.generation})`,
          ),
        ),
      );
    },
  };
}
