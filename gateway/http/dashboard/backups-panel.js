/** The backup jobs panel: this gateway's running and recent jobs, each as a progress bar. */
import { h, keyed, replace, setAttr, text } from "./dom.js";
import { bytes, clock, count, duration, percent, rate, took } from "./format.js";

/** Renders the jobs (`GET /v1/backups/jobs`, newest first). */
export function renderBackups(jobs) {
  const summary = document.getElementById("backups-summary");
  const list = document.getElementById("backup-list");
  if (!jobs) {
    text(summary, "Not known yet.");
    keyed(list, [], (j) => j.id, jobCard);
    return;
  }
  const running = jobs.filter((j) => j.state === "running").length;
  const failed = jobs.filter((j) => j.state === "failed").length;
  text(
    summary,
    jobs.length === 0
      ? "No backup job has run on this gateway since it started (blockmend backup create IMAGE --to s3://BUCKET/PREFIX)."
      : `${running === 0 ? "No job is running" : `${count(running)} job(s) running`}; ${count(jobs.length - running)} finished${
          failed > 0 ? ` (${count(failed)} failed)` : ""
        } shown, newest first. Jobs of other gateways show on their own dashboards.`,
  );
  keyed(list, jobs, (j) => j.id, jobCard);
}

function title(j) {
  switch (j.kind) {
    case "create":
      return `Backup of ${j.image}`;
    case "restore":
      return `Restore of backup ${j.backup} into ${j.image}`;
    case "verify":
      return `Verify of backup ${j.backup}`;
    case "prune":
      return "Prune of the repository";
    default:
      return `${j.kind} job`;
  }
}

function jobCard() {
  const heading = h("span");
  const badge = h("span", { class: "badge" });
  const bar = h("progress");
  const barText = h("p", { class: "bar-label" });
  const facts = h("dl", { class: "facts" });
  const el = h("li", { class: "card job" }, h("h3", {}, heading, badge), bar, barText, facts);
  return {
    el,
    update(j) {
      setAttr(el, "data-key", j.id);
      setAttr(el, "data-state", j.state);
      setAttr(el, "data-kind", j.kind);
      text(heading, title(j));
      text(badge, j.state === "running" ? j.phase : j.state);
      setAttr(badge, "data-state", j.state);
      setAttr(bar, "aria-label", `${title(j)}: bytes ${j.kind === "restore" ? "restored" : "moved"}`);
      if (j.bytesTotal > 0) {
        setAttr(bar, "max", String(j.bytesTotal));
        bar.value = Math.min(j.bytesDone, j.bytesTotal);
        setAttr(bar, "aria-valuetext", `${percent(j.bytesDone, j.bytesTotal)} done`);
        text(
          barText,
          `${bytes(j.bytesDone)} of ${bytes(j.bytesTotal)} (${percent(j.bytesDone, j.bytesTotal)})${
            j.state === "done" ? ", done" : j.state === "failed" ? ", failed" : ""
          }`,
        );
      } else if (j.state === "running") {
        bar.removeAttribute("value"); // indeterminate: not yet known how much there is to move
        bar.removeAttribute("aria-valuetext");
        text(barText, `${j.phase[0]?.toUpperCase() ?? ""}${j.phase.slice(1)}…`);
      } else {
        setAttr(bar, "max", "1");
        bar.value = j.state === "done" ? 1 : 0;
        setAttr(bar, "aria-valuetext", j.state === "done" ? "nothing to move" : "failed");
        text(
          barText,
          j.state === "done" ? "Done; nothing had to be moved." : "Failed before moving any data.",
        );
      }
      const rows = [];
      if (j.state === "running") {
        rows.push(["Phase", j.phase]);
        rows.push(["Rate", rate(j.rateBytesPerSecond)]);
        rows.push(["Time left", j.etaSeconds === null ? "not known yet" : duration(j.etaSeconds)]);
      } else if (j.rateBytesPerSecond > 0) rows.push(["Rate", `${rate(j.rateBytesPerSecond)} on average`]);
      rows.push(["Target", j.target]);
      if (j.backup && j.kind === "create") rows.push(["Backup", j.backup]);
      rows.push(["Started", clock(j.startedAt)]);
      if (j.finishedAt)
        rows.push(["Finished", `${clock(j.finishedAt)} (took ${took(j.startedAt, j.finishedAt)})`]);
      rows.push(["Job", `${j.id} on gateway ${j.gateway}`]);
      if (j.error) rows.push(["Error", h("span", { class: "lost" }, j.error)]);
      replace(facts, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    },
  };
}
