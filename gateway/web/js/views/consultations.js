// Consultations: a patient asks a doctor about a study; the doctor reads it in the inbox and
// replies; the patient reads the reply and rates the doctor (1-5, once), and may withdraw the
// doctor's access to the study. A consultation outlives its study: it then says so.

import * as api from "../api.js";
import {
  alertBox,
  announce,
  backLink,
  cardForm,
  clear,
  field,
  fieldError,
  fill,
  formatDate,
  h,
  newId,
  showError,
  stars,
} from "../dom.js";
import { kindName } from "../components.js";
import { resultBadge } from "../wording.js";
import { follow } from "../sse.js";
import { resultSection } from "./study.js";

const POLL_MS = 30000; // fallback: the notifications stream normally brings changes at once

/** Follow /v1/consultations/events (new, answered, rated); calls onChange(c) for each. */
function liveConsultations(onChange) {
  return follow("/v1/consultations/events", { consultation: onChange }, { terminal: [] });
}

/** Why the doctor cannot open the study (null when they can), worded for the reader. */
function accessNotice(c, doctor) {
  const doc = c.doctor.full_name;
  if (c.study_access === "deleted") {
    return `${doctor ? "The patient" : "You"} deleted this study on ${formatDate(c.study_deleted_at)}. ` +
      "The question and the reply are kept; the images and the result are gone.";
  }
  if (c.study_access === "revoked") {
    return doctor
      ? `The patient withdrew your access to this study on ${formatDate(c.access_revoked_at)}.`
      : `You withdrew ${doc}'s access to this study on ${formatDate(c.access_revoked_at)}. Ask again to share it again.`;
  }
  if (c.study_access === "suspended") {
    return doctor
      ? "Your account is not verified at the moment: you cannot open shared studies or reply."
      : `${doc}'s account is not verified at the moment: they cannot open this study.`;
  }
  return null;
}

function accessBadge(c) {
  const text = { deleted: "Study deleted", revoked: "Access withdrawn", suspended: "Doctor not verified" }[c.study_access];
  return text ? h("span", { class: "badge neutral", "data-testid": "study-access" }, text) : null;
}

function revokeButton(c, onDone) {
  const err = alertBox();
  const button = h(
    "button",
    {
      type: "button",
      class: "btn danger",
      onclick: async () => {
        if (!window.confirm(`Withdraw ${c.doctor.full_name}'s access to this study? The question and the reply stay.`)) return;
        button.disabled = true;
        try {
          await api.revokeAccess(c.id);
          announce(`${c.doctor.full_name} can no longer open this study.`);
          onDone();
        } catch (ex) {
          showError(err, api.friendly(ex));
          button.disabled = false;
        }
      },
    },
    "Withdraw access",
  );
  return h(
    "div",
    { class: "card" },
    h("h2", {}, "Access to your study"),
    h("p", { class: "muted" }, `${c.doctor.full_name} can open this study, its images and the system's result.`),
    err,
    button,
  );
}

function statusBadge(c) {
  if (c.status === "answered") return h("span", { class: "badge answered" }, c.rating ? `Answered · rated ${c.rating}/5` : "Answered");
  return h("span", { class: "badge open" }, "Waiting for reply");
}

// ---------------------------------------------------------------------------- share (ask)
export async function renderShare(el, [studyId], ctx) {
  const err = alertBox();
  const study = await api.getStudy(studyId);
  if (!ctx.isCurrent()) return;
  const specialty = h(
    "select",
    { id: "share-specialty" },
    h("option", { value: "" }, "All specialties"),
    api.SPECIALTIES.map(([v, t]) => h("option", { value: v }, t)),
  );
  const doctorsBox = h("div", { class: "stack" });
  const fieldset = h("fieldset", {}, h("legend", {}, "Choose a doctor"), doctorsBox);
  const question = h("textarea", { name: "question", maxlength: "4000", required: true });
  const submit = h("button", { type: "submit", class: "btn" }, "Send question");

  const loadDoctors = async () => {
    const page = await api.listDoctors(specialty.value || undefined);
    if (!ctx.isCurrent()) return;
    clear(doctorsBox);
    const items = page.items || page;
    if (!items.length) doctorsBox.append(h("p", { class: "empty" }, "No doctors in this specialty yet."));
    for (const d of items) {
      const id = newId("doc");
      doctorsBox.append(
        h(
          "label",
          { class: "choice", for: id },
          h("input", { type: "radio", name: "doctor", value: d.id, id }),
          h(
            "span",
            {},
            h("strong", {}, d.full_name),
            h("span", { class: "muted small" }, ` · ${api.specialtyName(d.specialty)} `),
            stars(d.rating, d.ratings_count),
          ),
        ),
      );
    }
  };
  specialty.addEventListener("change", loadDoctors);

  const form = cardForm(
    err,
    async () => {
      const chosen = doctorsBox.querySelector("input[name=doctor]:checked");
      if (!chosen) {
        const first = doctorsBox.querySelector("input");
        return fieldError(err, first, "Choose a doctor to send your question to.", false);
      }
      if (!question.value.trim()) return fieldError(err, question, "Write your question for the doctor.");
      submit.disabled = true;
      try {
        const c = await api.askDoctor(study.id, chosen.value, question.value.trim());
        announce(`Your question was sent to ${c.doctor?.full_name || "the doctor"}.`);
        location.hash = `#/consultations/${c.id}`;
      } catch (ex) {
        showError(err, api.friendly(ex));
      } finally {
        submit.disabled = false;
      }
    },
    err,
    h("div", { class: "field" }, h("label", { for: "share-specialty" }, "Specialty"), specialty),
    fieldset,
    field("Your question", question, "The doctor sees this study, its images and the system's result."),
    submit,
  );
  fill(el,
    backLink(`#/studies/${study.id}`, "Back to the study"),
    h("h1", {}, "Ask a doctor"),
    h(
      "p",
      { class: "row" },
      `${kindName(study.kind)} of ${formatDate(study.created_at)}`,
      study.label || study.category ? resultBadge(study.label, study.category) : null,
    ),
    form,
  );
  await loadDoctors();
}

