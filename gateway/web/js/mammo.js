// A mammography result. Patients read the category in words for the exam and each breast
// (shared Category, wording.js), never "Malignant"/"Benign"/"Normal" nor a probability;
// doctors read the suspicion scores, the operating point they were read at and model 1's
// benign/malignant estimates beside them. The four views hang as radiologists hang them:
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
const readingOf = (r, x) => ({ score: x.score, effective: { category: x.category, score_threshold: r.score_threshold, basis: r.basis, operating_point: r.operating_point } });

const DOCTOR_SUMMARY = WORDS.DOCTOR_SUMMARY.mammography;

function scoreFacts(r) {
  if (r.basis === "legacy_label" || r.score === null || r.score === undefined) {
    return h("p", { class: "small muted", "data-testid": "legacy-result" }, "Stored before suspicion scores: the category is the one its label was shown with (benign or malignant: review recommended). No operating point was recorded with it.");
  }
  return h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Suspicion score"),
    h("dd", { "data-testid": "result-score" }, h("strong", {}, score100(r.score)), ` (the more suspicious breast; operating threshold ${Number(r.score_threshold).toFixed(1)})`),
    h("dt", {}, "Model 1 estimates"),
    h("dd", {}, `benign ${percent(r.probabilities.benign)}, malignant ${percent(r.probabilities.malignant)} (independent estimates, not a split of 100%; not a category)`),
  );
}

function mammoPoint(r) {
  if (!r.operating_point) return null;
  return operatingPoint(readingOf(r, r), { positives: "malignant", negatives: "other", unit: "views" });
}

function breastTable(r, patient) {
  const cols = patient ? ["Breast", "Screening aid"] : ["Breast", "Screening aid", "Suspicion score"];
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
          h("td", {}, resultBadge(b.label, b.category)),
          patient ? null : h("td", {}, b.score === null || b.score === undefined ? "—" : score100(b.score)),
        ),
      ),
    ),
  );
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
    h("h3", { id: hid }, v.tag, patient ? null : [" ", resultBadge(v.label, v.category), v.score === null || v.score === undefined ? "" : h("span", { class: "small muted" }, ` ${score100(v.score)}`)]),
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
