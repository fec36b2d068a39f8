// The service-window console (经办窗口): a clerk binds, unbinds, limits, pauses and resumes
// bindings, files a grantor's "not me" dispute and looks up consumption for people at the counter. Plain ES module, no framework, no build step; it speaks only to the
// gateway's /v1 API with the clerk's bearer token (kept in sessionStorage, never in the URL).
// Every value from the API is written with textContent (never as HTML), ID numbers are shown
// masked as the API returns them, and nothing about a person is written to the browser console.

import { REGIONS, TEXTS } from "./texts.js";

const TOKEN_KEY = "fma.console.token";
const LANG_KEY = "fma.console.lang";
const SCREENS = ["lookup", "create", "consumption", "disputes", "audit"];
const AUDIT_PAGE_SIZE = 50;
const AUDIT_REFRESH_MS = 5000;     // the audit projection lags the action by a moment
const POLL_MS = 1000, POLL_TRIES = 60;
const CONSUMPTION_PAGE_SIZE = 200, CONSUMPTION_MAX_PAGES = 50;

const $ = (id) => document.getElementById(id);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

const state = {
  lang: localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh",
  token: null,
  me: null,
  screen: "signin",
  status: null,
  errors: {},
  lookup: null,        // {id, name, person, bindings}
  create: { digest: null, digestNote: null, pending: null, result: null },
  consumption: null,   // {person, view}
  disputes: { grantor: null, listed: null, opened: null },
  audit: { page: 1, data: null },
  dialog: null,        // the binding a dialog acts on, and what it needs
};

// -- words ----------------------------------------------------------------------------------------
// The platform's own rules and words, written once in its shared kernel and served by the gateway
// (GET /console/catalogue.json, read at start): a monthly limit's bounds, and each refusal's words.
const catalogue = { monthly_limit: { min: "0.00", max: "", pattern: "^$" }, refusals: {} };

async function loadCatalogue() {
  const response = await fetch("/console/catalogue.json", { cache: "no-store", credentials: "omit" });
  if (!response.ok) throw new Error(`catalogue: ${response.status}`);
  Object.assign(catalogue, await response.json());
}

const M = (key, vars = {}) => ({ key, vars });

// Messages that are a refusal's own words: read from the catalogue, never copied into texts.js.
const REFUSAL_WORDS = { "v.id": "INVALID_ID_NUMBER", "v.phone": "INVALID_PHONE", "lookup.unknown": "UNKNOWN_PERSON",
                        "e.500": "PLATFORM_ERROR" };

function t(key, vars = {}) {
  const refusal = catalogue.refusals[REFUSAL_WORDS[key]];
  const text = (refusal && (refusal[state.lang] || refusal.zh)) ?? TEXTS[state.lang][key] ?? TEXTS.zh[key] ?? key;
  const all = { limit_min: catalogue.monthly_limit.min, limit_max: catalogue.monthly_limit.max, ...vars };
  return text.replace(/\{(\w+)\}/g, (_, name) => String(all[name] ?? ""));
}

/** A message: a text key, or the platform's own words in both languages. */
function say(message) {
  if (!message) return "";
  if (message.key) return t(message.key, message.vars);
  return (state.lang === "en" ? message.en || message.zh : message.zh || message.en) || "";
}

function regionName(code, fallback) {
  const row = REGIONS.find(([c]) => c === code);
  if (!row) return fallback || code || "";
  return state.lang === "en" ? row[2] : row[1];
}

const relationName = (r) => (TEXTS.zh[`rel.${r}`] ? t(`rel.${r}`) : r);
const orderName = (n) => t(`order.${n}`);

// -- dates in China time, as the platform counts them ---------------------------------------------
function chinaDay(offsetDays = 0) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit",
                                            day: "2-digit" }).format(new Date(Date.now() + offsetDays * 86400000));
}

function yearLater(day) {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCFullYear(d.getUTCFullYear() + 1);
  d.setUTCDate(d.getUTCDate() - 1);
  return d.toISOString().slice(0, 10);
}

function chinaTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso || "";
  return new Intl.DateTimeFormat("sv-SE", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit",
                                            day: "2-digit", hour: "2-digit", minute: "2-digit",
                                            second: "2-digit" }).format(d);
}

// -- ID numbers (GB 11643) ------------------------------------------------------------------------
const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

function normalId(value) {
  return value.replace(/\s+/g, "").toUpperCase();
}

function validId(id) {
  if (!/^\d{17}[\dX]$/.test(id)) return false;
  const sum = WEIGHTS.reduce((acc, w, i) => acc + w * Number(id[i]), 0);
  return "10X98765432"[sum % 11] === id[17];
}

/** Whether a full ID number is the one a masked number (610***********0018) shows. */
function matchesMasked(id, masked) {
  if (!masked || id.length !== masked.length) return false;
  return [...masked].every((c, i) => c === "*" || c.toUpperCase() === id[i]);
}

// -- the API ----------------------------------------------------------------------------------------
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json, application/problem+json" };
  const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    return { status: 0, ok: false, data: null };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.status === 401 && state.me) signOut(M("signin.expired"));
  return { status: response.status, ok: response.ok, data, path, retryAfter: response.headers.get("Retry-After") };
}

/** A command answered 202 is still being decided: ask for its outcome until there is one. */
async function decided(res) {
  if (res.status !== 202 || !res.data?.command_id) return res;
  const location = `/v1/commands/${encodeURIComponent(res.data.command_id)}`;
  for (let i = 0; i < POLL_TRIES; i++) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    const answer = await api("GET", location);
    if (answer.status === 200) {
      if (answer.data.status === "rejected") {
        return { status: 422, ok: false, data: { ...answer.data.outcome, command_id: answer.data.command_id } };
      }
      return answer;
    }
    if (answer.status !== 404) return answer;
  }
  return res;
}

/** What went wrong, in the platform's words when it gave some. */
function problemOf(res) {
  const d = res.data || {};
  if (res.status === 0) return M("e.network");
  if (d.message_zh || d.message_en) return { zh: d.message_zh, en: d.message_en };
  if (res.status === 429) return M("e.429", { seconds: res.retryAfter || "1" });
  if ((res.status === 404 || res.status === 405) && !d.reason_code && res.path && !res.path.includes("/commands/")) {
    return M("e.no_api", { path: res.path.split("?")[0].replace(/\d{17}[\dXx]/g, "…") });
  }
  if ([403, 404, 500, 502, 503, 504].includes(res.status)) {
    return { zh: TEXTS.zh[`e.${res.status}`], en: `${TEXTS.en[`e.${res.status}`]}${d.detail ? ` ${d.detail}` : ""}` };
  }
  return M("e.other", { status: res.status });
}

