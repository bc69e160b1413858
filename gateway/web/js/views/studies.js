// The patient's history: newest first, with thumbnails, filterable by kind, paginated.

import * as api from "../api.js";
import { clear, fill, formatDate, h } from "../dom.js";
import { kindName, statusBadge, thumbnail } from "../components.js";
import { resultBadge } from "../wording.js";

const PAGE = 10;

export async function render(el, _params, ctx) {
  const list = h("ul", { class: "list", "aria-label": "Studies" });
  const more = h("button", { type: "button", class: "btn secondary", hidden: true }, "Show older studies");
  const count = h("p", { class: "muted small", "aria-live": "polite" });
  const filter = h(
    "select",
    { id: "kind-filter" },
    h("option", { value: "" }, "All studies"),
    h("option", { value: "chest" }, "Chest X-rays"),
    h("option", { value: "mammography" }, "Mammograms"),
  );
  let offset = 0;

  const item = (s) => {
    const title = `${kindName(s.kind)}, ${formatDate(s.created_at)}`;
    const href = `#/studies/${s.id}`;
    return h(
      "li",
      { class: "study-item" },
      // The list carries its thumbnail's URL (one request draws the page); the image itself is
      // fetched with the access token: images are never served without a check.
      thumbnail(s.thumbnail_url, `Thumbnail of the ${kindName(s.kind).toLowerCase()}`),
      h(
        "div",
        {},
        h("a", { class: "title", href }, title),
        h("p", { class: "row small" }, statusBadge(s.status), s.status === "succeeded" ? resultBadge(s.label, s.category) : null),
      ),
      h("div", { class: "row" }, h("a", { class: "btn secondary", href }, "Open", h("span", { class: "visually-hidden" }, ` ${title}`))),
    );
  };

  const load = async (reset) => {
    if (reset) {
      offset = 0;
      clear(list);
    }
    const page = await api.listStudies({ kind: filter.value || undefined, limit: PAGE, offset });
    if (!ctx.isCurrent()) return;
    for (const s of page.items) list.append(item(s));
    offset += page.items.length;
    more.hidden = offset >= page.total;
    count.textContent = page.total
      ? `${page.total} stud${page.total === 1 ? "y" : "ies"}, newest first.`
      : "";
    if (!page.total) {
      list.append(
        h("li", { class: "empty" }, "No studies yet. ", h("a", { href: "#/upload" }, "Upload your first image")),
      );
    }
  };
  filter.addEventListener("change", () => load(true));
  more.addEventListener("click", () => load(false));

  fill(el,
    h("h1", {}, "My studies"),
    h(
      "div",
      { class: "row" },
      h("label", { for: "kind-filter" }, "Show"),
      h("div", {}, filter),
      h("a", { class: "btn", href: "#/upload" }, "New study"),
    ),
    count,
    list,
    more,
  );
  await load(true);
}
