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

const isBrowserImage = (type) => /^image\/(png|jpeg|gif|webp|bmp)$/.test(type || "");

/**
 * The image with a heatmap drawn over it.
 * heatmaps: [{key, label, ref: FileRef}] (FileRef: {url, width, height, covers}); a FileRef's
 * `covers` (ORIGINAL-image pixels) says where it lies; without it, cropBox (optional) places a
 * heatmap that is not the image's size over the crop only. legend (an element) replaces the
 * low-high ramp; toggleLabel names the overlay's switch; shown: whether it starts visible.
 */
export function viewer({ image, heatmaps = [], cropBox = null, alt, legend = null, toggleLabel = "Show heatmap", shown = true }) {
  const base = h("img", { class: "base", alt: alt || "Uploaded image" });
  const overlay = h("img", { class: "overlay", alt: "", "aria-hidden": "true" });
  const frame = h("div", { class: "viewer" }, base, overlay);
  const status = h("p", { class: "small muted", "aria-live": "polite" });
  const toggleId = newId("hm");
  const opacityId = newId("op");
  const toggle = h("input", { type: "checkbox", id: toggleId });
  toggle.checked = shown;
  const opacity = h("input", { type: "range", id: opacityId, min: "0", max: "100", step: "5", value: "60" });
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

  let natural = null;
  const place = () => {
    const ref = current();
    if (!ref || !natural) return;
    // A heatmap says what it covers; one the size of the image covers it; otherwise the crop.
    const sameSize = !ref.width || (ref.width === natural.w && ref.height === natural.h);
    const box = ref.covers || (!sameSize ? cropBox : null);
    if (box && natural.w > 1) {
      overlay.style.left = `${(box.x0 / natural.w) * 100}%`;
      overlay.style.top = `${(box.y0 / natural.h) * 100}%`;
      overlay.style.width = `${((box.x1 - box.x0) / natural.w) * 100}%`;
      overlay.style.height = `${((box.y1 - box.y0) / natural.h) * 100}%`;
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
  toggle.addEventListener("change", apply);
  opacity.addEventListener("input", apply);
  which?.addEventListener("change", loadOverlay);
  base.addEventListener("load", () => {
    natural = { w: base.naturalWidth, h: base.naturalHeight };
    place();
  });
  apply();

  (async () => {
    if (image) {
      try {
        const got = await api.imageUrl(image.url);
        if (isBrowserImage(got.type) || isBrowserImage(image.media_type)) {
          base.src = got.url;
        } else {
          // DICOM: browsers cannot draw it; show the heatmap on its own.
          base.remove();
          frame.prepend(h("p", { class: "no-preview" }, "DICOM image: no preview in the browser. The heatmap is shown alone."));
          natural = { w: 1, h: 1 };
          overlay.style.position = "static";
        }
      } catch (ex) {
        status.textContent = `The image could not be loaded: ${api.friendly(ex)}`;
      }
    }
    await loadOverlay();
  })();

  if (legend && !heatmaps.length) legend.hidden = true;
  return h("div", { class: "viewer-block" }, frame, controls, legend, status);
}

/** A thumbnail (URL or promise of one) fetched with the token, or a placeholder. */
export function thumbnail(url, label) {
  const img = h("img", { class: "thumb", alt: label, loading: "lazy", width: "84", height: "84" });
  const holder = h("div", { class: "thumb placeholder", role: "img", "aria-label": label }, "…");
  Promise.resolve(url)
    .then((u) => {
      if (!u) throw new Error("no image");
      return api.imageUrl(u);
    })
    .then(({ url: src, type }) => {
      if (!isBrowserImage(type)) {
        holder.textContent = "DICOM";
        return;
      }
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
