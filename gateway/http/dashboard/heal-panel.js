/** The heals panel: per data store, the running (or last) heal as a progress bar. */
import { h, keyed, replace, setAttr, text } from "./dom.js";
import { bytes, clock, count, duration, percent, rate } from "./format.js";

/** Renders `GET /v1/heal`'s answer. */
export function renderHeals(heal) {
  const summary = document.getElementById("heals-summary");
  const list = document.getElementById("heal-list");
  if (!heal) {
    text(summary, "Not known yet.");
    keyed(list, [], (s) => s.id, healCard);
    return;
  }
  const shown = heal.stores
    .filter((s) => s.running || s.startedAt !== null || s.state !== "in-sync")
    .sort((a, b) => Number(b.running) - Number(a.running) || (a.id < b.id ? -1 : 1));
  const running = heal.stores.filter((s) => s.running).length;
  const l = heal.limits;
  text(
    summary,
    `${running === 0 ? "No heal is running" : `${running} heal(s) running`}${
      heal.healing && running === 0 ? ", but some store is not in sync" : ""
    }. Copy rate limit now ${rate(l.rateBytesPerSecond)} (floor ${rate(l.floorBytesPerSecond)}, ceiling ${rate(l.ceilingBytesPerSecond)}).${
      heal.repairedChunks > 0
        ? ` ${count(heal.repairedChunks)} bad copies repaired since this gateway started.`
        : ""
    }`,
  );
  keyed(list, shown, (s) => s.id, healCard);
}

function healCard() {
  const title = h("span");
  const badge = h("span", { class: "badge" });
  const bar = h("progress");
  const barText = h("p", { class: "bar-label" });
  const facts = h("dl", { class: "facts" });
  const images = h("ul", { class: "heal-images" });
  const el = h("li", { class: "card heal" }, h("h3", {}, title, badge), bar, barText, facts, images);
  return {
    el,
    update(s) {
      setAttr(el, "data-key", s.id);
      setAttr(el, "data-state", s.state);
      setAttr(el, "data-running", s.running ? "true" : "false");
      text(title, `Heal of store ${s.id}`);
      const word = s.running ? "healing" : s.state === "in-sync" ? "in sync" : s.state;
      text(badge, word);
      setAttr(badge, "data-state", s.running ? "healing" : s.state);
      setAttr(bar, "aria-label", `Heal of store ${s.id}: bytes copied`);
      if (s.missingBytes > 0) {
        setAttr(bar, "max", String(s.missingBytes));
        bar.value = Math.min(s.copiedBytes, s.missingBytes);
        setAttr(bar, "aria-valuetext", `${percent(s.copiedBytes, s.missingBytes)} copied`);
        text(
          barText,
          `${bytes(s.copiedBytes)} of ${bytes(s.missingBytes)} copied (${percent(s.copiedBytes, s.missingBytes)})${
            s.running ? "" : `, done; store ${s.id} is ${s.state === "in-sync" ? "in sync" : s.state}`
          }`,
        );
      } else if (s.running) {
        bar.removeAttribute("value"); // indeterminate: still finding what the store lacks
        bar.removeAttribute("aria-valuetext");
        text(barText, "Finding what the store lacks…");
      } else {
        setAttr(bar, "max", "1");
        bar.value = s.state === "in-sync" ? 1 : 0;
        setAttr(bar, "aria-valuetext", s.state === "in-sync" ? "nothing to copy" : "not started");
        text(barText, s.state === "in-sync" ? "Nothing was missing." : "No heal has run yet.");
      }
      const rows = [];
      if (s.running) {
        rows.push(["Rate", rate(s.rateBytesPerSecond)]);
        rows.push([
          "Time left",
          s.missingBytes === 0 ? "not known until the missing chunks are found" : duration(s.etaSeconds),
        ]);
      }
      rows.push([
        "Converges",
        s.converges
          ? "yes: the store is reachable, new writes reach it, so what is missing only shrinks"
          : `no: the store is ${s.state}, so it falls further behind until it answers`,
      ]);
      if (s.gateway) rows.push(["Run by", `gateway ${s.gateway}`]);
      if (s.startedAt) rows.push(["Started", clock(s.startedAt)]);
      if (s.finishedAt) rows.push(["Finished", clock(s.finishedAt)]);
      if (s.lostChunks > 0)
        rows.push([
          "Lost",
          h("span", { class: "lost" }, `${count(s.lostChunks)} chunk(s) with no good copy anywhere`),
        ]);
      if (s.lastError) rows.push(["Last error", s.lastError]);
      replace(facts, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
      replace(
        images,
        ...s.images.map((i) =>
          h(
            "li",
            {},
            `${i.image}: ${count(i.copiedChunks)} of ${count(i.missingChunks)} chunks, generation ${i.fromGeneration} to ${i.toGeneration}${i.done ? ", done" : ""}`,
          ),
        ),
      );
    },
  };
}
