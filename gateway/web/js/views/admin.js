// Administrators: doctors' accounts waiting for verification (or verified, suspended, rejected),
// and the decisions on each. Verify makes a doctor visible to patients at once; reject and
// suspend need a reason, which is kept with the decision.

import * as api from "../api.js";
import { alertBox, announce, clear, field, fieldError, fill, formatDate, h, newId, showError } from "../dom.js";

const STATUSES = [
  ["pending", "Waiting for verification"],
  ["verified", "Verified"],
  ["suspended", "Suspended"],
  ["rejected", "Rejected"],
];
// status -> the decisions that apply to it
const ACTIONS = {
  pending: ["verify", "reject"],
  verified: ["suspend"],
  suspended: ["verify"],
  rejected: ["verify"],
};
const REASON_HINT = {
  pending: "Optional to verify; required to reject.",
  verified: "Required to suspend.",
  suspended: "Optional: why the doctor is verified again.",
  rejected: "Optional: why the doctor is verified after all.",
};
const ACTION_TEXT = { verify: "Verify", reject: "Reject", suspend: "Suspend" };
const DONE_TEXT = { verify: "verified", reject: "rejected", suspend: "suspended" };

function decisionLine(d) {
  const who = d.admin ? d.admin.full_name : "a former administrator";
  const why = d.reason ? `: “${d.reason}”` : "";
  return `${formatDate(d.at)} · ${DONE_TEXT[d.decision]} by ${who}${why}`;
}

function history(doctor) {
  const list = h("ul", { class: "small" });
  const details = h("details", {}, h("summary", {}, "History of decisions"), list);
  details.addEventListener("toggle", async () => {
    if (!details.open || list.childElementCount) return;
    try {
      const page = await api.doctorDecisions(doctor.id);
      if (!page.items.length) list.append(h("li", { class: "muted" }, "No decision yet."));
      for (const d of page.items) list.append(h("li", {}, decisionLine(d)));
    } catch (ex) {
      list.append(h("li", { class: "alert error", role: "alert" }, api.friendly(ex)));
    }
  });
  return details;
}

function doctorRow(doctor, onDecided) {
  const err = alertBox();
  const reason = h("textarea", { name: "reason", maxlength: "1000", rows: "2" });
  const actions = ACTIONS[doctor.status] || [];
  const buttons = actions.map((decision) =>
    h(
      "button",
      {
        type: "button",
        class: decision === "verify" ? "btn" : "btn danger",
        "data-decision": decision,
        onclick: async (e) => {
          showError(err, "");
          const why = reason.value.trim();
          if (decision !== "verify" && !why) {
            return fieldError(err, reason, `Write the reason to ${decision} this doctor; it is kept with the decision.`);
          }
          e.currentTarget.disabled = true;
          try {
            await api.decideDoctor(doctor.id, decision, why || null);
            announce(`${doctor.full_name} is ${DONE_TEXT[decision]}.`);
            onDecided();
          } catch (ex) {
            showError(err, api.friendly(ex));
            e.currentTarget.disabled = false;
          }
        },
      },
      ACTION_TEXT[decision],
      h("span", { class: "visually-hidden" }, ` ${doctor.full_name}`),
    ),
  );
  const last = doctor.last_decision;
  return h(
    "li",
    { class: "card admin-doctor", "data-testid": "doctor-account" },
    h("h2", {}, doctor.full_name),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "E-mail"),
      h("dd", {}, doctor.email),
      h("dt", {}, "Specialty"),
      h("dd", {}, api.specialtyName(doctor.specialty)),
      h("dt", {}, "Licence number"),
      h("dd", {}, h("strong", {}, doctor.licence_number || "—")),
      h("dt", {}, "Signed up"),
      h("dd", {}, formatDate(doctor.created_at)),
    ),
    last ? h("p", { class: "small muted" }, "Last decision: ", decisionLine(last)) : null,
    err,
    actions.length ? field("Reason", reason, REASON_HINT[doctor.status]) : null,
    h("div", { class: "row" }, buttons),
    history(doctor),
  );
}

export async function render(el, _params, ctx) {
  const select = h(
    "select",
    { id: newId("status") },
    STATUSES.map(([v, t]) => h("option", { value: v }, t)),
  );
  const summary = h("p", { class: "small muted", "aria-live": "polite" });
  const list = h("ul", { class: "list", "aria-label": "Doctors' accounts" });
  const load = async () => {
    const page = await api.listDoctorAccounts(select.value);
    if (!ctx.isCurrent()) return;
    clear(list);
    const label = STATUSES.find(([v]) => v === select.value)[1].toLowerCase();
    summary.textContent = `${page.total} ${page.total === 1 ? "doctor" : "doctors"}: ${label}.`;
    if (!page.items.length) list.append(h("li", { class: "empty" }, "Nobody here."));
    for (const d of page.items) list.append(doctorRow(d, () => load().catch(() => {})));
  };
  select.addEventListener("change", () => load().catch(() => {}));
  fill(
    el,
    h("h1", {}, "Doctors to verify"),
    h(
      "p",
      { class: "muted" },
      "Check each licence number with the medical register before verifying. A verified doctor is listed to patients " +
        "and can receive their studies; a suspended one loses access to every shared study until verified again.",
    ),
    h("div", { class: "field" }, h("label", { for: select.id }, "Show"), select),
    summary,
    list,
  );
  await load();
}
