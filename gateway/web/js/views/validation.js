// Administrators: validate the screen on this site's own labelled films before use, read the
// report, and adopt (or roll back) the site's operating point. Run images are never studies:
// nobody but administrators sees them, and they are deleted when the run's retention ends.

import * as api from "../api.js";
import { alertBox, announce, cardForm, clear, field, fill, formatDate, h, percent, showError } from "../dom.js";
import { follow } from "../sse.js";

const BASE = "/v1/admin/validation-runs";
const DASH = "\u2013";
const call = async (method, path, opts) => {
  const res = await api.raw(method, path, opts);
  return res.status === 204 ? null : res.json();
};
const est = (e) => (e && e.value !== null ? `${percent(e.value)} (${percent(e.ci_low)}${DASH}${percent(e.ci_high)})` : "—");
const auc = (e) => (e && e.value !== null ? `${e.value.toFixed(3)} (95% CI ${e.ci_low.toFixed(3)}${DASH}${e.ci_high.toFixed(3)})` : "—");
const STATUS = { open: "taking images", queued: "queued", running: "scoring", done: "finished", failed: "failed" };

async function download(path, name) {
  const res = await api.raw("GET", path, { headers: { Accept: "*/*" } });
  const url = URL.createObjectURL(await res.blob());
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function pointsTable(report) {
  const rows = [["Current point", report.overall.current]];
  for (const c of report.candidates) rows.push([`${c.name.replace("_", " ")} (chosen on these films)`, c]);
  return h(
    "table",
    { class: "table small", "data-testid": "validation-points" },
    h("caption", {}, "Sensitivity, specificity, PPV and NPV with 95% CIs"),
    h("thead", {}, h("tr", {}, ["Point", "Score ≥", "Sensitivity", "Specificity", "PPV", "NPV"].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      rows
        .filter(([, f]) => f)
        .map(([name, f]) =>
          h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, f.score_threshold.toFixed(2)), [f.sensitivity, f.specificity, f.ppv, f.npv].map((e) => h("td", {}, est(e)))),
        ),
    ),
  );
}

