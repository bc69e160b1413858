// Pieces several screens share: the image viewer with its heatmap overlay, probability bars,
// the disclaimer, study thumbnails.

import * as api from "./api.js";
import { capitalize, h, newId, percent } from "./dom.js";

export function disclaimer(text) {
  const lead = "Screening aid, not a diagnosis";
  let rest = text || "A clinician must review these images and this result.";
  if (rest.toLowerCase().startsWith(lead.toLowerCase())) rest = rest.slice(lead.length).replace(/^[\s:.,-]+/, "");
  rest = rest.charAt(0).toUpperCase() + rest.slice(1);
  return h("div", { class: "disclaimer", role: "note" }, h("strong", {}, `${lead}. `), rest);
}

export function probBars(probs, caption) {
  const entries = Object.entries(probs || {});
  return h(
    "ul",
    { class: "probs", "aria-label": caption || "Probabilities" },
    entries.map(([name, p]) =>
      h(
        "li",
        {},
        h("div", { class: "bar-line" }, h("span", {}, capitalize(name)), h("strong", {}, percent(p))),
        h(
          "div",
          { class: `meter ${name}`, role: "presentation" },
          (() => {
            const s = h("span");
            s.style.width = `${Math.max(0, Math.min(1, Number(p))) * 100}%`;
            return s;
          })(),
        ),
      ),
    ),
  );
}

/** The window presets of a display image (gateway/display.py). */
export const PRESETS = [
  ["file", "As in the file"],
  ["lung", "Lung"],
  ["mammography", "Mammography"],
];

const withPreset = (url, preset) => (preset && preset !== "file" ? `${url}?preset=${preset}` : url);

/**
 * The image with a heatmap drawn over it.
 * image: a StudyImage; its display image (a PNG the gateway renders from any original, DICOM
 * included) is shown, the original only downloaded on request. heatmaps: [{key, label, ref:
 * FileRef}] (FileRef: {url, width, height, covers}); a FileRef's `covers` (pixels of the
 * ORIGINAL, which is imageSize {w, h} when known) says where it lies; without it, cropBox
 * (optional) places a heatmap that is not the image's size over the crop only. legend (an
 * element) replaces the low-high ramp; toggleLabel names the overlay's switch; shown: whether
 * it starts visible; preset: the window it starts at.
 */
