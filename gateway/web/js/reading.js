// How a chest result was read, for doctors: the operating point its category comes from (with
// the measured sensitivity and specificity, their 95% CIs and where they were measured), the
// reliability of the answer for this image, and the legend of the "where the model looked"
// overlay. All of it comes from the gateway's `effective` reading and tb_service's result.

import { h, percent } from "./dom.js";
import { WORDS } from "./words.js";

const DASH = "\u2013";
const score100 = (v) => Number(v).toFixed(1);

/** Words for shared.contracts.screening.ReliabilityReason. */
export const REASONS = WORDS.REASONS;

function rateText(name, rate, what, unit = "films") {
  const [lo, hi] = rate.ci95;
  return `${name}: ${percent(rate.value)} (95% CI ${percent(lo)}${DASH}${percent(hi)}, n = ${rate.n} ${what} ${unit})`;
}

/** The operating point the result's category was read at (or, stored before operating
 * points, the deprecated threshold it was read at). words: what the rates were counted on
 * (chest: abnormal and normal films; mammography: malignant and other views). */
export function operatingPoint(result, { positives = "abnormal", negatives = "normal", unit = "films" } = {}) {
  const e = result.effective;
  const box = h("section", { class: "op-point", "aria-label": "Operating point", "data-testid": "operating-point" }, h("h3", {}, "Operating point"));
  if (e.basis === "legacy_threshold" || !e.operating_point) {
    box.append(
      h("p", { class: "small" }, `Score ≥ ${score100(e.score_threshold)} / 100 recommends review.`),
      h(
        "p",
        { class: "small muted", "data-testid": "legacy-point" },
        `Stored before operating points: read at the threshold recorded with it (${Number(result.threshold).toFixed(4)} on P(abnormal), deprecated). No sensitivity or specificity was recorded with this result.`,
      ),
    );
    return box;
  }
  const p = e.operating_point;
  const source = p.source === "site" ? `this site's point${p.run_id ? ` (validation run ${p.run_id})` : ""}` : "the model card's point";
  box.append(
    h("p", { class: "small" }, `Score ≥ ${score100(p.score_threshold)} / 100 recommends review: ${source}, `, h("strong", {}, p.model.name), ` version ${p.model.version}.`),
    h("ul", { class: "small" }, h("li", {}, rateText("Sensitivity", p.sensitivity, positives, unit)), h("li", {}, rateText("Specificity", p.specificity, negatives, unit))),
    h("p", { class: "small muted" }, `Measured on: ${p.measured_on || "not stated"}`),
  );
  if (p.source === "site") {
    box.append(h("p", { class: "small", "data-testid": "site-point" }, "This site chose the threshold for the sensitivity and specificity above, measured on its own labelled films."));
  }
  if (e.calibrated_score !== null && e.calibrated_score !== undefined) {
    box.append(h("p", { class: "small" }, `Probability recalibrated on this site's films: ${Number(e.calibrated_score).toFixed(1)}%.`));
  }
  if (e.site_note) box.append(h("p", { class: "small alert info", "data-testid": "site-note" }, e.site_note));
  return box;
}

/** Whether the answer holds for this image (the reliability flag and its reasons). */
export function reliability(result) {
  const r = result.effective?.reliability || result.reliability || { outside_population: false, reasons: [] };
  const box = h("section", { class: "reliability", "aria-label": "Reliability", "data-testid": "reliability" }, h("h3", {}, "Reliability for this image"));
  if (result.effective?.basis === "legacy_threshold") {
    box.append(h("p", { class: "small muted" }, "Not assessed: this result was stored before the reliability check."));
  } else if (!r.outside_population) {
    box.append(h("p", { class: "small" }, "No reason found to distrust the score for this image."));
  } else {
    box.append(
      h("p", { class: "small alert info" }, "Outside the validated population: the score is not trusted for this image, so review is recommended whatever it is."),
      h("ul", { class: "small" }, (r.reasons || []).map((x) => h("li", {}, REASONS[x] || x))),
    );
  }
  if (result.effective?.reliability) {
    box.append(h("p", { class: "small muted" }, "Like the films of this site's adopted validation run, so inside the validated population."));
  }
  if (r.distance !== null && r.distance !== undefined) {
    box.append(h("p", { class: "small muted" }, `Distance from the validated population: ${Number(r.distance).toFixed(2)} (above 1.00 is outside).`));
  }
  return box;
}

/** The legend of the overlay: a 0-100 bar, blue below the threshold, yellow to red above it
 * (grey when the score is not trusted), the threshold and this film's score marked. */
export function overlayLegend(result, { patient = false } = {}) {
  const e = result.effective;
  const trusted = e.category !== "outside_population";
  const t = Math.max(0, Math.min(100, Number(e.score_threshold)));
  const s = Math.max(0, Math.min(100, Number(result.score)));
  const bar = h("span", { class: `score-bar${trusted ? "" : " untrusted"}`, "aria-hidden": "true" });
  bar.style.setProperty("--t", `${t}%`);
  const mark = (cls, at, text) => {
    const m = h("span", { class: `mark ${cls}`, title: text }, "");
    m.style.left = `${at}%`;
    return m;
  };
  if (!patient) bar.append(mark("threshold", t, `threshold ${score100(t)}`), mark("score", s, `score ${score100(s)}`));
  const words = patient
    ? WORDS.OVERLAY_NOTE.patient
    : trusted
      ? `Where the model looked, not a lesion outline. Colour: each area's share of the score (${score100(s)}), blue below the operating threshold (${score100(t)}), yellow to red above it; opacity: how much the model weighed the area.`
      : "Where the model looked, not a lesion outline. Grey: the score is not trusted for this image (outside the validated population); opacity: how much the model weighed the area.";
  return h("div", { class: "overlay-legend", "data-testid": "overlay-legend" }, patient ? null : h("div", { class: "legend" }, "0", bar, "100"), h("p", { class: "small muted" }, words));
}