function subgroupTable(report) {
  const body = [];
  for (const [col, values] of Object.entries(report.subgroups || {})) {
    for (const [value, g] of Object.entries(values)) {
      body.push(h("tr", {}, h("th", { scope: "row" }, `${col}: ${value}`), h("td", {}, `${g.positives} / ${g.negatives}`), h("td", {}, auc(g.auc)), h("td", {}, est(g.current?.sensitivity)), h("td", {}, est(g.current?.specificity)), h("td", {}, est(g.outside_population))));
    }
  }
  if (!body.length) return null;
  return h(
    "table",
    { class: "table small" },
    h("caption", {}, "Per subgroup, at the current point"),
    h("thead", {}, h("tr", {}, ["Subgroup", "Positive / negative", "AUC", "Sensitivity", "Specificity", "Outside population"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, body),
  );
}

function adoptForm(run, onAdopted) {
  const err = alertBox();
  const target = h("select", {}, [["0.90", "Sensitivity 0.90"], ["0.95", "Sensitivity 0.95"], ["threshold", "A threshold I choose"]].map(([v, t]) => h("option", { value: v }, t)));
  const threshold = h("input", { type: "number", min: "0", max: "100", step: "0.01", inputmode: "decimal" });
  const recal = h("select", {}, [["platt", "Platt (default)"], ["isotonic", "Isotonic (needs many positives)"], ["none", "None"]].map(([v, t]) => h("option", { value: v }, t)));
  const extend = h("input", { type: "checkbox", checked: true });
  const out = h("div", { "aria-live": "polite" });
  const choice = () => {
    const body = { recalibration: recal.value, extend_population: extend.checked };
    if (target.value === "threshold") body.score_threshold = Number(threshold.value);
    else body.target_sensitivity = Number(target.value);
    return body;
  };
  const preview = async () => {
    showError(err, "");
    try {
      const p = await call("POST", `${BASE}/${run.id}/site-point/preview`, { json: choice() });
      const pt = p.point;
      fill(
        out,
        h("p", {}, `Score ≥ ${pt.score_threshold.toFixed(2)}: sensitivity ${est({ value: pt.sensitivity.value, ci_low: pt.sensitivity.ci95[0], ci_high: pt.sensitivity.ci95[1] })}, specificity ${est({ value: pt.specificity.value, ci_low: pt.specificity.ci95[0], ci_high: pt.specificity.ci95[1] })}.`),
        h("p", { class: "small alert info" }, "In-sample: chosen and measured on the same films, so optimistic. Re-validate on new films after adopting."),
        h("button", { type: "button", class: "btn", onclick: adopt }, "Adopt this point"),
      );
    } catch (ex) {
      showError(err, api.friendly(ex));
    }
  };
  const adopt = async () => {
    try {
      const row = await call("POST", `${BASE}/${run.id}/site-point`, { json: choice() });
      announce(`Site point version ${row.version} adopted: new results are read at it.`);
      onAdopted();
    } catch (ex) {
      showError(err, api.friendly(ex));
    }
  };
  return h(
    "section",
    { class: "card", "aria-label": "Choose a site operating point" },
    h("h3", {}, "Choose a site operating point from this run"),
    err,
    field("Point", target),
    field("Threshold (0–100, when you choose one)", threshold),
    field("Local recalibration of the probability", recal),
    h("div", { class: "field" }, h("label", {}, extend, " Films like these are inside the validated population")),
    h("button", { type: "button", class: "btn secondary", onclick: preview }, "Preview"),
    out,
  );
}

function reportView(run, report, onAdopted) {
  const o = report.overall;
  return h(
    "div",
    { "data-testid": "validation-report" },
    report.warnings.length ? h("div", { class: "alert info", role: "status" }, h("ul", {}, report.warnings.map((w) => h("li", {}, w)))) : null,
    o
      ? h("p", {}, `${o.n} films: ${o.positives} positive, ${o.negatives} negative. AUC ${auc(o.auc)}. Outside the validated population: ${est(o.outside_population)}.`)
      : null,
    o ? pointsTable(report) : null,
    report.calibration ? h("p", { class: "small" }, `Calibration: expected calibration error ${report.calibration.ece.toFixed(3)} over ${report.calibration.bins.length} bins.`) : null,
    subgroupTable(report),
    h("ul", { class: "small muted" }, report.notes.map((n) => h("li", {}, n))),
    h(
      "div",
      { class: "row" },
      h("button", { type: "button", class: "btn secondary", onclick: () => download(`${BASE}/${run.id}/report.pdf`, `validation-${run.id}.pdf`) }, "Download PDF"),
      h("button", { type: "button", class: "btn secondary", onclick: () => download(`${BASE}/${run.id}/scores.csv`, `scores-${run.id}.csv`) }, "Download per-image scores (CSV)"),
    ),
    run.modality === "chest" && o && report.candidates.length ? adoptForm(run, onAdopted) : null,
  );
}

function runCard(run, reload, stops) {
  const err = alertBox();
  const progress = h("p", { class: "small", "aria-live": "polite" }, `${STATUS[run.status]} · ${run.scored} scored, ${run.failed} refused, of ${run.total}`);
  const body = h("div");
  const files = h("input", { type: "file", multiple: true, accept: ".zip,.csv,.dcm,.png,.jpg,.jpeg,application/zip,text/csv,application/dicom" });
  const act = (fn) => async (e) => {
    const button = e.currentTarget; // null once the event has been dispatched
    showError(err, "");
    button.disabled = true;
    try {
      await fn();
    } catch (ex) {
      showError(err, api.friendly(ex));
    } finally {
      button.disabled = false;
    }
  };
  const sendFiles = act(async () => {
    const form = new FormData();
    for (const f of files.files) {
      const name = f.name.toLowerCase();
      form.append(name.endsWith(".zip") ? "archive" : name.endsWith(".csv") ? "labels" : "files", f, f.name);
    }
    const got = await api.upload(`${BASE}/${run.id}/uploads`, form);
    announce(`${got.body.added} labelled images added (${got.body.total} in the run).`);
    reload();
  });
  const watch = () => {
    stops.push(
      follow(`${BASE}/${run.id}/events`, { progress: (r) => (progress.textContent = `${STATUS[r.status]} · ${r.scored} scored, ${r.failed} refused, of ${r.total}`), done: () => reload() }, { terminal: ["done", "error"] }),
    );
  };
  if (run.status === "queued" || run.status === "running") watch();
  const canUpload = ["open", "done", "failed"].includes(run.status) && !run.images_deleted_at;
  return h(
    "li",
    { class: "card", "data-testid": "validation-run" },
    h("h2", {}, run.name),
    h("p", { class: "small muted" }, `${run.modality} · target ${run.target} · created ${formatDate(run.created_at)} · images kept until ${formatDate(run.retain_images_until)}${run.images_deleted_at ? " (deleted)" : ""}`),
    progress,
    err,
    canUpload ? field("Add labelled images (a zip with labels.csv, or images with a CSV)", files) : null,
    h(
      "div",
      { class: "row" },
      canUpload ? h("button", { type: "button", class: "btn secondary", onclick: sendFiles }, "Upload") : null,
      run.status === "open" && run.total ? h("button", { type: "button", class: "btn", onclick: act(async () => { await call("POST", `${BASE}/${run.id}/start`); reload(); }) }, "Start scoring") : null,
      run.report_url ? h("button", { type: "button", class: "btn secondary", onclick: act(async () => fill(body, reportView(run, await call("GET", run.report_url), reload))) }, "Show report") : null,
      !run.images_deleted_at ? h("button", { type: "button", class: "btn danger", onclick: act(async () => { await call("DELETE", `${BASE}/${run.id}/images`); reload(); }) }, "Delete images") : null,
    ),
    body,
  );
}

async function sitePoint(el, reload) {
  const list = await call("GET", "/v1/admin/site-points?modality=chest");
  const a = list.active;
  const err = alertBox();
  fill(
    el,
    h("h2", {}, "Chest operating point in force"),
    err,
    a
      ? h("p", { "data-testid": "site-point" }, `Site point version ${a.version} (${a.point.model.name} ${a.point.model.version}), score ≥ ${a.point.score_threshold.toFixed(2)}: sensitivity ${percent(a.point.sensitivity.value)}, specificity ${percent(a.point.specificity.value)} on run ${a.run_id}, adopted ${formatDate(a.adopted_at)}.`)
      : h("p", { "data-testid": "site-point" }, "The model card's point: no site point adopted."),
    a
      ? h(
          "button",
          {
            type: "button",
            class: "btn danger",
            onclick: async () => {
              try {
                await call("POST", "/v1/admin/site-points/rollback", { json: { modality: "chest" } });
                announce("Rolled back: the point before applies to new results.");
                reload();
              } catch (ex) {
                showError(err, api.friendly(ex));
              }
            },
          },
          "Roll back",
        )
      : null,
    list.items.length ? h("ul", { class: "small" }, list.items.map((p) => h("li", {}, `v${p.version} · ${p.status} · score ≥ ${p.point.score_threshold.toFixed(2)} · run ${p.run_id} · ${formatDate(p.adopted_at)}`))) : null,
  );
}

export async function render(el, _params, ctx) {
  const stops = [];
  const point = h("section", { class: "card" });
  const list = h("ul", { class: "list", "aria-label": "Validation runs" });
  const err = alertBox();
  const name = h("input", { type: "text", name: "name", required: true, maxlength: "200" });
  const modality = h("select", { name: "modality" }, h("option", { value: "chest" }, "Chest X-ray"), h("option", { value: "mammography" }, "Mammography (per breast)"));
  const target = h("input", { type: "text", name: "target", value: "abnormal", pattern: "[a-z0-9_\\-]+" });
  const reference = h("input", { type: "text", name: "reference_standard", maxlength: "2000" });
  const days = h("input", { name: "retention_days", type: "number", min: "1", max: "3650" });
  const load = async () => {
    while (stops.length) stops.pop()();
    const runs = await call("GET", BASE);
    if (!ctx.isCurrent()) return;
    await sitePoint(point, () => load().catch(() => {}));
    clear(list);
    if (!runs.items.length) list.append(h("li", { class: "empty" }, "No validation run yet."));
    for (const r of runs.items) list.append(runCard(r, () => load().catch(() => {}), stops));
  };
  const create = cardForm(
    err,
    async () => {
      if (!name.value.trim()) return showError(err, "Give the run a name.");
      try {
        await call("POST", BASE, {
          json: { name: name.value.trim(), modality: modality.value, target: target.value.trim(), reference_standard: reference.value.trim(), retention_days: days.value ? Number(days.value) : null },
        });
        name.value = "";
        announce("Validation run created: add its labelled images.");
        await load();
      } catch (ex) {
        showError(err, api.friendly(ex));
      }
    },
    h("h2", {}, "New validation run"),
    err,
    field("Name", name),
    field("Modality", modality),
    field("Target condition", target, "What a positive label means: abnormal, or a named finding (e.g. tuberculosis) from a reference standard."),
    field("Reference standard", reference, "Where the labels come from."),
    field("Keep the images for (days)", days, "Empty: the site's default. The report and scores stay until the run is deleted."),
    h("button", { type: "submit", class: "btn" }, "Create"),
  );
  fill(
    el,
    h("h1", {}, "Site validation"),
    h(
      "p",
      { class: "muted" },
      "No screen holds its published figures at a new hospital. Score your own labelled films, read the report, then choose this site's operating point. " +
        "Run images are not studies: they are never shown to patients and are deleted when the run's retention ends; file names stay private.",
    ),
    point,
    create,
    h("div", { class: "table-wrap" }, list),
  );
  await load();
  return () => {
    while (stops.length) stops.pop()();
  };
}
