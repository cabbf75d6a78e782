/**
 * Building the page's DOM from data without ever parsing data as HTML: text goes in with
 * `textContent` (or text nodes), attributes with `setAttribute`, and no `on*` or `style`
 * attribute is ever set from here (the CSP forbids inline handlers and styles; Trusted
 * Types would reject any HTML string). Everything shown, image names included, is
 * therefore text, whatever characters it has.
 */

/**
 * `h("li", {class: "card", "data-key": id}, h("h3", {}, name), "text")`: an element with
 * attributes and children (strings become text nodes; null, undefined and false are skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) setAttr(el, name, value);
  append(el, children);
  return el;
}

/** Sets one attribute (null, undefined or false removes it; true sets it empty). */
export function setAttr(el, name, value) {
  if (/^on/i.test(name) || name.toLowerCase() === "style")
    throw new TypeError(`Refusing to set attribute "${name}": inline handlers and styles are not allowed`);
  if (value === null || value === undefined || value === false) el.removeAttribute(name);
  else el.setAttribute(name, value === true ? "" : String(value));
}

/** Appends children: nodes as they are, everything else as text. */
export function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces every child of `el` (text and nodes as for {@link h}). */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** Sets the text of `el` if it differs (no change, no DOM mutation, no screen reader noise). */
export function text(el, value) {
  const s = String(value);
  if (el.textContent !== s) el.textContent = s;
}

/** The rows {@link keyed} made, per list element. */
const rowsOf = new WeakMap();

/**
 * Keeps the children of `list` in step with `items`: one child per key, made once by
 * `create(item)` (which returns `{el, update}`), updated in place by `update(item)` and
 * kept in the order of `items`; children of keys no longer present are removed. Elements
 * that persist keep their focus and state, so a button being used is never replaced.
 */
export function keyed(list, items, keyOf, create) {
  let rows = rowsOf.get(list);
  if (!rows) {
    rows = new Map();
    rowsOf.set(list, rows);
  }
  const seen = new Set();
  let prev = null;
  for (const item of items) {
    const key = keyOf(item);
    seen.add(key);
    let row = rows.get(key);
    if (!row) {
      row = create(item);
      rows.set(key, row);
    }
    row.update(item);
    const want = prev ? prev.nextSibling : list.firstChild;
    if (want !== row.el) list.insertBefore(row.el, want);
    prev = row.el;
  }
  for (const [key, row] of rows) {
    if (!seen.has(key)) {
      row.el.remove();
      rows.delete(key);
    }
  }
}
