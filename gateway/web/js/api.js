// The gateway's API, seen from the browser: tokens, the error envelope, and every route the UI
// calls (kept in this one module so that a route change is a one-line edit).

const STORE = window.sessionStorage; // a tab's session only: shared computers are common in clinics
const KEY = "irmi.session";

export class ApiError extends Error {
  constructor(status, code, message, details = {}, retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details || {};
    this.retryAfter = retryAfter;
  }
}

// Error envelope code -> what a patient or doctor should read. Unknown codes show the server's
// own message (it is written for humans too).
const MESSAGES = {
  unsupported_format: "Only PNG, JPEG or DICOM files are accepted.",
  not_a_chest_xray:
    "This is not a valid chest X-ray. Please upload a frontal chest radiograph (PNG, JPEG or DICOM).",
  not_a_mammogram: "This is not a valid mammogram. Please upload mammogram views only.",
  invalid_image: "The file could not be read as an image. It may be damaged or incomplete.",
  image_too_large: "The image is too large. Please upload a smaller image.",
  payload_too_large: "The upload is too large. Please upload smaller images.",
  invalid_view: "Each view tag must be L-CC, R-CC, L-MLO or R-MLO (or left on automatic).",
  service_unavailable:
    "The analysis service is unavailable right now. Your image was not analysed; please try again in a few minutes.",
  overloaded: "The analysis service is busy right now. Please try again in a minute.",
  rate_limited: "Too many attempts. Please wait a moment and try again.",
  network: "Cannot reach the IRMI server. Check your connection and try again.",
  forbidden: "You do not have access to this.",
  not_found: "This item does not exist or is no longer available.",
  processing_failed: "The analysis failed. Please try again, or upload another image.",
};

function formatBytes(n) {
  if (n >= 1024 * 1024) return `${Math.round((n / (1024 * 1024)) * 10) / 10} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n} bytes`;
}

export function friendly(err) {
  if (!(err instanceof ApiError)) return err?.message || "Something went wrong.";
  if (err.code === "rate_limited" && err.retryAfter) {
    const s = Number(err.retryAfter);
    const wait = s >= 120 ? `${Math.ceil(s / 60)} minutes` : `${s} seconds`;
    return `${err.message || MESSAGES.rate_limited} Please try again in ${wait}.`;
  }
  if (err.code === "payload_too_large" || err.code === "image_too_large") {
    const d = err.details || {};
    if (d.max_bytes) return `The file is too large: at most ${formatBytes(d.max_bytes)} per image is accepted.`;
    if (d.width && d.height) return `The image is too large (${d.width} × ${d.height} pixels). Please upload a smaller image.`;
    return MESSAGES[err.code];
  }
  return MESSAGES[err.code] || err.message || "Something went wrong.";
}

// ---------------------------------------------------------------------------- session
let session = null;
try {
  session = JSON.parse(STORE.getItem(KEY) || "null");
} catch {
  session = null;
}
const listeners = new Set();

export function currentUser() {
  return session?.user || null;
}

/** Where a user starts: patients upload, doctors read their inbox, admins verify doctors. */
export function homeOf(user) {
  if (user.role === "doctor") return "#/consultations";
  if (user.role === "admin") return "#/admin";
  return "#/upload";
}

export function onSessionChange(fn) {
  listeners.add(fn);
}

function setSession(next) {
  session = next;
  if (next) STORE.setItem(KEY, JSON.stringify(next));
  else STORE.removeItem(KEY);
  for (const fn of listeners) fn(currentUser());
}

function saveTokens(pair) {
  setSession({
    access: pair.access_token,
    refresh: pair.refresh_token,
    expiresAt: Date.now() + (pair.expires_in || 900) * 1000,
    user: pair.user,
  });
}

// ---------------------------------------------------------------------------- transport
async function envelopeError(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  const e = body?.error || {};
  const code = e.code || (res.status >= 500 ? "service_unavailable" : `http_${res.status}`);
  return new ApiError(
    res.status,
    code,
    e.message || res.statusText,
    e.details,
    res.headers.get("Retry-After"),
  );
}

