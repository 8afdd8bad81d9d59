// The fleet page: state from server-sent events (/api/events), actions through /api/action with the CSRF token.
// Everything from the relay or a terminal is put on the page with textContent, never as HTML.
"use strict";
let me = null;
let state = null;
let received = 0; // performance.now() when `state` arrived, to tick durations between updates
let charts = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function clock(epoch) {
  if (epoch === null || epoch === undefined) return "";
  const d = new Date(epoch * 1000);
  const today = new Date().toDateString() === d.toDateString();
  const opts = today ? { hour: "2-digit", minute: "2-digit", second: "2-digit" }
    : { month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit" };
  return d.toLocaleString(fleetLang() === "ja" ? "ja-JP" : "en-GB", opts);
}

function duration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.max(0, Math.round(s));
  const m = Math.floor(s / 60);
  return m ? `${m}:${String(s % 60).padStart(2, "0")}` : `${s} ${t("seconds")}`;
}

function deptName(id) {
  const names = state && state.departments[id];
  return names ? names[fleetLang()] : id;
}

// -- terminals ------------------------------------------------------------------------------------
function deviceList(term) {
  if (!term.devices.length) return el("span", { class: "muted" }, t("no_health"));
  const list = el("ul", { class: "devices" });
  for (const d of term.devices) {
    const item = el("li", { class: "device " + d.state, "data-device": d.name },
      el("span", { class: "dot" }), `${t(d.name)}: ${t(d.state)}`);
    if (d.reason) item.append(el("span", { class: "reason" }, ` — ${d.reason}`));
    list.append(item);
  }
  return list;
}

function actionButtons(term) {
  const box = el("div", { class: "actions" });
  if (!term.online) return box;
  if (term.role === "lamp") {
    for (const dept of term.departments) {
      box.append(el("button", { type: "button", class: "small", "data-action": "lamp", "data-dept": dept,
        onclick: () => act("lamp", term.id, dept) }, `${t("light")} ${deptName(dept)}`));
    }
  }
  if (term.role === "office") {
    box.append(el("button", { type: "button", class: "small", "data-action": "ring",
      onclick: () => act("ring", term.id) }, t("ring_test")));
  }
  box.append(el("button", { type: "button", class: "small danger", "data-action": "disconnect",
    onclick: () => { if (confirm(t("confirm_disconnect"))) act("disconnect", term.id); } }, t("disconnect")));
  return box;
}

function renderTerminals() {
  const body = document.querySelector("#terminals tbody");
  body.replaceChildren();
  for (const term of state.terminals) {
    const link = term.online ? "online" : "offline";
    const stateCell = el("td", { class: "state" },
      el("span", { class: "badge " + link }, t(link)),
      el("div", { class: "since" }, term.since ? `${t("since")} ${clock(term.since)}` : ""));
    if (term.status && term.online) stateCell.append(el("div", { class: "status " + term.status }, t(term.status)));
    const lastCall = term.last_call ? [term.last_call.path, term.last_call.quality].filter(Boolean).join(" · ") : "";
    body.append(el("tr", { class: term.problems.length ? "problem" : "", "data-terminal": term.id },
      stateCell,
      el("td", {}, el("div", { class: "name" }, term.name || term.id), el("div", { class: "id" }, term.id),
        el("button", { type: "button", class: "link history-link", "data-action": "history",
          onclick: () => showHistory(term.id) }, t("history"))),
      el("td", { class: "role" }, t(term.role)),
      el("td", { class: "mono" }, term.address),
      el("td", { class: "mono" }, term.version),
      el("td", { class: "mono" }, term.rtt_ms === null || term.rtt_ms === undefined ? "" : `${term.rtt_ms} ms`),
      el("td", {}, deviceList(term)),
      el("td", { class: "mono" }, lastCall),
      el("td", {}, actionButtons(term))));
  }
}

// -- health history of one terminal ----------------------------------------------------------------
let historyOf = null;
let historyAt = null; // the terminal's health_at when the history was fetched

function changeText(what) {
  if (what.startsWith("device:")) return t(what.slice(7));
  return t(what);
}

function stateText(value) {
  const m = /^(ok|missing|failing)(: )?(.*)$/s.exec(value);
  return m ? t(m[1]) + (m[3] ? ` — ${m[3]}` : "") : value;
}

async function showHistory(terminal) {
  historyOf = terminal;
  const term = state && state.terminals.find((x) => x.id === terminal);
  historyAt = term ? term.health_at : null;
  const resp = await fetch(`/api/history?terminal=${encodeURIComponent(terminal)}`);
  const changes = resp.ok ? await resp.json() : [];
  const panel = document.getElementById("history");
  document.getElementById("history-terminal").textContent = terminal;
  const body = panel.querySelector("tbody");
  body.replaceChildren();
  for (const c of changes) {
    body.append(el("tr", { "data-what": c.what }, el("td", { class: "mono" }, clock(c.at)),
      el("td", {}, changeText(c.what)), el("td", {}, stateText(c.old)), el("td", {}, stateText(c.new))));
  }
  panel.hidden = false;
}