// ---------------------------------------------------------------------------- list / inbox
export async function renderList(el, _params, ctx) {
  const user = api.currentUser();
  const doctor = user.role === "doctor";
  const list = h("ul", { class: "list", "aria-label": doctor ? "Consultations" : "My questions" });
  const updated = h("p", { class: "small muted", "aria-live": "polite" });
  const load = async () => {
    const page = await api.listConsultations();
    if (!ctx.isCurrent()) return;
    const items = [...(page.items || page)];
    if (doctor) items.sort((a, b) => (a.status === "open" ? 0 : 1) - (b.status === "open" ? 0 : 1));
    clear(list);
    if (!items.length) {
      list.append(
        h(
          "li",
          { class: "empty" },
          doctor ? "No questions from patients yet." : "You have not asked a doctor yet. Open a study and choose “Ask a doctor”.",
        ),
      );
    }
    for (const c of items) {
      const who = doctor ? c.patient.full_name : `${c.doctor.full_name} (${api.specialtyName(c.doctor.specialty)})`;
      const href = `#/consultations/${c.id}`;
      list.append(
        h(
          "li",
          { class: "doctor-item" },
          h(
            "div",
            {},
            h("a", { class: "title", href }, h("strong", {}, who)),
            h("p", { class: "small muted" }, `${kindName(c.study_kind)} · asked ${formatDate(c.created_at)}`),
            h("p", { class: "quote" }, c.question.length > 160 ? `${c.question.slice(0, 160)}…` : c.question),
            h("p", { class: "row" }, statusBadge(c), accessBadge(c)),
          ),
          h(
            "a",
            { class: "btn secondary", href },
            doctor && c.status === "open" ? "Review and reply" : "Open",
            h("span", { class: "visually-hidden" }, ` (consultation with ${who})`),
          ),
        ),
      );
    }
    const open = items.filter((c) => c.status === "open").length;
    updated.textContent = doctor ? `${open} waiting for your reply.` : "";
  };
  const status = h("div", { "aria-live": "polite" });
  fill(el,
    h("h1", {}, doctor ? "Inbox" : "My questions"),
    doctor ? h("p", { class: "muted" }, "Studies patients shared with you. Open one to see the images and the system's result, then reply.") : null,
    status,
    updated,
    list,
  );
  if (doctor) {
    const me = await api.refreshMe();
    if (ctx.isCurrent() && me.doctor_status !== "verified") {
      const text = {
        pending: "Your account is waiting for an administrator to verify your licence. Until then patients cannot find you or share studies with you.",
        suspended: "Your account is suspended: you cannot open shared studies or reply. Contact the IRMI administrators.",
        rejected: "Your application was not accepted. Contact the IRMI administrators.",
      }[me.doctor_status];
      fill(status, h("p", { class: "alert info", "data-testid": "doctor-status" }, text));
    }
  }
  await load();
  // Each side sees the other's changes: live over SSE, and a slow poll as a fallback.
  let pending = null;
  const reload = () => {
    clearTimeout(pending);
    pending = setTimeout(() => load().catch(() => {}), 250); // one reload per burst of events
  };
  const stop = liveConsultations(reload);
  const timer = setInterval(() => load().catch(() => {}), POLL_MS);
  return () => {
    clearInterval(timer);
    clearTimeout(pending);
    stop();
  };
}

// ---------------------------------------------------------------------------- detail
async function fetchConsultation(id) {
  try {
    return await api.getConsultation(id);
  } catch (ex) {
    if (ex.status !== 404 && ex.status !== 405) throw ex;
    const page = await api.listConsultations();
    const found = (page.items || page).find((c) => c.id === id);
    if (!found) throw ex;
    return found;
  }
}