let refreshing = null;
async function refreshTokens() {
  if (!session?.refresh) return false;
  if (!refreshing) {
    const token = session.refresh;
    refreshing = (async () => {
      try {
        const res = await fetch("/v1/auth/refresh", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ refresh_token: token }),
        });
        if (!res.ok) return false;
        saveTokens(await res.json());
        return true;
      } catch {
        return false;
      } finally {
        setTimeout(() => {
          refreshing = null;
        }, 0);
      }
    })();
  }
  return refreshing;
}

/**
 * fetch() with the access token, one transparent refresh on 401, and the error envelope turned
 * into an ApiError. Returns the Response (ok) so callers read JSON, a blob or a stream.
 */
export async function raw(method, path, { json, form, headers = {}, auth = true, signal } = {}) {
  const attempt = async () => {
    const h = { Accept: "application/json", ...headers };
    let body;
    if (json !== undefined) {
      h["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form) {
      body = form;
    }
    if (auth && session?.access) h.Authorization = `Bearer ${session.access}`;
    try {
      return await fetch(path, { method, headers: h, body, signal, credentials: "same-origin" });
    } catch (e) {
      if (e?.name === "AbortError") throw e;
      throw new ApiError(0, "network", "Network error");
    }
  };
  if (auth && session && session.expiresAt && session.expiresAt - Date.now() < 30_000) {
    await refreshTokens();
  }
  let res = await attempt();
  if (res.status === 401 && auth && session?.refresh) {
    if (await refreshTokens()) res = await attempt();
  }
  if (res.status === 401 && auth && session) {
    const err = await envelopeError(res);
    setSession(null);
    throw new ApiError(401, "session_expired", "Your session has ended. Please log in again.", err.details);
  }
  if (!res.ok) throw await envelopeError(res);
  return res;
}

async function call(method, path, opts) {
  const res = await raw(method, path, opts);
  if (res.status === 204) return null;
  return res.json();
}

/** Upload with real upload progress (fetch has none): XMLHttpRequest, same error handling. */
export function upload(path, form, onProgress) {
  const send = () =>
    new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      xhr.setRequestHeader("Accept", "application/json");
      if (session?.access) xhr.setRequestHeader("Authorization", `Bearer ${session.access}`);
      xhr.upload.onprogress = (ev) => {
        if (ev.lengthComputable && onProgress) onProgress(ev.loaded / ev.total);
      };
      xhr.onerror = () => reject(new ApiError(0, "network", "Network error"));
      xhr.onload = () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText || "null");
        } catch {
          body = null;
        }
        if (xhr.status >= 200 && xhr.status < 300) {
          resolve({ status: xhr.status, body });
          return;
        }
        const e = body?.error || {};
        const code = e.code || (xhr.status >= 500 ? "service_unavailable" : `http_${xhr.status}`);
        reject(
          new ApiError(xhr.status, code, e.message || xhr.statusText, e.details, xhr.getResponseHeader("Retry-After")),
        );
      };
      xhr.send(form);
    });
  return (async () => {
    if (session && session.expiresAt - Date.now() < 60_000) await refreshTokens();
    try {
      return await send();
    } catch (err) {
      if (err.status === 401 && (await refreshTokens())) return send();
      if (err.status === 401) setSession(null);
      throw err;
    }
  })();
}

// ---------------------------------------------------------------------------- images
const blobUrls = new Map();

/** An authorized image as an object URL (img src cannot carry an Authorization header). */
export async function imageUrl(path) {
  if (blobUrls.has(path)) return blobUrls.get(path);
  const res = await raw("GET", path, { headers: { Accept: "image/*" } });
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  blobUrls.set(path, { url, type: blob.type });
  return blobUrls.get(path);
}

/** Save an authorized file (an original, a report) to the user's disk: the browser's
 * download, named by the server's Content-Disposition (or `fallback`). */
export async function download(path, fallback, accept = "*/*") {
  const res = await raw("GET", path, { headers: { Accept: accept } });
  const cd = res.headers.get("Content-Disposition") || "";
  const name = (cd.match(/filename="([^"]+)"/) || [])[1] || fallback;
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
  return name;
}

function forgetImages() {
  for (const { url } of blobUrls.values()) URL.revokeObjectURL(url);
  blobUrls.clear();
}

// ---------------------------------------------------------------------------- routes
export const SPECIALTIES = [
  ["radiology", "Radiology"],
  ["pulmonology", "Pulmonology"],
  ["oncology", "Oncology"],
  ["breast_surgery", "Breast surgery"],
  ["general_practice", "General practice"],
];
export const specialtyName = (s) => (SPECIALTIES.find(([k]) => k === s) || [s, s || "—"])[1];

