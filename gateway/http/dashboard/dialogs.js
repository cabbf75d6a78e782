/**
 * The one modal dialog of the page (`<dialog id="dialog">`), for confirmations, a typed
 * confirmation (the user types a word, such as the store id, before the button acts),
 * and one-line questions (a snapshot name, the API token). `showModal` keeps focus in
 * the dialog and Escape cancels; focus returns to where it was.
 */
import { replace, text } from "./dom.js";

const $ = (id) => document.getElementById(id);

/**
 * Opens the dialog; resolves to the input's value (or true without input) when
 * confirmed, null when cancelled.
 *
 * @param {object} o
 * @param {string} o.title
 * @param {(Node|string)[]} o.body what will happen, in words (text, never HTML)
 * @param {string} o.confirmLabel the button's words ("Start maintenance of b")
 * @param {string} [o.typed] a word the user must type exactly before confirming
 * @param {{label: string, value?: string, hint?: string, type?: string, check?: (v: string) => string | null}} [o.input]
 */
export function ask(o) {
  const dialog = $("dialog");
  const form = $("dialog-form");
  const field = $("dialog-field");
  const input = $("dialog-input");
  const ok = $("dialog-ok");
  const error = $("dialog-error");
  const returnTo = document.activeElement;
  text($("dialog-title"), o.title);
  replace($("dialog-body"), ...o.body);
  text(ok, o.confirmLabel);
  text(error, "");
  const asking = o.typed !== undefined || o.input !== undefined;
  field.hidden = !asking;
  input.value = o.input?.value ?? "";
  input.type = o.input?.type ?? "text";
  if (o.typed !== undefined) {
    text($("dialog-label"), `Type ${o.typed} to confirm`);
    text(
      $("dialog-hint"),
      "This is what makes the button act: it guards against a click on the wrong store.",
    );
  } else if (o.input) {
    text($("dialog-label"), o.input.label);
    text($("dialog-hint"), o.input.hint ?? "");
  }
  const valid = () => {
    if (o.typed !== undefined) return input.value.trim() === o.typed ? null : `Type ${o.typed} exactly`;
    return o.input?.check?.(input.value) ?? null;
  };
  ok.disabled = o.typed !== undefined;
  const onInput = () => {
    if (o.typed !== undefined) ok.disabled = valid() !== null;
    text(error, "");
  };
  input.addEventListener("input", onInput);
  return new Promise((resolve) => {
    let result = null;
    const onSubmit = (ev) => {
      ev.preventDefault();
      const problem = valid();
      if (problem) {
        text(error, problem);
        input.focus();
        return;
      }
      result = o.input ? input.value : true;
      dialog.close();
    };
    const onCancel = () => dialog.close();
    const onClose = () => {
      form.removeEventListener("submit", onSubmit);
      $("dialog-cancel").removeEventListener("click", onCancel);
      input.removeEventListener("input", onInput);
      dialog.removeEventListener("close", onClose);
      if (returnTo instanceof HTMLElement && returnTo.isConnected) returnTo.focus();
      resolve(result);
    };
    form.addEventListener("submit", onSubmit);
    $("dialog-cancel").addEventListener("click", onCancel);
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    (asking ? input : $("dialog-cancel")).focus();
  });
}