function ratingForm(c, onDone) {
  const err = alertBox();
  const name = newId("rate");
  const group = h(
    "div",
    { class: "rating-group" },
    [1, 2, 3, 4, 5].map((n) =>
      h(
        "label",
        {},
        h("input", { type: "radio", name, value: String(n), "aria-label": `${n} out of 5` }),
        h("span", { "aria-hidden": "true" }, `${n}★`),
      ),
    ),
  );
  const submit = h("button", { type: "submit", class: "btn" }, "Rate");
  return h(
    "form",
    {
      class: "card",
      onsubmit: async (e) => {
        e.preventDefault();
        const chosen = group.querySelector("input:checked");
        if (!chosen) {
          showError(err, "Choose a rating from 1 to 5.");
          group.querySelector("input").focus();
          return;
        }
        submit.disabled = true;
        try {
          await api.rate(c.id, Number(chosen.value));
          announce("Thank you for your rating.");
          onDone();
        } catch (ex) {
          showError(err, api.friendly(ex));
          submit.disabled = false;
        }
      },
    },
    h("fieldset", {}, h("legend", {}, `How helpful was ${c.doctor.full_name}?`), err, group),
    submit,
  );
}

function replyForm(c, onDone) {
  const err = alertBox();
  const answer = h("textarea", { name: "answer", maxlength: "8000", required: true });
  const submit = h("button", { type: "submit", class: "btn" }, "Send reply");
  return cardForm(
    err,
    async () => {
      if (!answer.value.trim()) return fieldError(err, answer, "Write your reply to the patient.");
      submit.disabled = true;
      try {
        await api.reply(c.id, answer.value.trim());
        announce("Your reply was sent.");
        onDone();
      } catch (ex) {
        showError(err, api.friendly(ex));
        submit.disabled = false;
      }
    },
    h("h2", {}, "Your reply"),
    err,
    field("Reply to the patient", answer, "Plain language helps. The patient reads it in IRMI and may rate your answer."),
    submit,
  );
}

export async function renderDetail(el, [id], ctx) {
  const user = api.currentUser();
  const doctor = user.role === "doctor";
  let timer = null;

  let shown = null;
  const draw = async () => {
    const c = await fetchConsultation(id);
    if (!ctx.isCurrent()) return;
    shown = c;
    const conversation = h(
      "section",
      { class: "card", "aria-labelledby": "q-h" },
      h("h2", { id: "q-h" }, "Question"),
      h("p", { class: "small muted" }, `${c.patient.full_name} asked on ${formatDate(c.created_at)}`),
      h("p", { class: "quote" }, c.question),
      c.answer
        ? [
            h("h2", {}, "Reply"),
            h("p", { class: "small muted" }, `${c.doctor.full_name} replied on ${formatDate(c.answered_at)}`),
            h("p", { class: "quote reply", "data-testid": "reply" }, c.answer),
          ]
        : h("p", { class: "muted" }, doctor ? "Not answered yet." : `Waiting for ${c.doctor.full_name} to reply.`),
      c.rating ? h("p", {}, "Rating: ", stars(c.rating, 1)) : null,
    );
    const parts = [
      backLink("#/consultations", doctor ? "Back to the inbox" : "Back to my questions"),
      h("h1", {}, doctor ? `Consultation with ${c.patient.full_name}` : `Your question to ${c.doctor.full_name}`),
      h("p", { class: "row" }, statusBadge(c), accessBadge(c), h("span", { class: "muted" }, kindName(c.study_kind))),
      conversation,
    ];
    const notice = accessNotice(c, doctor);
    const readable = c.study_access === "shared";
    if (!doctor && c.status === "answered" && !c.rating) parts.push(ratingForm(c, () => draw()));
    if (notice) parts.push(h("p", { class: "alert info", "data-testid": "access-notice" }, notice));
    if (!doctor && c.study_access !== "deleted") {
      parts.push(h("p", {}, h("a", { href: `#/studies/${c.study_id}` }, "Open the study and its result")));
    }
    if (!doctor && (readable || c.study_access === "suspended")) parts.push(revokeButton(c, () => draw()));
    const studyBox = h("section", { "aria-labelledby": "s-h" }, h("h2", { id: "s-h" }, "The study and the system's result"));
    if (doctor && readable) parts.push(studyBox);
    // The doctor reviews the images and the system's result first, then replies below them.
    if (doctor && c.status === "open" && readable) parts.push(replyForm(c, () => draw()));
    const focused = document.activeElement;
    fill(el, ...parts);
    if (focused && !el.contains(focused)) el.querySelector("h1")?.focus();
    if (doctor && readable) {
      try {
        const study = await api.getStudy(c.study_id);
        if (ctx.isCurrent()) studyBox.append(resultSection(study));
      } catch (ex) {
        studyBox.append(h("div", { class: "alert error", role: "alert" }, api.friendly(ex)));
      }
    }
    clearInterval(timer);
    if (c.status === "open" && !doctor) timer = setInterval(() => draw().catch(() => {}), POLL_MS);
  };
  await draw();
  // Redraw only when this consultation really changed (a redraw would clear a reply being typed).
  const stop = liveConsultations((c) => {
    if (c.id !== id || !shown) return;
    const changed = c.status !== shown.status || c.rating !== shown.rating || c.study_access !== shown.study_access;
    if (changed) draw().catch(() => {});
  });
  return () => {
    clearInterval(timer);
    stop();
  };
}