// -- errors beside the fields they concern ----------------------------------------------------------
// A slot X is a control (or fieldset) with id X and its message <p id="X-error">.
function showErrors(form, list) {
  if (!state.me && form !== "signin") return;   // signed out meanwhile (an expired token): nothing to show
  state.errors[form] = list;
  paintErrors(form);
  if (list.length) focusSlot(list[0].slot);
}

function paintErrors(form) {
  const root = $(`screen-${form}`) || $(`${form}-dialog`) || document;
  for (const p of $$(".field-error, .form-error", root)) p.textContent = "";
  for (const c of $$("[aria-invalid]", root)) c.removeAttribute("aria-invalid");
  for (const { slot, message } of state.errors[form] || []) {
    const p = $(`${slot}-error`);
    if (p) p.textContent = say(message);
    const control = $(slot);
    if (control && control.matches("input, select")) control.setAttribute("aria-invalid", "true");
  }
}

function focusSlot(slot) {
  const el = slot === "create-dates" ? $("create-start") : $(slot);
  if (!el) return;
  const target = el.matches("fieldset") ? el.querySelector("input, select") : el;
  if (target && target.matches("input, select, button, textarea")) target.focus();
  else if (el.matches("p")) el.scrollIntoView({ block: "center" });
}

function announce(message) {
  state.status = message;
  $("status").textContent = say(message);
}

function busy(form, on) {
  const el = $(form);
  el.setAttribute("aria-busy", on ? "true" : "false");
  for (const b of $$("button[type=submit]", el)) b.disabled = on;
}

// -- sign-in ----------------------------------------------------------------------------------------
async function signIn(raw) {
  const token = raw.trim().replace(/^Bearer\s+/i, "");
  if (!token) return showErrors("signin", [{ slot: "signin-token", message: M("signin.empty") }]);
  state.token = token;
  busy("signin-form", true);
  const res = await api("GET", "/v1/me");
  busy("signin-form", false);
  let refusal = null;
  if (res.status === 401) refusal = M("signin.invalid");
  else if (!res.ok) refusal = problemOf(res);
  else if (!["window", "supervisor"].includes(res.data.role)) refusal = M("signin.not_window");
  if (refusal) {
    state.token = null;
    return showErrors("signin", [{ slot: "signin-token", message: refusal }]);
  }
  state.me = res.data;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("signin-token").value = "";
  showErrors("signin", []);
  announce(M("signin.welcome", { clerk: state.me.clerk_id }));
  renderAll();
  if (!SCREENS.includes(location.hash.slice(1))) location.hash = "#lookup";
  route(true);
}

function signOut(why) {
  state.token = null;
  state.me = null;
  sessionStorage.removeItem(TOKEN_KEY);
  // Nothing about the people served stays on the page for the next clerk.
  state.lookup = state.consumption = null;
  state.disputes = { grantor: null, listed: null, opened: null };
  state.audit = { page: 1, data: null };
  state.create = { digest: null, digestNote: null, pending: null, result: null };
  state.errors = {};
  for (const form of $$("form")) form.reset();
  dateDefaults();
  for (const d of $$("dialog")) if (d.open) d.close();
  renderAll();
  if (why) showErrors("signin", [{ slot: "signin-token", message: why }]);
  route(true);
}

function renderWho() {
  const me = state.me;
  $("who").hidden = $("tabs").hidden = $("sign-out").hidden = !me;
  if (!me) return;
  $("who-clerk").textContent = me.clerk_id || "";
  $("who-region").textContent = regionName(me.region, me.region_name);
  $("who-role").textContent = t(`role.${me.role}`);
  $("print-who").textContent = t("print.who", { clerk: me.clerk_id, region: regionName(me.region, me.region_name),
                                               at: chinaTime(new Date().toISOString()) });
}

