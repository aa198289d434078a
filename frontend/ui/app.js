// The admin UI: sign in with the master key, then keys, teams and spend
// through the LiteLLM-style admin API of the same origin. No framework and
// no network beyond that origin (the page's CSP allows only 'self'); every
// value from the API reaches the page through textContent, never as markup.

const KEY_STORAGE = "engine.masterKey";
const SVG_NS = "http://www.w3.org/2000/svg";
// Colour-blind-friendly categorical palette (Okabe-Ito, then Tableau).
const PALETTE = [
  "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9",
  "#d55e00", "#f0e442", "#4e79a7", "#af7aa1", "#9c755f",
];

const $ = (sel) => document.querySelector(sel);

/** An API error with the gateway's OpenAI-style message and the HTTP status. */
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// ---------------------------------------------------------------- API

function masterKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

/** `fetch` with the master key; the JSON body, or an ApiError. */
async function api(method, path, body, key = masterKey()) {
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, `The gateway did not answer (${e.message}).`);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const message = data?.error?.message || data?.detail || text || res.statusText;
    throw new ApiError(res.status, `${res.status}: ${message}`);
  }
  return data;
}

/** Every key, following the pages of /key/list. */
async function listKeys() {
  const keys = [];
  for (let page = 1; page < 1000; page += 1) {
    const data = await api("GET", `/key/list?return_full_object=true&page=${page}&size=100`);
    keys.push(...(data?.keys || []));
    if (!data || page >= (data.total_pages || 1)) break;
  }
  return keys;
}

// ---------------------------------------------------------- formatting

function money(v) {
  if (v === null || v === undefined || Number.isNaN(Number(v))) return "–";
  const n = Number(v);
  if (n === 0) return "$0";
  if (Math.abs(n) >= 1) return `$${n.toFixed(2)}`;
  // Small spends (fractions of a cent) keep two significant digits.
  const decimals = Math.min(10, 1 - Math.floor(Math.log10(Math.abs(n))));
  return `$${n.toFixed(decimals)}`;
}

function dateOnly(iso) {
  return iso ? String(iso).slice(0, 10) : "–";
}

function budget(obj) {
  if (obj.max_budget === null || obj.max_budget === undefined) return "–";
  return obj.budget_duration ? `${money(obj.max_budget)} / ${obj.budget_duration}` : money(obj.max_budget);
}

function limits(obj) {
  const parts = [];
  if (obj.rpm_limit !== null && obj.rpm_limit !== undefined) parts.push(`${obj.rpm_limit} rpm`);
  if (obj.tpm_limit !== null && obj.tpm_limit !== undefined) parts.push(`${obj.tpm_limit} tpm`);
  return parts.length ? parts.join(" · ") : "–";
}

function models(list) {
  return list && list.length ? list.join(", ") : "all";
}

function utcDay(date) {
  return date.toISOString().slice(0, 10);
}

function addDays(day, n) {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return utcDay(d);
}

// ------------------------------------------------------------ helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(sel, message) {
  const p = $(sel);
  p.textContent = message || "";
  p.hidden = !message;
}

/** The form's non-empty fields, numbers parsed and comma lists split. */
function formBody(form, numeric, lists) {
  const body = {};
  for (const [name, raw] of new FormData(form).entries()) {
    const value = String(raw).trim();
    if (!value) continue;
    if (numeric.includes(name)) body[name] = Number(value);
    else if (lists.includes(name)) body[name] = value.split(",").map((s) => s.trim()).filter(Boolean);
    else body[name] = value;
  }
  return body;
}

