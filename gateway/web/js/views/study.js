// One study: live progress (mammography, over SSE), then the result with its heatmaps.

import * as api from "../api.js";
import { backLink, capitalize, clear, fill, formatDate, h, newId, percent } from "../dom.js";
import { follow } from "../sse.js";
import { STAGES, disclaimer, kindName, statusBadge, viewer } from "../components.js";
import { operatingPoint, overlayLegend, reliability } from "../reading.js";
import { mammoResult } from "../mammo.js";
import { categoryHeadline, modelFigures, patientView } from "../wording.js";
import { WORDS } from "../words.js";

function modelLine(models) {
  if (!models?.length) return null;
  return h(
    "p",
    { class: "small muted" },
    models.length > 1 ? "Models: " : "Model: ",
    models.map((m, i) => [
      i ? ", " : "",
      h("strong", {}, m.name),
      ` version ${m.version}`,
      // The file's hash identifies the model for doctors; patients have no use for it.
      m.sha256 && !patientView() ? h("span", { title: m.sha256 }, ` (sha256 ${m.sha256.slice(0, 12)}…)`) : "",
    ]),
  );
}

function findingsList(findings) {
  return [
    h("h3", {}, "Findings"),
    h(
      "ul",
      {},
      findings.map((f) =>
        h(
          "li",
          {},
          `${capitalize(f.name)}: ${percent(f.probability)}`,
          Object.keys(f.subtypes || {}).length
            ? ` (${Object.entries(f.subtypes)
                .map(([k, v]) => `${k} ${percent(v)}`)
                .join(", ")})`
            : "",
          f.note ? h("span", { class: "muted small" }, ` ${f.note}`) : "",
        ),
      ),
    ),
  ];
}

const DOCTOR_SUMMARY = WORDS.DOCTOR_SUMMARY.chest;

/** The original's size, from a score map (whose box is in the original's pixels). */
export const mapSize = (m) => (m ? { w: m.image_width, h: m.image_height } : null);

function chestResult(study) {
  const r = study.chest_result;
  const e = r.effective;
  const patient = patientView();
  const image = study.images?.[0];
  // Overlays rendered from the score map say what they cover; older ones were full-size CAMs.
  const rendered = Boolean(r.heatmap?.covers);
  const heatmapLabel = WORDS.LOOKED[patient ? "patient" : "doctor"];
  const heatmaps = r.heatmap ? [{ key: "looked", label: heatmapLabel, ref: r.heatmap }] : [];
  const legend = rendered
    ? overlayLegend(r, { patient })
    : h("p", { class: "small muted", "data-testid": "overlay-legend" }, patient ? "Where the screening aid looked: this is not a finding or a lesion." : "Stored before operating points: red and yellow show where the model saw evidence for an abnormality, blue little (not scaled to the score; not a lesion outline).");
  const facts = patient
    ? null
    : h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Score"),
        h("dd", { "data-testid": "result-score" }, h("strong", {}, `${Number(r.score).toFixed(1)} / 100`), ` (operating threshold ${Number(e.score_threshold).toFixed(1)})`),
        h("dt", {}, "Chest X-ray check"),
        h("dd", {}, r.validity?.passed ? "Passed" : "Not passed", r.validity ? ` (${percent(r.validity.score)})` : ""),
      );
  const findings = !patient && e.category === "review_recommended" && r.findings?.length ? findingsList(r.findings) : [];
  return h(
    "div",
    { class: "grid-2" },
    h(
      "section",
      { class: "card", "aria-labelledby": "img-h" },
      h("h2", { id: "img-h" }, patient ? "Image" : "Image and where the model looked"),
      viewer({
        image,
        heatmaps,
        cropBox: r.crop_box,
        imageSize: mapSize(r.score_map),
        alt: "Uploaded chest X-ray",
        legend,
        toggleLabel: patient ? "Show where the screening aid looked" : "Show where the model looked",
        shown: !patient,
      }),
    ),
    h(
      "section",
      { class: "card result-card", "aria-labelledby": "res-h" },
      h("h2", { id: "res-h" }, "Result"),
      categoryHeadline(e.category),
      patient ? null : h("p", {}, DOCTOR_SUMMARY[e.category] || ""),
      facts,
      patient ? null : operatingPoint(r),
      patient ? null : reliability(r),
      findings,
      modelLine(r.models),
      patient ? null : modelFigures(study.id),
      disclaimer(r.disclaimer),
    ),
  );
}

