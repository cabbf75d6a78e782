/** Per store: may it be taken down now, why not in words, and its maintenance state with the switch. */
import { h, keyed, replace, setAttr, text } from "./dom.js";
import { when } from "./format.js";

/**
 * Renders the safe-to-remove answers (per store id) with each store's maintenance.
 * `onMaintenance(storeId, on)` runs when a maintenance button is pressed.
 */
export function renderSafety(safe, stores, onMaintenance) {
  const list = document.getElementById("safety-list");
  if (!safe || !stores) {
    keyed(
      list,
      [],
      (s) => s.id,
      () => null,
    );
    return;
  }
  const items = stores.stores.map((s) => ({ store: s, answer: safe[s.id] ?? null }));
  keyed(
    list,
    items,
    (i) => i.store.id,
    () => safetyCard(onMaintenance),
  );
}

function safetyCard(onMaintenance) {
  const title = h("span");
  const badge = h("span", { class: "badge" });
  const verdict = h("p");
  const reasons = h("ul", { class: "reasons" });
  const maint = h("p");
  const button = h("button", { type: "button" });
  let current = null;
  button.addEventListener("click", () => {
    if (current) onMaintenance(current.store.id, !current.store.maintenance);
  });
  const el = h(
    "li",
    { class: "card" },
    h("h3", {}, title, badge),
    verdict,
    reasons,
    maint,
    h("div", { class: "actions" }, button),
  );
  return {
    el,
    update(item) {
      current = item;
      const { store: s, answer: a } = item;
      setAttr(el, "data-key", s.id);
      text(title, `Store ${s.id}`);
      if (!a) {
        setAttr(el, "data-safe", null);
        text(badge, "unknown");
        setAttr(badge, "data-safe", null);
        text(verdict, "Not known yet.");
        replace(reasons);
      } else {
        setAttr(el, "data-safe", a.safe ? "true" : "false");
        setAttr(badge, "data-safe", a.safe ? "true" : "false");
        text(badge, a.safe ? "safe to remove" : "not safe to remove");
        text(
          verdict,
          a.safe
            ? a.maintenance
              ? `Taking store ${s.id} down now loses nothing, and in maintenance it stays so (unless another store fails).`
              : `Taking store ${s.id} down now loses nothing, but only for this moment: the next write may land on it. Put it in maintenance first.`
            : `Store ${s.id} must not be taken down now:`,
        );
        const lines = [...a.reasons];
        if (a.unstamped.length > 0 && !a.reasons.some((r) => r.includes("stamp")))
          lines.push(
            `${a.unstamped.length} image head(s) do not carry its maintenance stamp yet: ${a.unstamped.join(", ")}`,
          );
        replace(reasons, ...lines.map((r) => h("li", {}, r)));
      }
      text(
        maint,
        s.maintenance
          ? `Maintenance: on since ${when(s.maintenance.since)} (by ${s.maintenance.by}); new writes do not count it.`
          : "Maintenance: off.",
      );
      text(button, s.maintenance ? `End maintenance of ${s.id}…` : `Start maintenance of ${s.id}…`);
    },
  };
}
