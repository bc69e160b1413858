// Log in and sign up (patient or doctor; a doctor also gives a specialty and a licence number),
// and the forgotten-password pair: ask for a link, then choose a new password with it.

import * as api from "../api.js";
import { alertBox, cardForm, field, fieldError, h, radioChoices, showError } from "../dom.js";

function afterLogin(user) {
  const next = sessionStorage.getItem("irmi.next");
  sessionStorage.removeItem("irmi.next");
  location.hash = next && next !== "#/login" ? next : api.homeOf(user);
}

const validEmail = (value) => /^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(value.trim());
const strongPassword = (value) => value.length >= 10 && /[A-Za-z]/.test(value) && /\d/.test(value);
const WEAK_PASSWORD = "The password needs at least 10 characters, with at least one letter and one digit.";

/** The narrow column these screens share, under its heading. */
const narrow = (title, ...children) => h("div", { class: "narrow" }, h("h1", {}, title), children);

function busy(button, on, text) {
  button.disabled = on;
  if (text) button.textContent = text;
}

export function renderLogin(el) {
  const err = alertBox();
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", class: "btn block" }, "Log in");
  const form = cardForm(
    err,
    async () => {
      if (!email.value.trim() || !password.value) {
        const missing = email.value.trim() ? password : email;
        return fieldError(err, missing, "Enter your e-mail address and your password.", false);
      }
      busy(submit, true, "Logging in…");
      try {
        afterLogin(await api.login(email.value.trim(), password.value));
      } catch (ex) {
        showError(err, ex.status === 401 ? "Wrong e-mail or password." : api.friendly(ex));
        password.value = "";
        password.focus();
      } finally {
        busy(submit, false, "Log in");
      }
    },
    err,
    field("E-mail", email),
    field("Password", password),
    submit,
  );
  el.append(
    narrow(
      "Log in to IRMI",
      h("p", { class: "muted" }, "Chest X-ray and mammogram screening, reviewed with your doctor."),
      form,
      h("p", {}, h("a", { href: "#/forgot" }, "Forgot your password?")),
      h("p", {}, "New here? ", h("a", { href: "#/signup" }, "Create an account")),
    ),
  );
}

