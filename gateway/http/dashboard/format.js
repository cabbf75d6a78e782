/** Numbers and times in words for the panels (IEC units: 1 MiB = 1024 KiB). */

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** `1536` -> "1.5 KiB"; null -> "unknown". */
export function bytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return "unknown";
  let v = Math.abs(n);
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  const digits = u === 0 || v >= 100 ? 0 : 1;
  return `${n < 0 ? "-" : ""}${v.toFixed(digits)} ${UNITS[u]}`;
}

/** Bytes per second in words. */
export function rate(n) {
  return `${bytes(n)}/s`;
}

/** `3725` -> "1 h 2 min"; `65` -> "1 min 5 s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "unknown";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** How long from one ISO time to another, in words ("under 1 s" below a second). */
export function took(from, to) {
  const seconds = (Date.parse(to) - Date.parse(from)) / 1000;
  if (!Number.isFinite(seconds)) return "unknown";
  return seconds < 1 ? "under 1 s" : duration(seconds);
}

/** A time of day (24 h) of an ISO string or epoch ms. */
export function clock(t) {
  if (t === null || t === undefined) return "never";
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toLocaleTimeString([], { hour12: false });
}

/** A date and time of an ISO string. */
export function when(t) {
  if (t === null || t === undefined) return "never";
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return `${d.toLocaleDateString()} ${d.toLocaleTimeString([], { hour12: false })}`;
}

/** An integer with thousands separators. */
export function count(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString() : "unknown";
}

/** A share as "12.3%". */
export function percent(part, whole) {
  if (!whole) return "0%";
  const p = (100 * part) / whole;
  if (p > 0 && p < 0.1) return "under 0.1%";
  return `${p >= 10 || p === 0 ? p.toFixed(0) : p.toFixed(1)}%`;
}

/** The first 8 characters of an identity, as the CLI shows it. */
export function shortId(id) {
  return typeof id === "string" ? id.slice(0, 8) : "none";
}
