// What a result says, and to whom. Patients never read a diagnosis-like headline ("Abnormal",
// "Normal", "Malignant", "Benign"): they read whether the screening aid flags the images for
// their doctor's review. Doctors read the model's own labels beside its measured figures.

import * as api from "./api.js";
import { capitalize, h, percent } from "./dom.js";

export const FLAGGED = "Review recommended";
export const NOT_FLAGGED = "No finding flagged";
export const FLAGGED_TEXT =
  "The screening aid flagged these images for your doctor to look at closely. This is not a diagnosis: only your doctor can say what the images show.";
export const NOT_FLAGGED_TEXT =
  "No finding flagged by the screening aid — your doctor still reviews the images.";

/** Patients (and anyone not a doctor) read the screening wording. */
export function patientView() {
  return api.currentUser()?.role !== "doctor";
}

const flagged = (label) => Boolean(label) && label !== "normal";

/** The headline of a result: the patient wording, or the model's label for doctors. */
export function headline(label) {
  if (!patientView()) {
    return h("p", { class: `result-label ${label}`, "data-testid": "result-label" }, capitalize(label));
  }
  const f = flagged(label);
  return [
    h("p", { class: `result-label ${f ? "review" : "clear"}`, "data-testid": "result-label" }, f ? FLAGGED : NOT_FLAGGED),
    h("p", { "data-testid": "result-explanation" }, f ? FLAGGED_TEXT : NOT_FLAGGED_TEXT),
  ];
}

/** A small badge for lists and tables. */
export function resultBadge(label) {
  if (!label) return h("span", { class: "badge neutral" }, "No result");
  if (!patientView()) return h("span", { class: `badge ${label}` }, capitalize(label));
  return flagged(label) ? h("span", { class: "badge review" }, FLAGGED) : h("span", { class: "badge clear" }, NOT_FLAGGED);
}

const pct = (v) => percent(v, 1);
const num = (v) => Number(v).toFixed(3);

function figureText(f) {
  const fmt = f.metric === "auc" ? num : pct;
  const name = { sensitivity: "Sensitivity", specificity: "Specificity", auc: "AUC" }[f.metric] || f.metric;
  const about = f.label ? ` (${f.label})` : "";
  const ci = f.ci95 ? ` (95% CI ${fmt(f.ci95[0])}–${fmt(f.ci95[1])})` : " (no confidence interval on the card)";
  return `${name}${about}: ${fmt(f.value)}${ci}`;
}

/** For doctors: each model's measured test figures, from the model cards. */
export function modelFigures(studyId) {
  const box = h("section", { class: "figures", "aria-label": "Measured figures", "data-testid": "model-figures" }, h("h3", {}, "Measured figures of the models"));
  const status = h("p", { class: "small muted" }, "Loading the model cards…");
  box.append(status);
  api
    .getStudyModels(studyId)
    .then((page) => {
      status.remove();
      for (const m of page.items) {
        const title = h("p", { class: "small" }, h("strong", {}, m.name), ` version ${m.version}`);
        box.append(title);
        if (m.card_version && m.card_version !== m.version) {
          box.append(h("p", { class: "small muted" }, `The service now runs version ${m.card_version}; the figures of version ${m.version} are not served any more.`));
        } else if (!m.figures.length) {
          box.append(h("p", { class: "small muted" }, "No measured figures on this model's card."));
        } else {
          box.append(h("ul", { class: "small" }, m.figures.map((f) => h("li", {}, `${figureText(f)}, ${f.split} split`))));
        }
      }
      if (!page.items.length) box.append(h("p", { class: "small muted" }, "No model is recorded for this result."));
    })
    .catch((ex) => {
      status.textContent = `The measured figures are unavailable: ${api.friendly(ex)}`;
    });
  return box;
}