/** Runs `work` with the form's submit button disabled; errors go to `errorSel`. */
async function busy(form, errorSel, work) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  showError(errorSel, "");
  try {
    await work();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signOut(e.message);
    showError(errorSel, e.message);
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------ sign-in

async function signIn(event) {
  event.preventDefault();
  const key = $("#master-key").value.trim();
  showError("#sign-in-error", "");
  $("#sign-in").disabled = true;
  try {
    await api("GET", "/key/list?return_full_object=true&page=1&size=1", undefined, key);
    sessionStorage.setItem(KEY_STORAGE, key);
    $("#master-key").value = "";
    await enterApp();
  } catch (e) {
    showError("#sign-in-error", e.message);
  } finally {
    $("#sign-in").disabled = false;
  }
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  $("#sign-in-view").hidden = false;
  $("#tabs").hidden = true;
  $("#sign-out").hidden = true;
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  showError("#sign-in-error", typeof message === "string" ? message : "");
  $("#master-key").focus();
}

async function enterApp() {
  $("#sign-in-view").hidden = true;
  $("#tabs").hidden = false;
  $("#sign-out").hidden = false;
  await showTab(location.hash.replace("#", "") || "keys");
}

// --------------------------------------------------------------- tabs

const TABS = ["keys", "teams", "spend"];

async function showTab(name) {
  if (!TABS.includes(name)) name = "keys";
  for (const t of TABS) {
    $(`#tab-${t}`).setAttribute("aria-selected", String(t === name));
    $(`#${t}-view`).hidden = t !== name;
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  try {
    if (name === "keys") await Promise.all([refreshTeams(), refreshKeys()]);
    if (name === "teams") await refreshTeams();
    if (name === "spend") await refreshSpend();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signOut(e.message);
    showError(`#${name}-error`, e.message);
  }
}

// --------------------------------------------------------------- keys

let teamsById = new Map();

async function refreshKeys() {
  const keys = await listKeys();
  const tbody = $("#keys-table tbody");
  tbody.replaceChildren();
  if (!keys.length) {
    tbody.append(el("tr", { class: "empty" }, el("td", { colspan: "9", text: "No keys yet." })));
  }
  for (const k of keys) {
    const team = k.team_id ? teamsById.get(k.team_id)?.team_alias || k.team_id : "–";
    const label = k.key_alias || k.key_name;
    const del = el("button", {
      type: "button", class: "danger small delete-key", "aria-label": `Delete key ${label}`, text: "Delete",
    });
    del.addEventListener("click", () => deleteKey(k.token, label));
    tbody.append(el("tr", { "data-token": k.token },
      el("td", { class: "alias", text: k.key_alias || "–" }),
      el("td", { class: "mono", text: k.key_name || "–" }),
      el("td", { text: models(k.models) }),
      el("td", { class: "num", text: money(k.spend) }),
      el("td", { text: budget(k) }),
      el("td", { text: limits(k) }),
      el("td", { text: team }),
      el("td", { text: dateOnly(k.created_at) }),
      el("td", { class: "row-actions" }, del)));
  }
  $("#keys-count").textContent = `(${keys.length})`;
}

async function createKey(event) {
  event.preventDefault();
  const form = event.currentTarget;
  await busy(form, "#keys-error", async () => {
    const body = formBody(form, ["max_budget", "rpm_limit", "tpm_limit"], ["models"]);
    const created = await api("POST", "/key/generate", body);
    $("#new-key-value").textContent = created.key;
    $("#copy-status").textContent = "";
    $("#new-key-secret").hidden = false;
    form.reset();
    await refreshKeys();
  });
}

async function copyKey() {
  const text = $("#new-key-value").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("#copy-status").textContent = "Copied to the clipboard.";
  } catch {
    // No clipboard permission: select the text so Ctrl+C copies it.
    const range = document.createRange();
    range.selectNodeContents($("#new-key-value"));
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    $("#copy-status").textContent = "Selected: press Ctrl+C to copy.";
  }
}

function dismissKey() {
  $("#new-key-value").textContent = "";
  $("#new-key-secret").hidden = true;
}

async function deleteKey(token, label) {
  if (!window.confirm(`Delete key "${label}"? Requests made with it will fail.`)) return;
  try {
    await api("POST", "/key/delete", { keys: [token] });
    await refreshKeys();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signOut(e.message);
    showError("#keys-error", e.message);
  }
}

// -------------------------------------------------------------- teams

async function refreshTeams() {
  const data = await api("GET", "/team/list");
  const teams = Array.isArray(data) ? data : data?.teams || [];
  teamsById = new Map(teams.map((t) => [t.team_id, t]));

  const select = $("#key-team");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: "(none)" }));
  for (const t of teams) select.append(el("option", { value: t.team_id, text: t.team_alias || t.team_id }));
  select.value = teamsById.has(chosen) ? chosen : "";

  const tbody = $("#teams-table tbody");
  tbody.replaceChildren();
  if (!teams.length) {
    tbody.append(el("tr", { class: "empty" }, el("td", { colspan: "8", text: "No teams yet." })));
  }
  for (const t of teams) {
    const label = t.team_alias || t.team_id;
    const del = el("button", {
      type: "button", class: "danger small delete-team", "aria-label": `Delete team ${label}`, text: "Delete",
    });
    del.addEventListener("click", () => deleteTeam(t.team_id, label));
    tbody.append(el("tr", { "data-team-id": t.team_id },
      el("td", { class: "alias", text: t.team_alias || "–" }),
      el("td", { class: "mono", text: t.team_id }),
      el("td", { text: models(t.models) }),
      el("td", { class: "num", text: money(t.spend) }),
      el("td", { text: budget(t) }),
      el("td", { text: limits(t) }),
      el("td", { text: dateOnly(t.created_at) }),
      el("td", { class: "row-actions" }, del)));
  }
  $("#teams-count").textContent = `(${teams.length})`;
}

