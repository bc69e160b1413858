// A mammography result. Patients read the category in words for the exam and each breast
// (shared Category, wording.js) and each breast's tissue density in words, never
// "Malignant"/"Benign"/"Normal" nor a probability; doctors read the suspicion scores (a
// relative score, calibrated at mini-MIAS's prevalence), the operating point each view was
// read at (with the other breast, or alone), the density estimates and, only for flagged
// breasts and only while the model's evidence allows it, a benign-vs-malignant estimate. The four views hang as radiologists hang them:
// RCC and LCC over RMLO and LMLO (the right breast on the viewer's left).

import { h, newId, percent } from "./dom.js";
import { disclaimer, viewer } from "./components.js";
import { operatingPoint, overlayLegend } from "./reading.js";
import { categoryHeadline, modelFigures, patientView, resultBadge } from "./wording.js";
import { WORDS } from "./words.js";

/** Grid place (row, column) of each view tag in the hanging. */
export const HANGING = { "R-CC": [1, 1], "L-CC": [1, 2], "R-MLO": [2, 1], "L-MLO": [2, 2] };

const score100 = (v) => `${Number(v).toFixed(1)} / 100`;

/** The reading of one view (or breast) in the shape reading.js draws. */
const readingOf = (r, x) => {
  const alone = x.comparison === "unilateral" && r.unilateral_operating_point;
  const threshold = x.score_threshold ?? r.score_threshold;
  return { score: x.score, effective: { category: x.category, score_threshold: threshold, basis: r.basis, operating_point: alone ? r.unilateral_operating_point : r.operating_point } };
};

/** Breast tissue in words (mini-MIAS's three classes). */
export const DENSITY_WORDS = { fatty: "Mostly fatty", fatty_glandular: "Fatty and glandular", dense_glandular: "Dense" };
const COMPARISON_WORDS = { contralateral: "with the other breast", unilateral: "alone (no other-breast view)" };

const DOCTOR_SUMMARY = WORDS.DOCTOR_SUMMARY.mammography;

function scoreFacts(r) {
  if (r.basis === "legacy_label" || r.score === null || r.score === undefined) {
    return h("p", { class: "small muted", "data-testid": "legacy-result" }, "Stored before suspicion scores: the category is the one its label was shown with (benign or malignant: review recommended). No operating point was recorded with it.");
  }
  const estimates = r.probabilities
    ? [h("dt", {}, "Model 1 estimates"), h("dd", {}, `benign ${percent(r.probabilities.benign)}, malignant ${percent(r.probabilities.malignant)} (independent estimates, not a split of 100%; not a category)`)]
    : [h("dt", {}, "Benign vs malignant"), h("dd", { "data-testid": "malignancy-note" }, r.malignancy_note || "Given per flagged breast below (a secondary estimate, not a category).")];
  return h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Suspicion score"),
    h("dd", { "data-testid": "result-score" }, h("strong", {}, score100(r.score)), ` (the more suspicious breast; operating threshold ${Number(r.score_threshold).toFixed(1)} with the other breast)`),
    r.score_scale ? [h("dt", {}, "Scale"), h("dd", { class: "small", "data-testid": "score-scale" }, r.score_scale)] : null,
    estimates,
  );
}

function notes(r) {
  if (!r.notes?.length) return null;
  return h("ul", { class: "small", "data-testid": "exam-notes" }, r.notes.map((n) => h("li", {}, n)));
}

/** Patients: each breast's tissue in words, and what dense tissue means for a clear screen. */
function patientDensity(r) {
  const dense = (r.breasts || []).some((b) => b.density?.category === "dense_glandular");
  if (!dense) return null;
  return h("p", { class: "small", "data-testid": "density-note" }, "Dense breast tissue can hide a finding: when the screening aid flags nothing in a dense breast, that says less. Your doctor takes this into account.");
}

function mammoPoint(r) {
  if (!r.operating_point) return null;
  const opts = { positives: "abnormal", negatives: "normal", unit: "breasts" };
  const box = [operatingPoint(readingOf(r, { ...r, comparison: "contralateral" }), opts)];
  if (r.unilateral_operating_point && (r.views || []).some((v) => v.comparison === "unilateral")) {
    box.push(h("p", { class: "small", "data-testid": "unilateral-point" }, "Views without the other breast's view of the same kind were read from their breast alone, at this point:"));
    box.push(operatingPoint(readingOf(r, { ...r, comparison: "unilateral" }), opts));
  }
  return box;
}

/** The doctor's reading of a breast in one cell: the score, how it was read and, only for a
 * flagged breast while the evidence allows one, the secondary malignancy estimate. */
function doctorCell(b) {
  const parts = [resultBadge(b.label, b.category)];
  if (b.score !== null && b.score !== undefined) parts.push(h("span", { class: "small" }, ` ${score100(b.score)}`));
  if (b.comparison) parts.push(h("div", { class: "small muted" }, `read ${COMPARISON_WORDS[b.comparison]}`));
  if (b.malignancy !== null && b.malignancy !== undefined) {
    parts.push(h("div", { class: "small", "data-testid": "breast-malignancy" }, `malignant vs benign: ${percent(b.malignancy)} (secondary estimate, not a category)`));
  }
  return parts;
}

