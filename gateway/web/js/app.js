// IRMI single-page app: hash routes, the navigation bar, and focus management between screens.

import * as api from "./api.js";
import { clear, fill, h } from "./dom.js";
import * as auth from "./views/auth.js";
import * as upload from "./views/upload.js";
import * as studies from "./views/studies.js";
import * as study from "./views/study.js";
import * as doctors from "./views/doctors.js";
import * as consult from "./views/consultations.js";
import * as admin from "./views/admin.js";
import * as validation from "./views/validation.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");

// [pattern, view, who may see it ("any" | "guest" | "patient" | "doctor" | "admin" | "user"), title]
const ROUTES = [
  [/^\/login$/, auth.renderLogin, "guest", "Log in"],
  [/^\/signup$/, auth.renderSignup, "guest", "Sign up"],
  [/^\/forgot$/, auth.renderForgot, "guest", "Forgotten password"],
  [/^\/reset$/, auth.renderReset, "any", "Choose a new password"],
  [/^\/admin$/, admin.render, "admin", "Doctors to verify"],
  [/^\/site-validation$/, validation.render, "admin", "Site validation"],
  [/^\/upload$/, upload.render, "patient", "New study"],
  [/^\/studies$/, studies.render, "patient", "My studies"],
  [/^\/studies\/([\w-]+)$/, study.render, "user", "Study"],
  [/^\/studies\/([\w-]+)\/share$/, consult.renderShare, "patient", "Ask a doctor"],
  [/^\/doctors$/, doctors.render, "patient", "Doctors"],
  [/^\/consultations$/, consult.renderList, "user", "Consultations"],
  [/^\/consultations\/([\w-]+)$/, consult.renderDetail, "user", "Consultation"],
];

function navLinks(user) {
  if (!user) {
    return [
      ["#/login", "Log in"],
      ["#/signup", "Sign up"],
    ];
  }
  if (user.role === "doctor") return [["#/consultations", "Inbox"]];
  if (user.role === "admin") {
    return [
      ["#/admin", "Doctors to verify"],
      ["#/site-validation", "Site validation"],
    ];
  }
  return [
    ["#/upload", "New study"],
    ["#/studies", "My studies"],
    ["#/doctors", "Doctors"],
    ["#/consultations", "My questions"],
  ];
}

function renderNav() {
  const user = api.currentUser();
  const here = `#${currentPath()}`;
  const items = navLinks(user).map(([href, text]) =>
    h("li", {}, h("a", { href, "aria-current": here === href || here.startsWith(`${href}/`) ? "page" : false }, text)),
  );
  if (user) {
    items.push(h("li", { class: "spacer", "aria-hidden": "true" }));
    const who = user.role === "doctor" ? `Dr. ${user.full_name.replace(/^Dr\.?\s+/i, "")}` : user.full_name;
    items.push(h("li", { class: "who" }, h("span", { class: "visually-hidden" }, "Signed in as "), who));
    items.push(
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            onclick: async () => {
              await api.logout();
              location.hash = "#/login";
            },
          },
          "Log out",
        ),
      ),
    );
  }
  fill(nav, h("ul", {}, items));
}

function currentPath() {
  const path = location.hash.replace(/^#/, "") || "/";
  return path.split("?")[0];
}

export function query() {
  const q = location.hash.split("?")[1] || "";
  return new URLSearchParams(q);
}

let cleanup = null;
let renderToken = 0;

async function route() {
  const path = currentPath();
  const user = api.currentUser();
  if (path === "/") {
    location.replace(user ? api.homeOf(user) : "#/login");
    return;
  }
  const match = ROUTES.map(([re, view, who, title]) => ({ m: path.match(re), view, who, title })).find((r) => r.m);
  if (!match) {
    show(null, "Not found", (el) => {
      el.append(h("h1", { tabindex: "-1" }, "Page not found"), h("p", {}, h("a", { href: "#/" }, "Go to the start page")));
    });
    return;
  }
  if (match.who === "guest" && user) {
    location.replace("#/");
    return;
  }
  if (match.who !== "guest" && match.who !== "any" && !user) {
    sessionStorage.setItem("irmi.next", location.hash);
    location.replace("#/login");
    return;
  }
  if (["patient", "doctor", "admin"].includes(match.who) && user.role !== match.who) {
    show(null, "Not available", (el) => {
      el.append(
        h("h1", { tabindex: "-1" }, "Not available"),
        h("p", {}, `This page is for ${match.who}s.`),
        h("p", {}, h("a", { href: "#/" }, "Go to your start page")),
      );
    });
    return;
  }
  show(match, match.title, (el, token) => match.view(el, match.m.slice(1), { isCurrent: () => token === renderToken }));
}

function show(match, title, fn) {
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* ignore */
    }
  }
  cleanup = null;
  renderToken += 1;
  const token = renderToken;
  document.title = `${title} · IRMI`;
  renderNav();
  const el = clear(main);
  const result = fn(el, token);
  const focusHeading = () => {
    const h1 = main.querySelector("h1");
    if (h1) {
      h1.setAttribute("tabindex", "-1");
      h1.focus({ preventScroll: false });
    }
  };
  Promise.resolve(result)
    .then((fnCleanup) => {
      if (token !== renderToken) {
        if (typeof fnCleanup === "function") fnCleanup();
        return;
      }
      if (typeof fnCleanup === "function") cleanup = fnCleanup;
      if (document.activeElement === document.body || !main.contains(document.activeElement)) focusHeading();
    })
    .catch((err) => {
      if (token !== renderToken) return;
      if (err?.code === "session_expired") {
        location.hash = "#/login";
        return;
      }
      main.append(h("div", { class: "alert error", role: "alert" }, api.friendly(err)));
    });
  focusHeading();
}

api.onSessionChange(() => renderNav());
window.addEventListener("hashchange", route);
route();
