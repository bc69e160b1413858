// What a result says, and to whom. Patients never read a diagnosis-like headline ("Abnormal",
// "Normal", "Malignant", "Benign") nor a probability: they read whether the screening aid flags
// the images for their doctor's review. A chest result says it in its category, read at the
// effective operating point (the gateway's `effective`); doctors read that category beside the
// score, the operating point's measured figures and the reliability of the answer.
// Mammography results say it in their category too (per exam, breast and view; a result
// stored before categories in the one the gateway reads from its label).

import * as api from "./api.js";
import { capitalize, h, percent } from "./dom.js";

import { WORDS } from "./words.js"; // generated from gateway/wording.py: the words live there

export const { FLAGGED, NOT_FLAGGED, FLAGGED_TEXT, NOT_FLAGGED_TEXT, OUTSIDE_TEXT } = WORDS;

/** The words of each category (shared.contracts.screening.Category). Outside the validated
 * population reads as "review recommended": fail-safe, never "no finding". */
export const CATEGORY = WORDS.CATEGORY;
const categoryWords = (category) => CATEGORY[category] || CATEGORY.review_recommended;

/** Patients (and anyone not a doctor) read the screening wording. */
export function patientView() {
  return api.currentUser()?.role !== "doctor";
}

const flagged = (label) => Boolean(label) && label !== "normal";

/** The headline of a result: its category in words, for patients with what it means. */
export function categoryHeadline(category) {
  const w = categoryWords(category);
  const title = patientView() ? w.title : w.doctor;
  return [
    h("p", { class: `result-label ${w.cls}`, "data-testid": "result-label", "data-category": category }, title),
    patientView() ? h("p", { "data-testid": "result-explanation" }, w.text) : null,
  ];
}

/** A small badge for lists and tables: the category when the result has one, else the label. */
export function resultBadge(label, category) {
  if (category) {
    const w = categoryWords(category);
    return h("span", { class: `badge ${w.cls}` }, patientView() ? w.title : w.badge);
  }
  if (!label) return h("span", { class: "badge neutral" }, "No result");
  if (!patientView()) return h("span", { class: `badge ${label}` }, capitalize(label));
  return flagged(label) ? h("span", { class: "badge review" }, FLAGGED) : h("span", { class: "badge clear" }, NOT_FLAGGED);
}

const pct = (v) => percent(v, 1);
const num = (v) => Number(v).toFixed(3);

function figureText(f) {
  const fmt = ["auc", "dice", "iou", "quadratic_kappa"].includes(f.metric) ? num : pct;
  const name = {
    sensitivity: "Sensitivity",
    specificity: "Specificity",
    auc: "AUC",
    dice: "Dice (lung masks)",
    iou: "IoU (lung masks)",
    accuracy_8way: "Orientation accuracy (rotation and mirror)",
    mirror_detected: "Mirrored films detected",
    mirror_false_flag: "Upright films wrongly flagged as mirrored",
    accuracy: "Accuracy",
    quadratic_kappa: "Weighted kappa (quadratic)",
  }[f.metric] || f.metric;
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