async function createTeam(event) {
  event.preventDefault();
  const form = event.currentTarget;
  await busy(form, "#teams-error", async () => {
    const body = formBody(form, ["max_budget", "rpm_limit", "tpm_limit"], ["models"]);
    await api("POST", "/team/new", body);
    form.reset();
    await refreshTeams();
  });
}

async function deleteTeam(teamId, label) {
  if (!window.confirm(`Delete team "${label}"?`)) return;
  try {
    await api("POST", "/team/delete", { team_ids: [teamId] });
    await refreshTeams();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signOut(e.message);
    showError("#teams-error", e.message);
  }
}

// -------------------------------------------------------------- spend

function defaultRange() {
  if (!$("#spend-end").value) $("#spend-end").value = utcDay(new Date());
  if (!$("#spend-start").value) $("#spend-start").value = addDays($("#spend-end").value, -29);
}

async function refreshSpend() {
  defaultRange();
  const groupBy = $("#spend-group-by").value;
  const start = $("#spend-start").value;
  const end = $("#spend-end").value;
  showError("#spend-error", "");
  if (start > end) {
    showError("#spend-error", "The start date is after the end date.");
    return;
  }
  const q = new URLSearchParams({ group_by: groupBy, start_date: start, end_date: end });
  const [rows, total, label] = await Promise.all([
    api("GET", `/global/spend/report?${q}`),
    api("GET", "/global/spend"),
    groupLabels(groupBy),
  ]);
  $("#spend-total").textContent = money(total?.spend ?? 0);
  const named = (Array.isArray(rows) ? rows : []).map((r) => ({ ...r, group: label(r.group) }));
  drawChart($("#spend-chart"), named, start, end, groupBy);
}

/**
 * How a report group reads in the legend. The report may name a team by
 * its id and a key by its token hash; those of teams and keys that still
 * exist read as their alias (or masked key), and no group as "(none)".
 */
async function groupLabels(groupBy) {
  const names = new Map();
  if (groupBy === "team") {
    const data = await api("GET", "/team/list");
    for (const t of Array.isArray(data) ? data : data?.teams || []) {
      if (t.team_alias) names.set(t.team_id, t.team_alias);
    }
  } else if (groupBy === "api_key") {
    for (const k of await listKeys()) names.set(k.token, k.key_alias || k.key_name);
  }
  return (group) => (group === null || group === undefined || group === "" ? "(none)" : names.get(group) ?? String(group));
}

/** 1, 2 or 5 times a power of ten: about `count` ticks from 0 to >= max. */
function niceTicks(max, count = 5) {
  if (!(max > 0)) return { step: 1, ticks: [0, 1] };
  const raw = max / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw);
  const ticks = [];
  for (let v = 0; v < max + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return { step, ticks };
}

function tickLabel(v, step) {
  if (v === 0) return "$0";
  const decimals = Math.min(10, Math.max(0, -Math.floor(Math.log10(step))));
  return `$${v.toFixed(decimals)}`;
}

/**
 * A stacked bar chart as inline SVG: one bar per day of [start, end],
 * one coloured segment per group, a money y axis with grid lines, date
 * labels on the x axis and a legend with each group's total.
 */