function viewImage(study, v) {
  const n = Number(String(v.view_id).replace(/\D+/g, ""));
  const images = study.images || [];
  return images.find((i) => i.name === v.view_id) || images.find((i) => i.name === v.given_tag) || images[n] || images[0];
}

function viewName(study, viewId) {
  const n = Number(String(viewId).replace(/\D+/g, ""));
  const img = (study.images || [])[n];
  if (img && /^[LR]-(CC|MLO)$/.test(img.name)) return img.name;
  return Number.isFinite(n) ? `view ${n + 1}` : String(viewId);
}

function progressSection() {
  const id = newId("prog");
  const bar = h("progress", { id, max: "100", value: "0", "data-testid": "analysis-progress" });
  const text = h("p", { class: "progress-text", "aria-live": "polite" }, "Connecting…");
  const section = h(
    "section",
    { class: "card progress-wrap", "aria-labelledby": `${id}-l` },
    h("label", { for: id, id: `${id}-l` }, "Analysis progress"),
    bar,
    text,
  );
  return {
    section,
    set(pct, message) {
      if (pct !== undefined && pct !== null) {
        // Never backwards: a (re)opened stream replays events older than the stored progress.
        if (Number(pct) < bar.value) return;
        bar.value = Math.max(0, Math.min(100, Number(pct) || 0));
        bar.setAttribute("aria-valuetext", `${Math.round(bar.value)}%`);
      }
      if (message) text.textContent = message;
    },
  };
}

/** Who and what a printed study is about (shown on paper only: the print stylesheet). */
function printIdentifiers(study, user) {
  const name = study.patient_name || (user.role === "patient" ? user.full_name : "");
  const row = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
  return h(
    "section",
    { class: "print-only print-identifiers", "aria-label": "Study identifiers", "data-testid": "print-identifiers" },
    h("p", { class: "print-title" }, `IRMI ${kindName(study.kind)} study report`),
    h("dl", { class: "facts" }, row("Patient", name || "not recorded"), row("Study date", formatDate(study.created_at)), row("Study ID", study.id), row("Printed", formatDate(new Date().toISOString()))),
    h("p", { class: "small" }, WORDS.SCREENING_AID),
  );
}

/** Print the page, or download the gateway's PDF report of the study. */
function reportButtons(study, body) {
  const fail = (ex) => body.prepend(h("div", { class: "alert error", role: "alert" }, api.friendly(ex)));
  return [
    h("button", { type: "button", class: "btn secondary", onclick: () => window.print() }, "Print"),
    h(
      "button",
      {
        type: "button",
        class: "btn secondary",
        onclick: async (ev) => {
          const btn = ev.currentTarget;
          btn.disabled = true;
          try {
            await api.download(`/v1/studies/${study.id}/report?download=true`, `irmi-study-${study.id}.pdf`, "application/pdf");
          } catch (ex) {
            fail(ex);
          } finally {
            btn.disabled = false;
          }
        },
      },
      "Download the report (PDF)",
    ),
  ];
}

/** The result part of a study (also embedded in the doctor's consultation view). */
export function resultSection(study) {
  if (study.status === "failed") {
    const code = study.error?.code;
    return h(
      "div",
      { class: "alert error", role: "alert" },
      h("strong", {}, "The analysis failed"),
      code ? api.friendly(new api.ApiError(0, code, study.error.message)) : "Please upload the images again.",
    );
  }
  if (study.kind === "chest" && study.chest_result) return h("div", {}, chestResult(study));
  if (study.kind === "mammography" && study.mammography_result) return h("div", {}, mammoResult(study, { modelLine, imageOf: viewImage }));
  return h("p", { class: "muted" }, "The analysis is still running.");
}

