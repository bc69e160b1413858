// New study: one chest X-ray, or 1-4 mammogram views with optional view tags.

import * as api from "../api.js";
import { alertBox, cardForm, field, fieldError, fill, h, newId, radioChoices, showError } from "../dom.js";

const ACCEPT = ".png,.jpg,.jpeg,.dcm,.dicom,image/png,image/jpeg,application/dicom";

function progressBar(labelText) {
  const id = newId("prog");
  const bar = h("progress", { id, max: "100", value: "0" });
  const text = h("p", { class: "progress-text", "aria-live": "polite" });
  const wrap = h("div", { class: "progress-wrap", hidden: true }, h("label", { for: id }, labelText), bar, text);
  return {
    wrap,
    set(pct, message) {
      wrap.hidden = false;
      if (pct === null) bar.removeAttribute("value");
      else bar.value = Math.max(0, Math.min(100, pct));
      if (message !== undefined) text.textContent = message;
    },
    hide() {
      wrap.hidden = true;
    },
  };
}

function viewRow(index, onRemove) {
  const file = h("input", { type: "file", accept: ACCEPT, name: `view-${index}` });
  const tag = h(
    "select",
    { name: `tag-${index}` },
    h("option", { value: "" }, "Detect automatically"),
    api.VIEW_TAGS.map((t) => h("option", { value: t }, t)),
  );
  const remove = h(
    "button",
    { type: "button", class: "btn secondary", onclick: onRemove, "aria-label": `Remove view ${index + 1}` },
    "Remove",
  );
  const row = h(
    "div",
    { class: "view-row" },
    field(`View ${index + 1} image`, file),
    field(`View ${index + 1} tag`, tag),
    remove,
  );
  row.file = file;
  row.tag = tag;
  row.removeButton = remove;
  return row;
}

export function render(el) {
  const err = alertBox();
  const prog = progressBar("Upload progress");
  let kind = "chest";

  const kinds = radioChoices("What are you uploading?", "kind", [
    ["chest", "Chest X-ray"],
    ["mammography", "Mammogram"],
  ]);

  const chestFile = h("input", { type: "file", accept: ACCEPT, name: "file" });
  const chestPart = h(
    "div",
    {},
    field("Chest X-ray image", chestFile, "A frontal chest radiograph: a PNG, JPEG or DICOM file."),
  );

  const rows = h("div", {});
  const addView = h("button", { type: "button", class: "btn secondary" }, "Add another view");
  const mammoPart = h(
    "div",
    { hidden: true },
    h(
      "p",
      { class: "hint" },
      "Add 1 to 4 views (PNG, JPEG or DICOM). Tag each as left/right CC or MLO if you know it; otherwise IRMI detects the view.",
    ),
    rows,
    addView,
  );
  const renumber = () => {
    [...rows.children].forEach((r, i) => {
      r.removeButton.hidden = rows.children.length === 1;
      r.removeButton.setAttribute("aria-label", `Remove view ${i + 1}`);
    });
    addView.hidden = rows.children.length >= 4;
  };
  const add = () => {
    const row = viewRow(rows.children.length, () => {
      row.remove();
      renumber();
      addView.focus();
    });
    rows.append(row);
    renumber();
    return row;
  };
  add();
  addView.addEventListener("click", () => add().file.focus());

  kinds.addEventListener("change", () => {
    kind = kinds.querySelector("input:checked").value;
    chestPart.hidden = kind !== "chest";
    mammoPart.hidden = kind !== "mammography";
    showError(err, "");
  });

  const submit = h("button", { type: "submit", class: "btn" }, "Upload and analyse");
  const form = cardForm(
    err,
    async () => {
      let promise;
      if (kind === "chest") {
        const file = chestFile.files[0];
        if (!file) return fieldError(err, chestFile, "Choose a chest X-ray image to upload.", false);
        promise = api.uploadChest(file, (f) =>
          prog.set(f < 1 ? f * 100 : null, f < 1 ? `Uploading… ${Math.round(f * 100)}%` : "Analysing the X-ray…"),
        );
      } else {
        const views = [...rows.children]
          .map((r) => ({ file: r.file.files[0], tag: r.tag.value }))
          .filter((v) => v.file);
        if (!views.length) {
          const first = rows.querySelector("input[type=file]");
          return fieldError(err, first, "Choose at least one mammogram view to upload.", false);
        }
        const tags = views.map((v) => v.tag).filter(Boolean);
        if (new Set(tags).size !== tags.length) {
          showError(err, "Each view tag can be used only once.");
          return;
        }
        promise = api.uploadMammogram(views, (f) =>
          prog.set(f * 100, f < 1 ? `Uploading… ${Math.round(f * 100)}%` : "Uploaded. Starting the analysis…"),
        );
      }
      submit.disabled = true;
      prog.set(0, "Uploading…");
      try {
        const { body } = await promise;
        prog.set(100, "Done.");
        location.hash = `#/studies/${body.id}`;
      } catch (ex) {
        prog.hide();
        const title =
          {
            unsupported_format: "Wrong file type",
            invalid_image: "Unreadable image",
            not_a_chest_xray: "Image rejected",
            not_a_mammogram: "Image rejected",
            image_too_large: "File too large",
            payload_too_large: "File too large",
            service_unavailable: "Service unavailable",
            overloaded: "Service busy",
          }[ex.code] || "Upload failed";
        showError(err, api.friendly(ex), title);
        err.setAttribute("tabindex", "-1");
        err.focus();
      } finally {
        submit.disabled = false;
      }
    },
    err,
    kinds,
    chestPart,
    mammoPart,
    prog.wrap,
    h("div", { class: "row submit-row" }, submit),
  );

  fill(el,
    h("h1", {}, "New study"),
    h(
      "p",
      { class: "disclaimer" },
      h("strong", {}, "Screening aid, not a diagnosis. "),
      "IRMI highlights images that may need attention. A clinician must review every result.",
    ),
    form,
  );
}
