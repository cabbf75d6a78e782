/** The images panel: every image with size, snapshots and the owning gateway. */
import { h, keyed, replace, setAttr, text } from "./dom.js";
import { bytes, count, when } from "./format.js";

/** Renders the images; `onSnapshot(name)` runs when a snapshot button is pressed. */
export function renderImages(images, onSnapshot) {
  const summary = document.getElementById("images-summary");
  const list = document.getElementById("image-list");
  if (!images) {
    text(summary, "Not known yet.");
    keyed(
      list,
      [],
      (i) => i.name,
      () => null,
    );
    return;
  }
  const total = images.reduce((a, i) => a + i.size, 0);
  text(
    summary,
    images.length === 0
      ? "No image yet (blockmend image create NAME SIZE)."
      : `${count(images.length)} image(s), ${bytes(total)} in all (their sizes, not what is written).`,
  );
  keyed(
    list,
    images,
    (i) => i.name,
    () => imageCard(onSnapshot),
  );
}

function imageCard(onSnapshot) {
  const title = h("span");
  const facts = h("dl", { class: "facts" });
  const snapsTitle = h("p", {}, "Snapshots:");
  const snaps = h("ul", { class: "snapshots" });
  const button = h("button", { type: "button" });
  let name = null;
  button.addEventListener("click", () => {
    if (name !== null) onSnapshot(name);
  });
  const el = h(
    "li",
    { class: "card" },
    h("h3", {}, title),
    facts,
    snapsTitle,
    snaps,
    h("div", { class: "actions" }, button),
  );
  return {
    el,
    update(i) {
      name = i.name;
      setAttr(el, "data-key", i.name);
      text(title, i.name);
      const rows = [
        ["Size", bytes(i.size)],
        ["Chunk size", bytes(i.chunkSize)],
        ["Owner", i.owner ? `gateway ${i.owner}` : "none (not written yet)"],
        ["Generation", count(i.generation)],
        ["Changed", when(i.updatedAt)],
      ];
      if (i.clonedFrom) rows.push(["Cloned from", i.clonedFrom]);
      replace(facts, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
      text(snapsTitle, i.snapshots.length === 0 ? "No snapshot." : `Snapshots (${i.snapshots.length}):`);
      replace(
        snaps,
        ...i.snapshots.map((s) => h("li", {}, `${s.name}: ${bytes(s.size)}, taken ${when(s.createdAt)}`)),
      );
      text(button, "Take a snapshot…");
      setAttr(button, "aria-label", `Take a snapshot of image ${i.name}`);
    },
  };
}