function drawChart(container, rows, start, end, groupBy) {
  const days = [];
  for (let d = start; d <= end && days.length < 400; d = addDays(d, 1)) days.push(d);
  const totals = new Map();
  const cell = new Map();
  for (const r of rows) {
    const group = r.group;
    const spend = Number(r.spend) || 0;
    totals.set(group, (totals.get(group) || 0) + spend);
    const k = `${r.date}\u0000${group}`;
    cell.set(k, (cell.get(k) || 0) + spend);
  }
  const groups = [...totals.keys()].sort((a, b) => totals.get(b) - totals.get(a));
  const color = new Map(groups.map((g, i) => [g, PALETTE[i % PALETTE.length]]));
  const dayTotal = days.map((d) => groups.reduce((s, g) => s + (cell.get(`${d}\u0000${g}`) || 0), 0));
  const max = Math.max(0, ...dayTotal);

  const legendRows = Math.ceil(groups.length / 3);
  const W = 900;
  const M = { top: 16, right: 16, bottom: 48 + 22 * legendRows, left: 72 };
  const plotH = 260;
  const H = M.top + plotH + M.bottom;
  const plotW = W - M.left - M.right;
  const { step, ticks } = niceTicks(max);
  const top = ticks[ticks.length - 1];
  const y = (v) => M.top + plotH - (v / top) * plotH;
  const band = plotW / days.length;
  const barW = Math.max(2, band * 0.7);

  const what = { api_key: "key", team: "team", model: "model" }[groupBy] || groupBy;
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img",
    "aria-label": `Spend per day by ${what}, ${start} to ${end}`,
  });
  root.append(svg("title", {}, `Spend per day by ${what}, ${start} to ${end}`));

  // Y axis: grid lines and money labels.
  const yAxis = svg("g", { class: "axis y-axis" });
  for (const t of ticks) {
    const ty = y(t);
    yAxis.append(svg("line", { x1: M.left, x2: W - M.right, y1: ty, y2: ty, class: t === 0 ? "baseline" : "grid" }));
    yAxis.append(svg("text", { x: M.left - 8, y: ty + 4, "text-anchor": "end" }, tickLabel(t, step)));
  }
  root.append(yAxis);

  // Bars: stacked segments, largest group at the bottom.
  const bars = svg("g", { class: "bars" });
  days.forEach((d, i) => {
    let acc = 0;
    const x = M.left + i * band + (band - barW) / 2;
    for (const g of groups) {
      const v = cell.get(`${d}\u0000${g}`) || 0;
      if (v <= 0) continue;
      const y0 = y(acc);
      const y1 = y(acc + v);
      acc += v;
      const rect = svg("rect", {
        class: "bar", x: x.toFixed(2), y: y1.toFixed(2), width: barW.toFixed(2),
        height: Math.max(1, y0 - y1).toFixed(2), fill: color.get(g), "data-group": g, "data-date": d,
      });
      rect.append(svg("title", {}, `${d} · ${g}: ${money(v)}`));
      bars.append(rect);
    }
  });
  root.append(bars);

  // X axis: a date label every few days so they never overlap.
  const xAxis = svg("g", { class: "axis x-axis" });
  const every = Math.max(1, Math.ceil(days.length / Math.floor(plotW / 64)));
  days.forEach((d, i) => {
    if (i % every !== 0) return;
    const cx = M.left + i * band + band / 2;
    xAxis.append(svg("line", { x1: cx, x2: cx, y1: M.top + plotH, y2: M.top + plotH + 4, class: "tick" }));
    xAxis.append(svg("text", { x: cx, y: M.top + plotH + 18, "text-anchor": "middle" }, d.slice(5)));
  });
  root.append(xAxis);

  if (!groups.length) {
    root.append(svg("text", { x: M.left + plotW / 2, y: M.top + plotH / 2, "text-anchor": "middle", class: "empty" },
      "No spend in this range."));
  }

  // Legend: a swatch, the group and its total over the range.
  const legend = svg("g", { class: "legend" });
  const colW = plotW / 3;
  groups.forEach((g, i) => {
    const lx = M.left + (i % 3) * colW;
    const ly = M.top + plotH + 40 + Math.floor(i / 3) * 22;
    const item = svg("g", { class: "legend-item", "data-group": g });
    item.append(svg("rect", { x: lx, y: ly - 10, width: 12, height: 12, rx: 2, fill: color.get(g) }));
    const label = g.length > 34 ? `${g.slice(0, 33)}…` : g;
    item.append(svg("text", { x: lx + 18, y: ly }, `${label} (${money(totals.get(g))})`));
    legend.append(item);
  });
  root.append(legend);

  container.replaceChildren(root);
}

// -------------------------------------------------------------- start

function start() {
  $("#sign-in-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => signOut());
  for (const t of TABS) $(`#tab-${t}`).addEventListener("click", () => showTab(t));
  // Left/right arrows move between the tabs (the WAI-ARIA tabs pattern).
  $("#tabs").addEventListener("keydown", (event) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    const i = TABS.findIndex((t) => $(`#tab-${t}`).getAttribute("aria-selected") === "true");
    const next = TABS[(i + step + TABS.length) % TABS.length];
    $(`#tab-${next}`).focus();
    showTab(next);
  });
  $("#create-key-form").addEventListener("submit", createKey);
  $("#copy-key").addEventListener("click", copyKey);
  $("#dismiss-key").addEventListener("click", dismissKey);
  $("#create-team-form").addEventListener("submit", createTeam);
  $("#spend-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    await busy(event.currentTarget, "#spend-error", refreshSpend);
  });
  $("#spend-group-by").addEventListener("change", () => busy($("#spend-form"), "#spend-error", refreshSpend));
  defaultRange();
  if (masterKey()) enterApp();
  else $("#master-key").focus();
}

start();