function refreshHistory() {
  if (!historyOf || !state) return;
  const term = state.terminals.find((x) => x.id === historyOf);
  if (term && term.health_at !== historyAt) showHistory(historyOf);
}

// -- calls ----------------------------------------------------------------------------------------
function renderCalls() {
  const elapsed = (performance.now() - received) / 1000;
  const table = document.getElementById("calls");
  const body = table.querySelector("tbody");
  body.replaceChildren();
  table.hidden = !state.calls.length;
  document.getElementById("no-calls").hidden = !!state.calls.length;
  for (const c of state.calls) {
    const ringing = c.state === "ringing";
    const members = c.members.map((m) => m + (c.offline.includes(m) ? ` (${t("offline")})` : "")).join(", ");
    body.append(el("tr", { class: c.state, "data-call": c.call },
      el("td", {}, el("span", { class: "badge " + c.state }, t(c.state))),
      el("td", {}, c.counter_name || c.counter),
      el("td", {}, deptName(c.department)),
      el("td", { class: "members" }, members),
      el("td", { class: "mono" }, duration((ringing ? c.ringing_s : c.duration_s) + elapsed)),
      el("td", { class: "mono" }, c.media_path || "")));
  }
}

// -- today, audit ---------------------------------------------------------------------------------
function renderToday() {
  const d = state.today;
  document.getElementById("today-calls").textContent = d.calls;
  document.getElementById("today-answered").textContent = d.answered;
  document.getElementById("today-missed").textContent = d.missed;
  document.getElementById("today-wait").textContent = d.median_wait_s === null ? "–" : duration(d.median_wait_s);
  document.getElementById("problem-count").textContent = state.problems;
}

function renderAudit() {
  const body = document.querySelector("#audit tbody");
  body.replaceChildren();
  for (const a of state.audit) {
    const result = a.result === "sent" ? t("sent") : a.result;
    body.append(el("tr", { "data-action": a.action },
      el("td", { class: "mono" }, clock(a.at)), el("td", {}, a.user), el("td", {}, t("action_" + a.action)),
      el("td", { class: "mono" }, a.target), el("td", {}, result)));
  }
}

function render() {
  if (!state) return;
  renderToday();
  renderTerminals();
  renderCalls();
  renderAudit();
  refreshHistory();
}

// -- actions --------------------------------------------------------------------------------------
async function act(action, target, department) {
  const box = document.getElementById("action-result");
  const resp = await fetch("/api/action", {
    method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": me.csrf },
    body: JSON.stringify({ action, target, department }),
  });
  const body = await resp.json().catch(() => ({}));
  box.hidden = false;
  box.className = "notice " + (resp.ok ? "ok" : "bad");
  box.textContent = resp.ok ? `${t("action_" + action)}: ${target} — ${t("sent")}` : (body.error || resp.statusText);
}

// -- live updates ---------------------------------------------------------------------------------
function connect() {
  const link = document.getElementById("link");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => { link.dataset.state = "up"; link.textContent = t("live"); });
  source.addEventListener("state", (e) => {
    state = JSON.parse(e.data);
    received = performance.now();
    link.dataset.state = "up";
    link.textContent = t("live");
    render();
  });
  source.addEventListener("logout", () => { location.href = "/login"; });
  source.addEventListener("error", async () => {
    link.dataset.state = "down";
    link.textContent = t("offline_link");
    const check = await fetch("/api/me").catch(() => null);
    if (check && check.status === 401) location.href = "/login";
  });
}

async function main() {
  const resp = await fetch("/api/me");
  if (resp.status === 401) { location.href = "/login"; return; }
  me = await resp.json();
  document.getElementById("csrf").value = me.csrf;
  const relabel = () => {
    applyText();
    document.title = t("title");
    document.getElementById("me").textContent = me.user;
    render();
    drawCharts(charts);
  };
  document.getElementById("lang").addEventListener("click", () => { toggleLang(); relabel(); });
  document.getElementById("history-close").addEventListener("click", () => {
    historyOf = null;
    document.getElementById("history").hidden = true;
  });
  const month = document.getElementById("month");
  const now = new Date();
  month.value = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}`;
  const loadCharts = async () => {
    document.getElementById("csv").href = `/api/report.csv?month=${month.value}`;
    const wanted = month.value;
    const r = await fetch(`/api/charts?month=${wanted}`);
    const data = r.ok ? await r.json() : null;
    if (wanted !== month.value) return; // the month changed while this answer was on its way
    charts = data;
    drawCharts(charts);
  };
  month.addEventListener("change", loadCharts);
  relabel();
  connect();
  setInterval(() => { if (state && state.calls.length) renderCalls(); }, 1000);
  await loadCharts();
}

document.addEventListener("DOMContentLoaded", main);