function breastTable(r, patient) {
  const cols = ["Breast", "Screening aid", "Breast tissue"];
  const order = [...(r.breasts || [])].sort((a, b) => (a.laterality === "R" ? -1 : 1) - (b.laterality === "R" ? -1 : 1));
  return h(
    "table",
    { class: "data" },
    h("caption", { class: "visually-hidden" }, "Result per breast"),
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      order.map((b) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, b.laterality === "L" ? "Left" : "Right"),
          h("td", {}, patient ? resultBadge(b.label, b.category) : doctorCell(b)),
          h("td", { "data-testid": "breast-density" }, densityText(b, patient)),
        ),
      ),
    ),
  );
}

function densityText(b, patient) {
  if (!b.density) return "—";
  const words = DENSITY_WORDS[b.density.category] || b.density.category;
  if (patient) return words;
  const p = b.density.probabilities?.[b.density.category];
  return p === undefined ? words : `${words} (${percent(p, 0)})`;
}

function overlays(r, v, patient) {
  const looked = WORDS.LOOKED[patient ? "patient" : "doctor"];
  if (v.heatmaps?.score_map) {
    return { heatmaps: [{ key: "looked", label: looked, ref: v.heatmaps.score_map }], legend: overlayLegend(readingOf(r, v), { patient }) };
  }
  // Stored before score maps: the full-size benign and malignant maps, not scaled to a score.
  const maps = ["malignant", "benign"].filter((k) => v.heatmaps?.[k]);
  const heatmaps = (patient ? maps.slice(0, 1) : maps).map((k) => ({
    key: k,
    label: patient ? "Areas the screening aid weighed most" : `${k === "malignant" ? "Malignant" : "Benign"} evidence (stored before score maps)`,
    ref: v.heatmaps[k],
    ramp: k,
  }));
  return { heatmaps, legend: null };
}

function viewCard(study, r, v, patient, imageOf) {
  const hid = newId("vh");
  const { heatmaps, legend } = overlays(r, v, patient);
  const [row, col] = HANGING[v.tag] || [3, 1];
  const card = h(
    "section",
    { class: "card view-card", "aria-labelledby": hid, "data-tag": v.tag },
    h("h3", { id: hid }, v.tag, patient ? null : [" ", resultBadge(v.label, v.category), v.score === null || v.score === undefined ? "" : h("span", { class: "small muted" }, ` ${score100(v.score)}${v.comparison ? `, read ${COMPARISON_WORDS[v.comparison]}` : ""}`)]),
    v.given_tag ? null : h("p", { class: "small muted" }, `View detected automatically (${percent(v.detection_confidence, 0)} confidence).`),
    v.tag_conflict ? h("p", { class: "alert info small", "data-testid": "tag-conflict" }, v.tag_conflict) : null,
    viewer({ image: imageOf(study, v), heatmaps, cropBox: v.crop_box, imageSize: v.score_map ? { w: v.score_map.image_width, h: v.score_map.image_height } : null, alt: `Mammogram view ${v.tag}`, legend, toggleLabel: `Show ${looked(patient)}`, shown: !patient }),
  );
  // Its place in the hanging (app.css): a 2 x 2 grid, one column in that order on phones.
  card.style.setProperty("--row", String(row));
  card.style.setProperty("--col", String(col));
  card.style.setProperty("--order", String((row - 1) * 2 + col));
  return card;
}

const looked = (patient) => (patient ? "where the screening aid looked" : "where the model looked");

/** The result section of a mammography study. modelLine and imageOf come from the study view. */
export function mammoResult(study, { modelLine, imageOf }) {
  const r = study.mammography_result;
  const patient = patientView();
  const views = (r.views || []).map((v) => viewCard(study, r, v, patient, imageOf));
  return [
    h(
      "div",
      { class: "grid-2" },
      h(
        "section",
        { class: "card result-card", "aria-labelledby": "res-h" },
        h("h2", { id: "res-h" }, "Result"),
        categoryHeadline(r.category),
        patient ? null : h("p", {}, DOCTOR_SUMMARY[r.category] || ""),
        patient ? null : scoreFacts(r),
        patient ? patientDensity(r) : notes(r),
        patient ? null : mammoPoint(r),
        modelLine(r.models),
        patient ? null : modelFigures(study.id),
      ),
      h("section", { class: "card", "aria-labelledby": "br-h" }, h("h2", { id: "br-h" }, "Per breast"), h("div", { class: "table-wrap" }, breastTable(r, patient)), disclaimer(r.disclaimer)),
    ),
    h("h2", {}, "Views"),
    h("p", { class: "small muted" }, "Hung as radiologists read them: CC views above MLO views, the right breast on your left (one below the other on a narrow screen)."),
    h("div", { class: "views-grid hanging", "data-testid": "hanging" }, views),
  ];
}
