// Tiny DOM helpers. Text is always set as text (never innerHTML), so user data cannot inject markup.

/**
 * h("a", {href: "#/x", class: "btn"}, "text", child, [more children])
 * Attributes starting with "on" become event listeners; `false`/null attributes are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

let uid = 0;
export function newId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: label + optional hint + control, wired with for/aria-describedby. */
export function field(labelText, control, hint) {
  const id = control.id || newId("in");
  control.id = id;
  const parts = [h("label", { for: id }, labelText)];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("p", { class: "hint", id: hintId }, hint));
  }
  parts.push(control);
  return h("div", { class: "field" }, parts);
}

/** Radio buttons drawn as choices under a legend: options are [value, text] pairs, the first checked. */
export function radioChoices(legend, name, options) {
  const choice = ([value, text], i) =>
    h("label", { class: "choice" }, h("input", { type: "radio", name, value, checked: i === 0 }), text);
  return h("fieldset", {}, h("legend", {}, legend), h("div", { class: "choices" }, options.map(choice)));
}

/** An error box that screen readers announce when it is filled. */
export function alertBox() {
  return h("div", { class: "alert error", role: "alert", "aria-live": "assertive" });
}

export function showError(box, message, title) {
  clear(box);
  if (!message) return;
  if (title) box.append(h("strong", {}, title));
  box.append(document.createTextNode(message));
  box.focus?.();
}

/**
 * A card form that does its own checks (novalidate). On submit it keeps the page, empties the
 * error box `err` and runs onSubmit(event); a check that fails returns early from onSubmit.
 */
export function cardForm(err, onSubmit, ...children) {
  return h(
    "form",
    {
      class: "card",
      novalidate: true,
      onsubmit: async (e) => {
        e.preventDefault();
        showError(err, "");
        await onSubmit(e);
      },
    },
    children,
  );
}

/** Point the user at the control to fix: mark it invalid (unless mark is false), say why, focus it. */
export function fieldError(box, control, message, mark = true) {
  if (mark) control?.setAttribute("aria-invalid", "true");
  showError(box, message);
  control?.focus();
}

export function percent(p, digits = 1) {
  return `${(Number(p) * 100).toFixed(digits)}%`;
}

export function formatDate(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function capitalize(s) {
  s = String(s ?? "");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Stars for a 0-5 rating, with a text alternative. */
export function stars(avg, count) {
  const n = Math.round(Number(avg) || 0);
  const label =
    count > 0 ? `Rated ${Number(avg).toFixed(1)} out of 5 by ${count} patient${count === 1 ? "" : "s"}` : "Not rated yet";
  const el = h("span", { class: "stars", role: "img", "aria-label": label });
  for (let i = 1; i <= 5; i += 1) el.append(h("span", { class: i <= n ? "on" : "off", "aria-hidden": "true" }, "★"));
  return h("span", { class: "row small" }, el, h("span", { class: "muted" }, count > 0 ? `${Number(avg).toFixed(1)} (${count})` : "no ratings yet"));
}

export function announce(message) {
  const toast = document.getElementById("toast");
  if (!toast) return;
  toast.textContent = message;
  clearTimeout(announce.timer);
  announce.timer = setTimeout(() => {
    toast.textContent = "";
  }, 4000);
}

/** "← Back to …" link; the arrow is decoration only. */
export function backLink(href, text) {
  return h("p", { class: "small" }, h("a", { href }, h("span", { "aria-hidden": "true" }, "← "), text));
}

/** Replace el's children (null/false children are skipped, arrays flattened). */
export function fill(el, ...children) {
  clear(el);
  return append(el, children);
}