export async function render(el, [id], ctx) {
  const user = api.currentUser();
  const head = h("div", {});
  const body = h("div", {});
  fill(el, head, body);
  let stop = null;
  let badge = null;

  const draw = (study) => {
    const back = user.role === "doctor" ? backLink("#/consultations", "Back to the inbox") : backLink("#/studies", "Back to my studies");
    back.classList.add("no-print");
    fill(head,
      back,
      h("h1", {}, `${kindName(study.kind)} study`),
      h("p", { class: "row" }, (badge = statusBadge(study.status)), h("span", { class: "muted" }, formatDate(study.created_at))),
      printIdentifiers(study, user),
    );
    const reports = study.status === "succeeded" ? reportButtons(study, body) : [];
    if (user.role !== "patient" && reports.length) head.append(h("div", { class: "row study-actions no-print" }, reports));
    if (user.role === "patient") {
      head.append(
        h(
          "div",
          { class: "row study-actions no-print" },
          study.status === "succeeded" ? h("a", { class: "btn", href: `#/studies/${study.id}/share` }, "Ask a doctor about this study") : null,
          reports,
          study.status === "failed" && study.kind === "mammography"
            ? h(
                "button",
                {
                  type: "button",
                  class: "btn",
                  onclick: async (ev) => {
                    const btn = ev.currentTarget;
                    btn.disabled = true;
                    try {
                      await api.rerunStudy(study.id); // the stored images are analysed again
                      window.dispatchEvent(new HashChangeEvent("hashchange")); // show it running
                    } catch (ex) {
                      btn.disabled = false;
                      body.prepend(h("div", { class: "alert error", role: "alert" }, api.friendly(ex)));
                    }
                  },
                },
                "Run the analysis again",
              )
            : null,
          h(
            "button",
            {
              type: "button",
              class: "btn danger",
              onclick: async () => {
                if (!window.confirm("Delete this study and its images? This cannot be undone.")) return;
                try {
                  await api.deleteStudy(study.id);
                  location.hash = "#/studies";
                } catch (ex) {
                  body.prepend(h("div", { class: "alert error", role: "alert" }, api.friendly(ex)));
                }
              },
            },
            "Delete study",
          ),
        ),
      );
    }
  };

  const showResult = (study, progress) => {
    clear(body);
    if (progress) body.append(progress.section);
    body.append(resultSection(study));
  };
  const study = await api.getStudy(id);
  if (!ctx.isCurrent()) return null;
  draw(study);
  if (study.status === "queued" || study.status === "running") {
    const progress = progressSection();
    body.append(progress.section);
    if (study.progress) progress.set(study.progress.percent, `${STAGES[study.progress.stage] || study.progress.stage}…`);
    const finish = async () => {
      let done;
      try {
        done = await api.getStudy(id);
      } catch (ex) {
        if (ctx.isCurrent()) body.append(h("div", { class: "alert error", role: "alert" }, api.friendly(ex)));
        return;
      }
      if (!ctx.isCurrent()) return;
      draw(done);
      if (done.status === "succeeded") progress.set(100, "Analysis complete: 100%.");
      showResult(done, progress);
    };
    stop = follow(study.events_url || api.studyEventsPath(id), {
      progress: (p) => {
        if (p.stage !== "queued" && badge?.textContent === "Queued") {
          const running = statusBadge("running");
          badge.replaceWith(running);
          badge = running;
        }
        const stage = STAGES[p.stage] || p.stage;
        const view = p.view ? ` (${viewName(study, p.view)})` : "";
        progress.set(p.percent, `${stage}${view}: ${Math.round(p.percent)}%`);
      },
      result: () => {
        progress.set(100, "Analysis complete: 100%.");
        finish();
      },
      error: () => {
        progress.set(undefined, "The analysis failed.");
        finish();
      },
      reconnecting: () => progress.set(undefined, "Connection lost; reconnecting…"),
      failure: () => finish(),
    });
  } else {
    showResult(study, null);
  }
  return () => stop?.();
}