export function viewer({ image, heatmaps = [], cropBox = null, imageSize = null, alt, legend = null, toggleLabel = "Show heatmap", shown = true, preset = "file" }) {
  const base = h("img", { class: "base", alt: alt || "Uploaded image", "data-testid": "display-image" });
  const overlay = h("img", { class: "overlay", alt: "", "aria-hidden": "true" });
  const frame = h("div", { class: "viewer" }, base, overlay);
  const status = h("p", { class: "small muted no-print", "aria-live": "polite" });
  const toggleId = newId("hm");
  const opacityId = newId("op");
  const presetId = newId("win");
  const toggle = h("input", { type: "checkbox", id: toggleId });
  toggle.checked = shown;
  const opacity = h("input", { type: "range", id: opacityId, min: "0", max: "100", step: "5", value: "60" });
  const windowSelect = h("select", { id: presetId }, PRESETS.map(([k, label]) => h("option", { value: k }, label)));
  windowSelect.value = preset;
  let which = null;
  const rampEl = h("span", { class: `ramp ${heatmaps[0]?.ramp || "jet"}` });
  const controls = h(
    "div",
    { class: "viewer-controls" },
    h("label", { for: toggleId }, toggle, toggleLabel),
    h("label", { for: opacityId }, "Heatmap opacity", opacity),
    legend ? null : h("span", { class: "legend", "aria-hidden": "true" }, "low", rampEl, "high"),
  );
  if (heatmaps.length > 1) {
    const whichId = newId("which");
    which = h(
      "select",
      { id: whichId },
      heatmaps.map((m) => h("option", { value: m.key }, m.label)),
    );
    controls.prepend(h("label", { for: whichId }, "Heatmap", which));
  }
  if (!heatmaps.length) controls.hidden = true;
  const downloadBtn = h(
    "button",
    {
      type: "button",
      class: "btn secondary small",
      onclick: async (ev) => {
        const btn = ev.currentTarget;
        btn.disabled = true;
        try {
          const name = await api.download(image.url, `original-${image.name}`);
          status.textContent = `Downloaded ${name}.`;
        } catch (ex) {
          status.textContent = `The original could not be downloaded: ${api.friendly(ex)}`;
        } finally {
          btn.disabled = false;
        }
      },
    },
    image?.media_type === "application/dicom" ? "Download the original (DICOM)" : "Download the original",
  );
  const imageControls = h(
    "div",
    { class: "viewer-controls image-controls no-print" },
    h("label", { for: presetId }, "Window", windowSelect),
    image ? downloadBtn : null,
  );

  let natural = null;
  const place = () => {
    const ref = current();
    if (!ref || !natural) return;
    // Positions are in ORIGINAL pixels; the display image is the original scaled down. A
    // heatmap stored before score maps, without `covers`, is the original's size: its own size
    // is the original's when its shape is the image's.
    const fullSize = ref.width && !ref.covers && Math.abs(ref.width / ref.height - natural.w / natural.h) < 0.01;
    const size = imageSize || (fullSize ? { w: ref.width, h: ref.height } : natural);
    const sameSize = !ref.width || (ref.width === size.w && ref.height === size.h);
    const box = ref.covers || (!sameSize ? cropBox : null);
    if (box && size.w > 1) {
      overlay.style.left = `${(box.x0 / size.w) * 100}%`;
      overlay.style.top = `${(box.y0 / size.h) * 100}%`;
      overlay.style.width = `${((box.x1 - box.x0) / size.w) * 100}%`;
      overlay.style.height = `${((box.y1 - box.y0) / size.h) * 100}%`;
    } else {
      overlay.style.left = "0";
      overlay.style.top = "0";
      overlay.style.width = "100%";
      overlay.style.height = "100%";
    }
  };
  const current = () => {
    if (!heatmaps.length) return null;
    const key = which ? which.value : heatmaps[0].key;
    return (heatmaps.find((m) => m.key === key) || heatmaps[0]).ref;
  };
  const apply = () => {
    overlay.hidden = !toggle.checked;
    overlay.style.opacity = String(Number(opacity.value) / 100);
    opacity.disabled = !toggle.checked;
    opacity.setAttribute("aria-valuetext", `${opacity.value}%`);
  };
  const loadOverlay = async () => {
    const ref = current();
    if (!ref) return;
    const entry = heatmaps.find((m) => m.ref === ref);
    rampEl.className = `ramp ${entry?.ramp || "jet"}`;
    try {
      overlay.src = (await api.imageUrl(ref.url)).url;
      place();
    } catch (ex) {
      status.textContent = `The heatmap could not be loaded: ${api.friendly(ex)}`;
    }
  };
  const loadBase = async () => {
    if (!image) return;
    const src = image.display_url || image.url;
    try {
      base.src = (await api.imageUrl(withPreset(src, windowSelect.value))).url;
    } catch (ex) {
      status.textContent = `The image could not be shown: ${api.friendly(ex)}`;
    }
  };
  toggle.addEventListener("change", apply);
  opacity.addEventListener("input", apply);
  which?.addEventListener("change", loadOverlay);
  windowSelect.addEventListener("change", loadBase);
  base.addEventListener("load", () => {
    natural = { w: base.naturalWidth, h: base.naturalHeight };
    place();
  });
  apply();
  (async () => {
    await loadBase();
    await loadOverlay();
  })();

  if (legend && !heatmaps.length) legend.hidden = true;
  return h("div", { class: "viewer-block" }, frame, imageControls, controls, legend, status);
}

/** A thumbnail (the URL of the gateway's small JPEG, or a promise of one) fetched with the
 * token, or a placeholder. */
export function thumbnail(url, label) {
  const img = h("img", { class: "thumb", alt: label, loading: "lazy", width: "84", height: "84" });
  const holder = h("div", { class: "thumb placeholder", role: "img", "aria-label": label }, "…");
  Promise.resolve(url)
    .then((u) => {
      if (!u) throw new Error("no image");
      return api.imageUrl(u);
    })
    .then(({ url: src }) => {
      img.src = src;
      holder.replaceWith(img);
    })
    .catch(() => {
      holder.textContent = "No preview";
    });
  return holder;
}

export const STAGES = {
  queued: "Waiting in the queue",
  decode: "Reading the images",
  orientation: "Checking orientation",
  crop: "Cropping the breast",
  enhance: "Enhancing contrast",
  centers: "Finding regions of interest",
  heatmaps: "Computing heatmaps",
  classify: "Classifying",
  combine: "Combining the views",
};

export function kindName(kind) {
  return kind === "mammography" ? "Mammogram" : "Chest X-ray";
}

export function statusBadge(status) {
  const text = { queued: "Queued", running: "Analysing", succeeded: "Done", failed: "Failed" }[status] || status;
  return h("span", { class: `badge ${status}` }, text);
}