// -- screens ----------------------------------------------------------------------------------------
function route(focus) {
  const asked = location.hash.slice(1);
  const screen = state.me ? (SCREENS.includes(asked) ? asked : "lookup") : "signin";
  state.screen = screen;
  for (const s of $$(".screen")) s.hidden = s.id !== `screen-${screen}`;
  for (const a of $$("#tabs a")) {
    if (a.getAttribute("href") === `#${screen}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.body.dataset.screen = screen;
  if (screen === "audit" && state.me) loadAudit(state.audit.page);
  if (focus) {
    const first = $(`screen-${screen}`).querySelector("input:not([type=hidden]), select");
    (first || $(`${screen}-h`)).focus();
  }
}

// -- 1. look up a person ----------------------------------------------------------------------------
async function lookUp() {
  const id = normalId($("lookup-id").value);
  const name = $("lookup-name").value.trim();
  if (!validId(id)) return showErrors("lookup", [{ slot: "lookup-id", message: M(id ? "v.id" : "v.required") }]);
  showErrors("lookup", []);
  busy("lookup-form", true);
  try {
    const res = await api("POST", "/v1/person-lookups", { id_number: id, name: name || null });
    if (!res.ok || res.data.registered === false) {
      state.lookup = null;
      renderLookup();
      const unknown = res.data?.reason_code === "UNKNOWN_PERSON" || res.data?.registered === false;
      return showErrors("lookup", [{ slot: "lookup-id", message: unknown ? M("lookup.unknown") : problemOf(res) }]);
    }
    state.lookup = { id, name, person: res.data, bindings: [] };
    await refreshBindings();
  } finally {
    busy("lookup-form", false);
  }
}

async function refreshBindings() {
  const L = state.lookup;
  const res = await api("GET", `/v1/persons/${encodeURIComponent(L.id)}/bindings`);
  if (res.ok) L.bindings = res.data.bindings;
  else showErrors("lookup", [{ slot: "lookup", message: problemOf(res) }]);
  renderLookup();
}

function bindingStatus(b) {
  if (b.status !== "active") return b.status === "revoked" ? "revoked" : b.status;
  const today = chinaDay();
  if (b.end_date < today) return "ended";
  if (b.paused) return "paused";
  if (b.start_date > today) return "future";
  return "active";
}

/** A yuan string as a clerk reads it. A balance may be below zero (never clamped): its minus stays
 *  in front of the whole amount ("-40.00 元", "-¥40.00"), never between the currency and the digits. */
function yuan(amount) {
  const text = String(amount);
  const negative = text.startsWith("-");
  const shown = t("p.yuan", { amount: negative ? text.slice(1) : text });
  return negative ? `-${shown}` : shown;
}

const isNegative = (amount) => String(amount ?? "").startsWith("-");
const yuanOrNone = (amount) => (amount == null ? t("b.no_limit") : yuan(amount));

function facts(dl, rows) {
  dl.replaceChildren();
  for (const [label, value, cls] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = value;
    if (cls) dd.className = cls;
    dl.append(dt, dd);
  }
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.append(td);
  return td;
}

function button(text, onClick, cls) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (cls) b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

function renderLookup() {
  const L = state.lookup;
  $("lookup-result").hidden = !L;
  if (!L) return;
  const p = L.person;
  const verified = p.name_verified === true;
  let nameText = t("p.name_unverified"), nameClass = "warn";
  if (verified) [nameText, nameClass] = [t("p.name_verified", { name: L.name }), "ok"];
  else if (p.name_verified === false) nameText = t("p.name_mismatch");
  let balance = t("p.balance_hidden"), balanceClass = verified ? "" : "muted";
  if (verified) balance = p.balance != null ? yuan(p.balance) : t("p.balance_none");
  if (verified && isNegative(p.balance)) [balance, balanceClass] = [t("p.balance_negative", { balance }), "negative"];
  facts($("lookup-facts"), [
    [t("p.id"), p.person_id],
    [t("p.registered"), t(p.registered === false ? "p.registered_no" : "p.registered_yes")],
    [t("p.region"), regionName(p.region, p.region_name)],
    [t("p.scheme"), p.scheme ? t(`scheme.${p.scheme}`) : ""],
    [t("p.name"), nameText, nameClass],
    [t("p.balance"), balance, balanceClass],
  ]);
  $("lookup-consumption").hidden = !(verified && L.bindings.some((b) => b.role === "grantor"));
  $("lookup-disputes").hidden = !L.bindings.some((b) => b.role === "grantor");
  const table = $("lookup-bindings");
  const body = table.querySelector("tbody");
  body.replaceChildren();
  for (const b of L.bindings) {
    const tr = document.createElement("tr");
    tr.dataset.bindingId = b.binding_id;
    const status = bindingStatus(b);
    cell(tr, t(`b.${b.role}`));
    cell(tr, b.counterpart_id, "mono");
    cell(tr, relationName(b.relation));
    cell(tr, String(b.payment_order), "num");
    cell(tr, t("b.date_range", { start: b.start_date, end: b.end_date }));
    cell(tr, TEXTS.zh[`b.${status}`] ? t(`b.${status}`) : status, `status-${status}`);
    cell(tr, yuanOrNone(b.monthly_limit), "num limit");
    cell(tr, b.binding_id, "mono small");
    const actions = cell(tr, "", "actions");
    if (["active", "future", "paused"].includes(status)) {
      actions.append(button(t("b.change_order"), () => openOrder(b), "secondary"));
      if (b.role === "grantor") {   // the grantor's own decisions: the person looked up is the grantor
        actions.append(button(t("b.set_limit"), () => openLimit(b), "secondary"),
                       b.paused ? button(t("b.resume"), () => openPause(b, "resume"), "secondary")
                                : button(t("b.pause"), () => openPause(b, "pause"), "secondary"));
      }
      actions.append(button(t("b.revoke"), () => openRevoke(b), "danger"));
    }
    body.append(tr);
  }
  table.hidden = L.bindings.length === 0;
  $("lookup-no-bindings").hidden = L.bindings.length !== 0;
}

// -- 3. revoke (confirmed in a dialog) --------------------------------------------------------------
function bindingFacts(b) {
  const L = state.lookup;
  const [grantor, beneficiary] = b.role === "grantor" ? [L.person.person_id, b.counterpart_id]
                                                      : [b.counterpart_id, L.person.person_id];
  return { grantor, beneficiary, rows: [
    [t("b.id"), b.binding_id], [t("b.grantor"), grantor], [t("b.beneficiary"), beneficiary],
    [t("b.relation"), relationName(b.relation)], [t("b.order"), orderName(b.payment_order)],
    [t("b.dates"), t("b.date_range", { start: b.start_date, end: b.end_date })]] };
}

function openRevoke(b) {
  state.dialog = { kind: "revoke", binding: b };
  $("revoke-form").reset();
  showErrors("revoke", []);
  renderRevoke();
  $("revoke-dialog").showModal();
  (b.role === "grantor" ? $("revoke-cancel") : $("revoke-grantor")).focus();
}

function renderRevoke() {
  const d = state.dialog;
  if (!d || d.kind !== "revoke") return;
  const { grantor, rows } = bindingFacts(d.binding);
  facts($("revoke-facts"), rows);
  const known = d.binding.role === "grantor";    // the person looked up is the grantor
  $("revoke-grantor").hidden = known;
  $("revoke-grantor-field").querySelector("label").hidden = known;
  $("revoke-grantor-hint").textContent = known ? t("revoke.grantor_known", { masked: grantor })
                                               : t("revoke.check", { masked: grantor });
}

async function confirmRevoke() {
  const b = state.dialog.binding;
  const { grantor } = bindingFacts(b);
  const requested = b.role === "grantor" ? state.lookup.id : normalId($("revoke-grantor").value);
  if (!validId(requested) || !matchesMasked(requested, grantor)) {
    const message = validId(requested) ? M("v.not_that_person", { masked: grantor }) : M(requested ? "v.id" : "v.required");
    return showErrors("revoke", [{ slot: "revoke-grantor", message }]);
  }
  busy("revoke-form", true);
  const res = await decided(await api("POST", `/v1/bindings/${encodeURIComponent(b.binding_id)}/revocation`,
                                      { requested_by: requested }));
  busy("revoke-form", false);
  if (!res.ok) return showErrors("revoke", [{ slot: "revoke", message: problemOf(res) }]);
  $("revoke-dialog").close();
  state.dialog = null;
  announce(M("revoke.done", { id: b.binding_id }));
  await refreshBindings();
}

// -- 8. a monthly limit, and 9. pause or resume (the grantor looked up; confirmed in a dialog) -----------
function openLimit(b) {
  state.dialog = { kind: "limit", binding: b };
  $("limit-form").reset();
  $("limit-amount").value = b.monthly_limit ?? "";
  showErrors("limit", []);
  renderLimit();
  $("limit-dialog").showModal();
  $("limit-amount").focus();
}

function renderLimit() {
  const d = state.dialog;
  if (!d || d.kind !== "limit") return;
  facts($("limit-facts"), [...bindingFacts(d.binding).rows, [t("limit.current"), yuanOrNone(d.binding.monthly_limit)]]);
  $("limit-clear").disabled = d.binding.monthly_limit == null;
}

async function confirmLimit(clear = false) {
  const b = state.dialog.binding;
  const amount = $("limit-amount").value.trim();
  const bounds = catalogue.monthly_limit;
  if (!clear && (!new RegExp(bounds.pattern).test(amount) || Number(amount) < Number(bounds.min)
                 || Number(amount) > Number(bounds.max))) {
    return showErrors("limit", [{ slot: "limit-amount", message: M(amount ? "v.limit" : "v.required") }]);
  }
  const limit = clear ? null : amount;
  await grantorCommand("limit", "PUT", `/v1/bindings/${encodeURIComponent(b.binding_id)}/limit`,
                       { monthly_limit: limit }, (res) => {
    const set = res.data.outcome?.monthly_limit ?? limit;
    return set == null ? M("limit.cleared", { id: b.binding_id })
                       : M("limit.done", { id: b.binding_id, limit: yuan(set) });
  }, { INVALID_LIMIT: "limit-amount" });
}

function openPause(b, kind) {
  state.dialog = { kind, binding: b };
  showErrors("pause", []);
  renderPause();
  $("pause-dialog").showModal();
  $("pause-cancel").focus();          // the safe choice has the focus
}

function renderPause() {
  const d = state.dialog;
  if (!d || !["pause", "resume"].includes(d.kind)) return;
  $("pause-h").textContent = t(`${d.kind}.title`);
  $("pause-warning").textContent = t(`${d.kind}.warning`);
  const confirm = $("pause-confirm");
  confirm.textContent = t(`${d.kind}.confirm`);
  confirm.className = d.kind === "pause" ? "danger" : "";
  facts($("pause-facts"), [...bindingFacts(d.binding).rows, [t("b.limit"), yuanOrNone(d.binding.monthly_limit)]]);
}

async function confirmPause() {
  const { kind, binding: b } = state.dialog;
  await grantorCommand("pause", "POST", `/v1/bindings/${encodeURIComponent(b.binding_id)}/${kind}`, {},
                       () => M(`${kind}.done`, { id: b.binding_id }));
}

/** A command the grantor looked up gives on one of his or her bindings, from a dialog. */
async function grantorCommand(form, method, path, body, done, slots = {}) {
  busy(`${form}-form`, true);
  const res = await decided(await api(method, path, { ...body, requested_by: state.lookup.id }));
  busy(`${form}-form`, false);
  if (!res.ok) {
    const slot = slots[res.data?.reason_code] || form;
    return showErrors(form, [{ slot, message: problemOf(res) }]);
  }
  $(`${form}-dialog`).close();
  state.dialog = null;
  announce(done(res));
  await refreshBindings();
}

// -- 4. change the payment order (the swap shown first) ---------------------------------------------
function openOrder(b) {
  const lookedUpGrantor = b.role === "grantor";
  state.dialog = { kind: "order", binding: b, target: b.payment_order === 1 ? 2 : 1, siblings: null };
  if (!lookedUpGrantor) {
    // The person looked up is the beneficiary: his or her bindings are all on screen.
    state.dialog.siblings = state.lookup.bindings.filter((x) => x.role === "beneficiary");
  }
  $("order-form").reset();
  showErrors("order", []);
  renderOrder();
  $("order-dialog").showModal();
  $("order-person").focus();
}

function swapOf(d) {
  const b = d.binding;
  const other = d.siblings.find((x) => x.binding_id !== b.binding_id && x.status === "active"
    && x.payment_order === d.target && x.start_date <= b.end_date && b.start_date <= x.end_date
    && x.end_date >= chinaDay());
  return other || null;
}

function renderOrder() {
  const d = state.dialog;
  if (!d || d.kind !== "order") return;
  const b = d.binding;
  const lookedUpGrantor = b.role === "grantor";
  const { grantor } = bindingFacts(b);
  $("order-person-label").textContent = t(lookedUpGrantor ? "order.beneficiary_label" : "order.grantor_label");
  $("order-person-hint").textContent = t("order.check", { masked: b.counterpart_id });
  $("order-preview").hidden = !lookedUpGrantor;
  const box = $("order-swap");
  box.replaceChildren();
  $("order-confirm").disabled = !d.siblings;
  if (!d.siblings) return;
  const head = document.createElement("p");
  head.textContent = t("order.swap_head");
  const list = document.createElement("ul");
  list.className = "swap";
  const line = (text, cls) => {
    const li = document.createElement("li");
    li.textContent = text;
    li.className = cls;
    list.append(li);
  };
  line(t("order.this", { id: b.binding_id, grantor, from: b.payment_order, to: d.target }), "moves");
  const other = swapOf(d);
  if (other) {
    line(t("order.other", { id: other.binding_id, grantor: other.counterpart_id, from: other.payment_order,
                            to: b.payment_order }), "moves");
  } else {
    line(t("order.free", { to: d.target }), "free");
  }
  box.append(head, list);
}

async function previewOrder() {
  const d = state.dialog;
  const id = normalId($("order-person").value);
  if (!validId(id) || !matchesMasked(id, d.binding.counterpart_id)) {
    const message = validId(id) ? M("v.not_that_person", { masked: d.binding.counterpart_id }) : M(id ? "v.id" : "v.required");
    return showErrors("order", [{ slot: "order-person", message }]);
  }
  showErrors("order", []);
  const res = await api("GET", `/v1/persons/${encodeURIComponent(id)}/bindings?role=beneficiary`);
  if (!res.ok) return showErrors("order", [{ slot: "order", message: problemOf(res) }]);
  d.siblings = res.data.bindings;
  renderOrder();
  $("order-confirm").focus();
}

async function confirmOrder() {
  const d = state.dialog;
  const b = d.binding;
  if (!d.siblings) return previewOrder();
  let requested;
  if (b.role === "grantor") {
    requested = state.lookup.id;
  } else {
    requested = normalId($("order-person").value);
    if (!validId(requested) || !matchesMasked(requested, b.counterpart_id)) {
      const message = validId(requested) ? M("v.not_that_person", { masked: b.counterpart_id })
                                         : M(requested ? "v.id" : "v.required");
      return showErrors("order", [{ slot: "order-person", message }]);
    }
  }
  busy("order-form", true);
  const res = await decided(await api("PUT", `/v1/bindings/${encodeURIComponent(b.binding_id)}/payment-order`,
                                      { payment_order: d.target, requested_by: requested }));
  busy("order-form", false);
  if (!res.ok) return showErrors("order", [{ slot: "order", message: problemOf(res) }]);
  $("order-dialog").close();
  state.dialog = null;
  const changes = res.data.outcome?.changes || [{ binding_id: b.binding_id, payment_order: d.target }];
  announce({ key: "order.done", vars: { changes: changes.map((c) => `${c.binding_id} → ${c.payment_order}`).join("; ") } });
  await refreshBindings();
}

// -- 2. create a binding ----------------------------------------------------------------------------
function party(role) {
  const value = (field) => ($(`create-${role}-${field}`)?.value || "").trim();
  const out = { id_number: normalId(value("id")), name: value("name"), region: value("region") };
  if (role === "grantor" && value("employer")) out.employer = value("employer");
  if (role === "beneficiary" && value("community")) out.community = value("community");
  if (value("phone")) out.phone = value("phone");
  return out;
}

function checkCreate(form) {
  const errors = [];
  for (const role of ["grantor", "beneficiary"]) {
    const p = form[role];
    if (!validId(p.id_number)) errors.push({ slot: `create-${role}-id`, message: M(p.id_number ? "v.id" : "v.required") });
    if (!p.name) errors.push({ slot: `create-${role}-name`, message: M("v.required") });
    if (!p.region) errors.push({ slot: `create-${role}-region`, message: M("v.choose") });
    if (p.phone && !/^1[3-9]\d{9}$/.test(p.phone)) errors.push({ slot: `create-${role}-phone`, message: M("v.phone") });
  }
  if (!form.grantor.phone) errors.push({ slot: "create-grantor-phone", message: M("v.required") });
  if (validId(form.grantor.id_number) && form.grantor.id_number === form.beneficiary.id_number) {
    errors.push({ slot: "create-beneficiary-id", message: M("v.same") });
  }
  if (!form.relation) errors.push({ slot: "create-relation", message: M("v.choose") });
  if (!form.start_date || !form.end_date || form.start_date > form.end_date) {
    errors.push({ slot: "create-dates", message: M("v.dates") });
  }
  if (!form.notice_accepted) errors.push({ slot: "create-notice", message: M("v.notice") });
  if (!form.signature_digest) errors.push({ slot: "create-scan", message: M(state.create.digestNote?.key === "v.no_crypto" ? "v.no_crypto" : "v.scan") });
  return errors;
}

async function digestScan() {
  const file = $("create-scan").files[0];
  state.create.digest = null;
  state.create.digestNote = null;
  if (file) {
    if (!globalThis.crypto?.subtle) {
      state.create.digestNote = M("v.no_crypto");
    } else {
      state.create.digestNote = M("create.hashing");
      renderCreate();
      const hash = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
      const hex = [...new Uint8Array(hash)].map((x) => x.toString(16).padStart(2, "0")).join("");
      state.create.digest = `sha256:${hex}`;
      state.create.digestNote = M("create.digest", { digest: `sha256:${hex.slice(0, 16)}…` });
    }
  }
  renderCreate();
}

async function submitCreate() {
  if (state.create.digestNote?.key === "create.hashing") return;
  const form = {
    grantor: party("grantor"), beneficiary: party("beneficiary"), relation: $("create-relation").value,
    payment_order: Number($("create-order").value), start_date: $("create-start").value,
    end_date: $("create-end").value, notice_accepted: $("create-notice").checked,
    signature_digest: state.create.digest,
  };
  const invalid = checkCreate(form);
  state.create.result = null;
  renderCreate();
  if (invalid.length) return showErrors("create", invalid);
  showErrors("create", []);
  busy("create-form", true);
  announce(M("create.sending"));
  try {
    let res = await api("POST", "/v1/bindings", form);
    if (res.status === 202) {
      state.create.pending = res.data.command_id;
      renderCreate();
      res = await decided(res);
      state.create.pending = null;
      if (res.status === 202) {
        state.create.pending = null;
        announce(M("create.pending_timeout", { command: res.data.command_id }));
        return;
      }
    }
    announce(null);
    if (!res.ok) return showErrors("create", refusalSlots(res));
    state.create.result = res.data.outcome;
    clearCreate(false);
    renderCreate();
    $("create-result").focus();
  } finally {
    busy("create-form", false);
  }
}

const PARTY_FIELD = { id_number: "id", name: "name", region: "region", phone: "phone", employer: "employer",
                      community: "community" };
const FORM_FIELD = { relation: "create-relation", payment_order: "create-order", start_date: "create-dates",
                     end_date: "create-dates", notice_accepted: "create-notice", signature_digest: "create-scan" };
const REASON_SLOT = { GRANTOR_NOT_EMPLOYEE: ["create-grantor"], RELATION_NOT_ALLOWED: ["create-relation"],
                      TOO_MANY_GRANTORS: ["create-order"], PAYMENT_ORDER_TAKEN: ["create-order"],
                      INVALID_DATES: ["create-dates"], NOTICE_NOT_ACCEPTED: ["create-notice"],
                      SIGNATURE_MISSING: ["create-scan"] };
const PERSON_REASON_FIELD = { INVALID_ID_NUMBER: "id", UNKNOWN_PERSON: "id", NAME_MISMATCH: "name",
                              OUTSIDE_PROVINCE: "region", INVALID_PHONE: "phone" };

function slotOfLoc(loc) {
  const parts = (loc || []).filter((x) => x !== "body");
  if (["grantor", "beneficiary"].includes(parts[0])) {
    const field = PARTY_FIELD[parts[1]];
    if (!field) return `create-${parts[0]}`;
    return `create-${parts[0]}-${field === "employer" && parts[0] === "beneficiary" ? "community" : field}`;
  }
  return FORM_FIELD[parts[0]] || null;
}

/** Where a refusal is shown: beside the field its reason concerns, else at the top of the form. */
function refusalSlots(res) {
  const d = res.data || {};
  const message = problemOf(res);
  const code = d.reason_code;
  const located = [...new Set((d.errors || []).map((e) => slotOfLoc(e.loc)).filter(Boolean))];
  let slots = REASON_SLOT[code] || [];
  if (PERSON_REASON_FIELD[code]) {
    const words = `${d.detail || ""} ${d.message_en || ""}`;
    const roles = /\bbeneficiary\b/i.test(words) ? ["beneficiary"] : /\bgrantor\b/i.test(words) ? ["grantor"]
                                                                                              : ["grantor", "beneficiary"];
    slots = located.length ? located : roles.map((r) => `create-${r}-${PERSON_REASON_FIELD[code]}`);
  } else if (code === "INVALID_COMMAND" && located.length) {
    slots = located;
  }
  if (!slots.length) slots = ["create"];
  return slots.map((slot) => ({ slot, message }));
}

function clearCreate(all = true) {
  $("create-form").reset();
  state.create.digest = null;
  state.create.digestNote = null;
  if (all) state.create.result = null;
  dateDefaults();
  showErrors("create", []);
  renderCreate();
}

function renderCreate() {
  $("create-scan-digest").textContent = say(state.create.digestNote);
  const box = $("create-result");
  box.replaceChildren();
  const r = state.create.result;
  if (state.create.pending) {
    const p = document.createElement("p");
    p.textContent = t("create.pending", { command: state.create.pending });
    box.append(p);
  } else if (r) {
    const h = document.createElement("h3");
    h.textContent = t("create.done");
    const id = document.createElement("p");
    id.textContent = t("create.binding_id", { id: r.binding_id });
    const line = document.createElement("p");
    line.textContent = t("create.done_line", { grantor: r.grantor_id, beneficiary: r.beneficiary_id,
      relation: relationName(r.relation), order: orderName(r.payment_order), start: r.start_date, end: r.end_date });
    box.append(h, id, line);
  }
  box.hidden = !box.childElementCount;
}

// -- 5. consumption -----------------------------------------------------------------------------------
async function loadConsumption() {
  const id = normalId($("consumption-id").value);
  const name = $("consumption-name").value.trim();
  const from = $("consumption-from").value, to = $("consumption-to").value;
  const errors = [];
  if (!validId(id)) errors.push({ slot: "consumption-id", message: M(id ? "v.id" : "v.required") });
  if (!name) errors.push({ slot: "consumption-name", message: M("v.required") });
  if (!from || !to || from > to) errors.push({ slot: "consumption-dates", message: M("v.dates") });
  if (errors.length) return showErrors("consumption", errors);
  showErrors("consumption", []);
  state.consumption = null;
  renderConsumption();
  busy("consumption-form", true);
  try {
    // The consumption is shown only for a person whose name the clerk verified from the card.
    const who = await api("POST", "/v1/person-lookups", { id_number: id, name });
    if (!who.ok) {
      const unknown = who.data?.reason_code === "UNKNOWN_PERSON";
      return showErrors("consumption", [{ slot: "consumption-id", message: unknown ? M("lookup.unknown") : problemOf(who) }]);
    }
    if (who.data.name_verified !== true) {
      return showErrors("consumption", [{ slot: "consumption-name", message: M("consumption.unverified") }]);
    }
    let view = null;
    for (let page = 1; page <= CONSUMPTION_MAX_PAGES; page++) {
      const query = new URLSearchParams({ from, to, page, page_size: CONSUMPTION_PAGE_SIZE });
      const res = await api("GET", `/v1/grantors/${encodeURIComponent(id)}/consumption?${query}`);
      if (!res.ok) {
        const slot = res.data?.reason_code === "INVALID_DATES" ? "consumption-dates" : "consumption";
        return showErrors("consumption", [{ slot, message: problemOf(res) }]);
      }
      view = view ? { ...view, items: view.items.concat(res.data.items) } : res.data;
      if (page >= res.data.total_pages) break;
    }
    state.consumption = { person: who.data, view };
    renderConsumption();
  } finally {
    busy("consumption-form", false);
  }
}

function renderConsumption() {
  const c = state.consumption;
  $("consumption-result").hidden = !c;
  if (!c) return;
  const v = c.view;
  facts($("consumption-facts"), [
    [t("c.grantor"), v.grantor_id || c.person.person_id],
    [t("c.range"), t("b.date_range", { start: v.from, end: v.to })],
    [t("c.total_paid"), yuan(v.total_paid)],
    [t("c.total_refunded"), yuan(v.total_refunded)],
    [t("c.count"), String(v.total_items)],
  ]);
  const totals = $("consumption-totals").querySelector("tbody");
  totals.replaceChildren();
  for (const b of v.beneficiaries) {
    const tr = document.createElement("tr");
    cell(tr, b.beneficiary_id, "mono");
    cell(tr, String(b.payments), "num");
    cell(tr, b.total_paid, "num");
    cell(tr, b.total_refunded, "num");
    const told = "used_this_month" in b;   // a settlement that tells the month's limit (I-7)
    cell(tr, told ? b.monthly_limit ?? t("b.no_limit") : "—", "num");
    cell(tr, b.used_this_month ?? "—", "num");
    cell(tr, told ? b.left_this_month ?? t("b.no_limit") : "—", "num");
    cell(tr, b.paused ? t("b.paused") : b.paused === false ? t("b.active") : "—", b.paused ? "status-paused" : "");
    totals.append(tr);
  }
  const items = $("consumption-items").querySelector("tbody");
  items.replaceChildren();
  for (const i of v.items) {
    const tr = document.createElement("tr");
    cell(tr, chinaTime(i.settled_at));
    cell(tr, i.beneficiary_id, "mono");
    // Named as the SMS name it (its registered name) when settlement tells it; else its code.
    cell(tr, i.institution_name || i.institution_code);
    cell(tr, i.charge_id, "mono small");
    cell(tr, i.paid, "num");
    cell(tr, i.refunded, "num");
    items.append(tr);
  }
  if (!v.items.length) {
    const tr = document.createElement("tr");
    cell(tr, t("consumption.none")).colSpan = 6;
    items.append(tr);
  }
}

/** From a verified look-up of a grantor: the same person's consumption, without typing again. */
function consumptionOfLookedUp() {
  $("consumption-id").value = state.lookup.id;
  $("consumption-name").value = state.lookup.name;
  location.hash = "#consumption";
  loadConsumption();
}

// -- 7. "not me" disputes -------------------------------------------------------------------------------
const REFERENCE = /^(BF)?[0-9A-HJKMNP-TV-Z]{8}$/;

/** The reference as the SMS printed it, read as the platform reads it (O is 0; I and L are 1). */
function normalReference(value) {
  return value.toUpperCase().replace(/[\s\-]+/g, "").replace(/O/g, "0").replace(/[IL]/g, "1");
}

function disputeGrantor() {
  const id = normalId($("dispute-grantor").value);
  return validId(id) ? id : null;
}

async function submitDispute() {
  const grantor = disputeGrantor();
  const reference = normalReference($("dispute-reference").value);
  const errors = [];
  if (!grantor) errors.push({ slot: "dispute-grantor", message: M($("dispute-grantor").value.trim() ? "v.id" : "v.required") });
  if (!REFERENCE.test(reference)) {
    errors.push({ slot: "dispute-reference", message: M(reference ? "v.reference" : "v.required") });
  }
  state.disputes.opened = null;
  renderDisputes();
  if (errors.length) return showErrors("disputes", errors);
  showErrors("disputes", []);
  busy("dispute-form", true);
  try {
    const res = await decided(await api("POST", "/v1/disputes", { reference, grantor_id: grantor }));
    if (!res.ok) {
      const code = res.data?.reason_code;
      const slot = code === "NOT_GRANTOR" ? "dispute-grantor"
        : ["UNKNOWN_REFERENCE", "ALREADY_DISPUTED", "INVALID_COMMAND"].includes(code) ? "dispute-reference" : "dispute";
      return showErrors("disputes", [{ slot, message: problemOf(res) }]);
    }
    if (res.status === 202) return announce(M("create.pending_timeout", { command: res.data.command_id }));
    state.disputes.opened = res.data.outcome;
    $("dispute-reference").value = "";
    await listDisputes(grantor);
    $("dispute-result").focus();
  } finally {
    busy("dispute-form", false);
  }
}

async function listDisputes(grantor = disputeGrantor()) {
  if (!grantor) {
    return showErrors("disputes", [{ slot: "dispute-grantor", message: M($("dispute-grantor").value.trim() ? "v.id" : "v.required") }]);
  }
  if (!state.disputes.opened) showErrors("disputes", []);
  const res = await api("GET", `/v1/persons/${encodeURIComponent(grantor)}/disputes`);
  if (!res.ok) return showErrors("disputes", [{ slot: "dispute", message: problemOf(res) }]);
  state.disputes.grantor = res.data.person_id;
  state.disputes.listed = res.data.disputes;
  renderDisputes();
}

function renderDisputes() {
  const D = state.disputes;
  const box = $("dispute-result");
  box.replaceChildren();
  const o = D.opened;
  if (o) {
    const h = document.createElement("h3");
    h.textContent = t("disputes.done");
    const id = document.createElement("p");
    id.textContent = t("disputes.done_id", { id: o.dispute_id });
    const line = document.createElement("p");
    line.textContent = t("disputes.done_line", { reference: o.reference, amount: o.amount, institution: o.institution_code,
                                                 charge: o.charge_id, beneficiary: o.beneficiary_id, binding: o.binding_id });
    box.append(h, id, line);
  }
  box.hidden = !o;
  $("disputes-result").hidden = !D.listed;
  if (!D.listed) return;
  $("disputes-of").textContent = t("disputes.of", { grantor: D.grantor });
  const body = $("disputes-list").querySelector("tbody");
  body.replaceChildren();
  for (const d of D.listed) {
    const tr = document.createElement("tr");
    tr.dataset.dispute = d.dispute_id;
    cell(tr, chinaTime(d.opened_at));
    cell(tr, d.reference, "mono");
    cell(tr, d.amount, "num");
    cell(tr, d.beneficiary_id, "mono");
    cell(tr, d.institution_code);
    cell(tr, d.charge_id, "mono small");
    cell(tr, d.binding_id, "mono small");
    cell(tr, TEXTS.zh[`ds.${d.status}`] ? t(`ds.${d.status}`) : d.status, `dispute-${d.status}`);
    cell(tr, d.decided_at ? chinaTime(d.decided_at) : "");
    body.append(tr);
  }
  $("disputes-list").hidden = !D.listed.length;
  $("disputes-none").hidden = D.listed.length > 0;
}

/** From a look-up of a grantor: his or her disputes, and the form ready for a new one. */
function disputesOfLookedUp() {
  state.disputes.opened = null;          // an earlier dispute's receipt is not this person's
  $("dispute-grantor").value = state.lookup.id;
  location.hash = "#disputes";
  listDisputes(state.lookup.id);
  $("dispute-reference").focus();
}

// -- 6. audit -----------------------------------------------------------------------------------------
let auditTimer = null;
let auditLoading = false;

async function loadAudit(page = 1, quiet = false) {
  if (auditLoading || !state.me) return;
  const from = $("audit-from").value, to = $("audit-to").value;
  if (!from || !to || from > to) return showErrors("audit", [{ slot: "audit", message: M("v.dates") }]);
  const query = new URLSearchParams({ from, to, page, page_size: AUDIT_PAGE_SIZE });
  const clerk = $("audit-clerk").value.trim();
  if (state.me.role === "supervisor" && clerk) query.set("clerk_id", clerk);
  auditLoading = true;
  try {
    const res = await api("GET", `/v1/audit?${query}`);
    if (!res.ok) {
      if (!quiet) showErrors("audit", [{ slot: "audit", message: problemOf(res) }]);
      return;
    }
    showErrors("audit", []);
    state.audit = { page, data: res.data };
    renderAudit();
  } finally {
    auditLoading = false;
  }
}

function renderAudit() {
  if (!state.me) return;
  const supervisor = state.me.role === "supervisor";
  $("audit-clerk-field").hidden = !supervisor;
  $("audit-scope").textContent = supervisor
    ? t("audit.scope_supervisor", { region: regionName(state.me.region, state.me.region_name) })
    : t("audit.scope_window", { clerk: state.me.clerk_id });
  const data = state.audit.data;
  const table = $("audit-list");
  const body = table.querySelector("tbody");
  body.replaceChildren();
  for (const e of data?.entries || []) {
    const tr = document.createElement("tr");
    tr.dataset.command = e.command_id || "";
    cell(tr, chinaTime(e.at));
    cell(tr, e.clerk_id || "");
    cell(tr, TEXTS.zh[`act.${e.action}`] ? t(`act.${e.action}`) : e.action || "");
    cell(tr, e.subject_id || "", "mono");
    cell(tr, TEXTS.zh[`out.${e.outcome}`] ? t(`out.${e.outcome}`) : e.outcome || "", `outcome-${e.outcome}`);
    const reason = catalogue.refusals[e.reason_code];
    cell(tr, reason ? reason[state.lang] || reason.zh : e.reason_code || "");
    cell(tr, e.command_id || "", "mono small");
    body.append(tr);
  }
  const count = data?.entries?.length || 0;
  table.hidden = !count;
  $("audit-empty").hidden = !data || count > 0;
  const pages = data ? Math.max(1, Math.ceil(data.total / data.page_size)) : 1;
  $("audit-pager").hidden = !data || pages <= 1;
  $("audit-page").textContent = data ? t("audit.page", { page: data.page, pages, total: data.total }) : "";
  $("audit-prev").disabled = !data || data.page <= 1;
  $("audit-next").disabled = !data || data.page >= pages;
}

function auditTick() {
  if (state.screen === "audit" && state.audit.page === 1 && document.visibilityState === "visible") {
    loadAudit(1, true);
  }
}

// -- language -----------------------------------------------------------------------------------------
function applyTexts() {
  document.documentElement.lang = state.lang === "en" ? "en" : "zh-CN";
  document.title = t("app.title");
  for (const el of $$("[data-t]")) el.textContent = t(el.dataset.t);
  for (const el of $$("[data-t-aria]")) el.setAttribute("aria-label", t(el.dataset.tAria));
  const toggle = $("lang");
  toggle.textContent = state.lang === "en" ? "中文" : "English";
  toggle.lang = state.lang === "en" ? "zh-CN" : "en";
  for (const select of $$("select.regions")) {
    const chosen = select.value;
    const blank = new Option(t("f.choose"), "");
    select.replaceChildren(blank, ...REGIONS.map(([code]) => new Option(`${regionName(code)} (${code})`, code)));
    select.value = chosen;
  }
}

function renderAll() {
  applyTexts();
  renderWho();
  renderLookup();
  renderCreate();
  renderConsumption();
  renderAudit();
  renderRevoke();
  renderOrder();
  renderLimit();
  renderPause();
  renderDisputes();
  for (const form of Object.keys(state.errors)) paintErrors(form);
  $("status").textContent = say(state.status);
}

function setLanguage(lang) {
  state.lang = lang;
  localStorage.setItem(LANG_KEY, lang);
  renderAll();
}

/** Today's defaults (China time), also what a form's reset returns to. */
function dateDefaults() {
  const days = { "create-start": chinaDay(), "create-end": yearLater(chinaDay()), "consumption-from": chinaDay(-29),
                 "consumption-to": chinaDay(), "audit-from": chinaDay(-6), "audit-to": chinaDay() };
  for (const [id, day] of Object.entries(days)) $(id).defaultValue = $(id).value = day;
}

// -- wiring -------------------------------------------------------------------------------------------
function onSubmit(id, handler) {
  $(id).addEventListener("submit", (event) => {
    event.preventDefault();
    handler();
  });
}

async function start() {
  onSubmit("signin-form", () => signIn($("signin-token").value));
  onSubmit("lookup-form", lookUp);
  onSubmit("create-form", submitCreate);
  onSubmit("consumption-form", loadConsumption);
  onSubmit("audit-form", () => loadAudit(1));
  onSubmit("revoke-form", confirmRevoke);
  onSubmit("order-form", confirmOrder);
  onSubmit("limit-form", () => confirmLimit(false));
  onSubmit("pause-form", confirmPause);
  onSubmit("dispute-form", submitDispute);
  $("limit-clear").addEventListener("click", () => confirmLimit(true));
  $("limit-cancel").addEventListener("click", () => $("limit-dialog").close());
  $("pause-cancel").addEventListener("click", () => $("pause-dialog").close());
  $("dispute-list").addEventListener("click", () => {
    state.disputes.opened = null;
    listDisputes();
  });
  $("lookup-disputes").addEventListener("click", disputesOfLookedUp);
  $("lang").addEventListener("click", () => setLanguage(state.lang === "en" ? "zh" : "en"));
  $("sign-out").addEventListener("click", () => signOut(M("signin.signed_out")));
  $("create-scan").addEventListener("change", digestScan);
  $("create-clear").addEventListener("click", () => clearCreate(true));
  $("lookup-consumption").addEventListener("click", consumptionOfLookedUp);
  $("consumption-print").addEventListener("click", () => {
    renderWho();
    window.print();
  });
  $("revoke-cancel").addEventListener("click", () => $("revoke-dialog").close());
  $("order-cancel").addEventListener("click", () => $("order-dialog").close());
  $("order-preview").addEventListener("click", previewOrder);
  for (const d of $$("dialog")) d.addEventListener("close", () => { state.dialog = null; });
  $("audit-prev").addEventListener("click", () => loadAudit(state.audit.page - 1));
  $("audit-next").addEventListener("click", () => loadAudit(state.audit.page + 1));
  window.addEventListener("hashchange", () => {
    announce(null);
    route(true);
  });
  window.addEventListener("beforeprint", renderWho);

  try {
    await loadCatalogue();
  } catch {
    announce(M("e.503"));   // the gateway is unreachable: nothing else would work either
  }
  dateDefaults();
  renderAll();
  route(false);
  auditTimer = setInterval(auditTick, AUDIT_REFRESH_MS);

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  document.body.dataset.ready = "true";
}

start();