export const VIEW_TAGS = ["L-CC", "R-CC", "L-MLO", "R-MLO"];

export async function signup(data) {
  return call("POST", "/v1/auth/signup", { json: data, auth: false });
}

export async function login(email, password) {
  const pair = await call("POST", "/v1/auth/login", { json: { email, password }, auth: false });
  saveTokens(pair);
  return pair.user;
}

export async function logout() {
  const token = session?.refresh;
  setSession(null);
  forgetImages();
  if (token) {
    try {
      await fetch("/v1/auth/logout", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: token }),
      });
    } catch {
      /* offline: the session expires on its own */
    }
  }
}

export const me = () => call("GET", "/v1/users/me");

export function uploadChest(file, onProgress) {
  const form = new FormData();
  form.append("file", file, file.name);
  return upload("/v1/studies/chest", form, onProgress);
}

export function uploadMammogram(views, onProgress) {
  const form = new FormData();
  // A tagged view is a part named by its tag; untagged views are repeated "files" parts.
  for (const { file, tag } of views) form.append(tag || "files", file, file.name);
  return upload("/v1/studies/mammography", form, onProgress);
}

export function listStudies({ kind, limit = 20, offset = 0 } = {}) {
  const q = new URLSearchParams({ limit: String(limit), offset: String(offset) });
  if (kind) q.set("kind", kind);
  return call("GET", `/v1/studies?${q}`);
}

export const getStudy = (id) => call("GET", `/v1/studies/${encodeURIComponent(id)}`);
export const getStudyModels = (id) => call("GET", `/v1/studies/${encodeURIComponent(id)}/models`);
export const deleteStudy = (id) => call("DELETE", `/v1/studies/${encodeURIComponent(id)}`);
export const rerunStudy = (id) => call("POST", `/v1/studies/${encodeURIComponent(id)}/rerun`);
export const studyEventsPath = (id) => `/v1/studies/${encodeURIComponent(id)}/events`;

/** One page of doctors (best rated first): {items, total, limit, offset}. */
export function listDoctors(specialty, { limit, offset = 0 } = {}) {
  const params = new URLSearchParams();
  if (specialty) params.set("specialty", specialty);
  if (limit) params.set("limit", String(limit));
  if (offset) params.set("offset", String(offset));
  const q = params.toString();
  return call("GET", `/v1/doctors${q ? `?${q}` : ""}`);
}

export const listConsultations = () => call("GET", "/v1/consultations");
export const getConsultation = (id) => call("GET", `/v1/consultations/${encodeURIComponent(id)}`);
export const askDoctor = (studyId, doctorId, question) =>
  call("POST", "/v1/consultations", { json: { study_id: studyId, doctor_id: doctorId, question } });
export const reply = (id, answer) =>
  call("POST", `/v1/consultations/${encodeURIComponent(id)}/reply`, { json: { answer } });
export const rate = (id, rating) =>
  call("POST", `/v1/consultations/${encodeURIComponent(id)}/rating`, { json: { rating } });
export const revokeAccess = (id) => call("POST", `/v1/consultations/${encodeURIComponent(id)}/revoke`);

// ---------------------------------------------------------------------------- password reset
export const requestReset = (email) =>
  call("POST", "/v1/auth/password-reset", { json: { email }, auth: false });
export const confirmReset = (token, password) =>
  call("POST", "/v1/auth/password-reset/confirm", { json: { token, password }, auth: false });

// ---------------------------------------------------------------------------- admin
export function listDoctorAccounts(status = "pending", { limit = 50, offset = 0 } = {}) {
  const q = new URLSearchParams({ status, limit: String(limit), offset: String(offset) });
  return call("GET", `/v1/admin/doctors?${q}`);
}
export const decideDoctor = (id, decision, reason) =>
  call("POST", `/v1/admin/doctors/${encodeURIComponent(id)}/${decision}`, { json: reason ? { reason } : {} });
export const doctorDecisions = (id) => call("GET", `/v1/admin/doctors/${encodeURIComponent(id)}/decisions`);

/** The logged-in user as the server sees it now (a doctor's verification may have changed). */
export async function refreshMe() {
  const user = await me();
  if (session) setSession({ ...session, user });
  return user;
}
