// Doctors by specialty, best rated first.

import * as api from "../api.js";
import { clear, fill, h, stars } from "../dom.js";

const PAGE = 20;

export function doctorCard(d, action) {
  return h(
    "li",
    { class: "doctor-item" },
    h(
      "div",
      {},
      h("p", { class: "title" }, h("strong", {}, d.full_name)),
      h("p", { class: "small muted" }, api.specialtyName(d.specialty), d.licence_number ? ` · Licence ${d.licence_number}` : ""),
      stars(d.rating, d.ratings_count),
    ),
    action || null,
  );
}

export async function render(el, _params, ctx) {
  const select = h(
    "select",
    { id: "specialty-filter" },
    h("option", { value: "" }, "All specialties"),
    api.SPECIALTIES.map(([v, t]) => h("option", { value: v }, t)),
  );
  const list = h("ul", { class: "list", "aria-label": "Doctors", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "btn secondary", hidden: true }, "Show more doctors");
  let shown = 0;
  const load = async (reset = true) => {
    const page = await api.listDoctors(select.value || undefined, { limit: PAGE, offset: reset ? 0 : shown });
    if (!ctx.isCurrent()) return;
    if (reset) {
      clear(list);
      shown = 0;
    }
    if (!page.total) list.append(h("li", { class: "empty" }, "No doctors in this specialty yet."));
    for (const d of page.items) list.append(doctorCard(d));
    shown += page.items.length;
    more.hidden = shown >= page.total;
  };
  select.addEventListener("change", () => load(true));
  more.addEventListener("click", () => load(false));
  fill(el,
    h("h1", {}, "Doctors"),
    h(
      "p",
      { class: "muted" },
      "Doctors who review IRMI studies, best rated first. To ask one of them about a result, open the study and choose “Ask a doctor”.",
    ),
    h("div", { class: "field" }, h("label", { for: "specialty-filter" }, "Specialty"), select),
    list,
    more,
  );
  await load();
}