export function renderSignup(el) {
  const err = alertBox();
  const roles = radioChoices("I am a", "role", [
    ["patient", "Patient"],
    ["doctor", "Doctor"],
  ]);
  const name = h("input", { type: "text", name: "full_name", autocomplete: "name", required: true });
  const email = h("input", { type: "email", name: "email", autocomplete: "email", required: true });
  const password = h("input", {
    type: "password",
    name: "password",
    autocomplete: "new-password",
    required: true,
    minlength: "10",
  });
  const specialty = h(
    "select",
    { name: "specialty" },
    h("option", { value: "" }, "Choose your specialty"),
    api.SPECIALTIES.map(([v, t]) => h("option", { value: v }, t)),
  );
  const licence = h("input", { type: "text", name: "licence_number", autocomplete: "off" });
  const doctorFields = h(
    "div",
    { hidden: true },
    field("Specialty", specialty),
    field("Licence number", licence, "Your medical registration number, e.g. GMC-1234567."),
    h(
      "p",
      { class: "alert info" },
      "An administrator checks your licence before patients can find you or share studies with you.",
    ),
  );
  const isDoctor = () => roles.querySelector("input:checked")?.value === "doctor";
  roles.addEventListener("change", () => {
    doctorFields.hidden = !isDoctor();
    specialty.required = isDoctor();
    licence.required = isDoctor();
  });
  const submit = h("button", { type: "submit", class: "btn block" }, "Create account");

  const invalid = (input, message) => fieldError(err, input, message);

  const form = cardForm(
    err,
    async () => {
      for (const i of form.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
      const doctor = isDoctor();
      if (!name.value.trim()) return invalid(name, "Enter your full name.");
      if (!validEmail(email.value)) return invalid(email, "Enter a valid e-mail address.");
      if (!strongPassword(password.value)) return invalid(password, WEAK_PASSWORD);
      if (doctor && !specialty.value) return invalid(specialty, "Choose your specialty.");
      if (doctor && licence.value.trim().length < 3) return invalid(licence, "Enter your licence number.");
      const data = {
        role: doctor ? "doctor" : "patient",
        full_name: name.value.trim(),
        email: email.value.trim(),
        password: password.value,
      };
      if (doctor) {
        data.specialty = specialty.value;
        data.licence_number = licence.value.trim();
      }
      busy(submit, true, "Creating account…");
      try {
        await api.signup(data);
        afterLogin(await api.login(data.email, data.password));
      } catch (ex) {
        const f = ex.details?.field;
        if (f === "password") password.setAttribute("aria-invalid", "true");
        showError(err, ex.code === "conflict" ? "An account with this e-mail already exists. Log in instead." : api.friendly(ex));
      } finally {
        busy(submit, false, "Create account");
      }
    },
    err,
    roles,
    field("Full name", name),
    field("E-mail", email),
    field("Password", password, "At least 10 characters, with a letter and a digit."),
    doctorFields,
    submit,
  );
  el.append(
    narrow(
      "Create your IRMI account",
      form,
      h("p", {}, "Already registered? ", h("a", { href: "#/login" }, "Log in")),
    ),
  );
}

export function renderForgot(el) {
  const err = alertBox();
  const done = h("div", { class: "alert ok", role: "status", "aria-live": "polite" });
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const submit = h("button", { type: "submit", class: "btn block" }, "Send me a reset link");
  const form = cardForm(
    err,
    async () => {
      if (!validEmail(email.value)) return fieldError(err, email, "Enter a valid e-mail address.", false);
      busy(submit, true, "Sending…");
      try {
        const r = await api.requestReset(email.value.trim());
        done.textContent = `${r.message} Check your inbox (and spam folder); the link works once, for 30 minutes.`;
      } catch (ex) {
        showError(err, api.friendly(ex));
      } finally {
        busy(submit, false, "Send me a reset link");
      }
    },
    err,
    done,
    field("E-mail", email, "The address you log in with."),
    submit,
  );
  el.append(
    narrow(
      "Forgotten password",
      h("p", { class: "muted" }, "We send a link to choose a new password to your e-mail address."),
      form,
      h("p", {}, h("a", { href: "#/login" }, "Back to log in")),
    ),
  );
}

export function renderReset(el) {
  const q = new URLSearchParams(location.hash.split("?")[1] || "");
  const token = q.get("token") || "";
  // Keep the one-time token out of the address bar and the history.
  history.replaceState(null, "", `${location.pathname}#/reset`);
  const err = alertBox();
  const password = h("input", {
    type: "password",
    name: "password",
    autocomplete: "new-password",
    required: true,
    minlength: "10",
  });
  const submit = h("button", { type: "submit", class: "btn block" }, "Set the new password");
  const box = narrow("Choose a new password");
  if (!token) {
    box.append(
      h("p", { class: "alert error", role: "alert" }, "This page needs the link from the e-mail."),
      h("p", {}, h("a", { href: "#/forgot" }, "Ask for a new link")),
    );
    el.append(box);
    return;
  }
  const form = cardForm(
    err,
    async () => {
      if (!strongPassword(password.value)) return fieldError(err, password, WEAK_PASSWORD, false);
      busy(submit, true, "Saving…");
      try {
        await api.confirmReset(token, password.value);
        await api.logout();
        form.replaceWith(
          h(
            "div",
            { class: "alert ok", role: "status" },
            "Your password is changed, and every device was logged out. ",
            h("a", { href: "#/login" }, "Log in with the new password"),
          ),
        );
      } catch (ex) {
        showError(
          err,
          ex.code === "bad_request" ? "This link is invalid, used or expired. Ask for a new one." : api.friendly(ex),
        );
        busy(submit, false, "Set the new password");
      }
    },
    err,
    field("New password", password, "At least 10 characters, with a letter and a digit."),
    submit,
  );
  box.append(form, h("p", {}, h("a", { href: "#/forgot" }, "Ask for a new link")));
  el.append(box);
}
