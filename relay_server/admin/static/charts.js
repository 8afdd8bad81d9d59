// Hand-drawn SVG charts for the fleet page's monthly numbers: no library, no build step.
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const W = 620, H = 170, PAD = { l: 36, r: 8, t: 10, b: 22 };

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(v) {
  if (v <= 5) return 5;
  const step = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= v) return m * step;
  return 10 * step;
}

function frame(root, days, max, label) {
  const plotH = H - PAD.t - PAD.b;
  root.append(svg("title", {}, label));
  for (const f of [0, 0.5, 1]) {
    const y = PAD.t + plotH * (1 - f);
    root.append(svg("line", { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: "gridline" }));
    root.append(svg("text", { x: PAD.l - 4, y: y + 4, class: "axis", "text-anchor": "end" }, String(+(max * f).toFixed(1))));
  }
  const step = (W - PAD.l - PAD.r) / days;
  for (let d = 1; d <= days; d += d === 1 ? 4 : 5) {
    root.append(svg("text", { x: PAD.l + step * (d - 0.5), y: H - 6, class: "axis", "text-anchor": "middle" }, String(d)));
  }
  return { step, plotH };
}

function barChart(daily, label) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart bars", role: "img", "aria-label": label });
  const max = niceMax(Math.max(0, ...daily.map((d) => d.calls)));
  const { step, plotH } = frame(root, daily.length, max, label);
  daily.forEach((d, i) => {
    if (!d.calls) return;
    const x = PAD.l + step * i + step * 0.15, w = step * 0.7;
    const hA = plotH * d.answered / max, hM = plotH * (d.calls - d.answered) / max;
    const base = PAD.t + plotH;
    const tip = `${i + 1}: ${d.calls} ${t("calls")}, ${d.answered} ${t("answered")}` +
      (d.answered_pct === null ? "" : ` (${d.answered_pct}%)`);
    const g = svg("g", { class: "day" });
    g.append(svg("title", {}, tip));
    g.append(svg("rect", { x, y: base - hA, width: w, height: hA, class: "answered" }));
    if (hM > 0) g.append(svg("rect", { x, y: base - hA - hM, width: w, height: hM, class: "missed" }));
    root.append(g);
  });
  return root;
}

function lineChart(daily, label, series, cls0) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart lines " + cls0, role: "img", "aria-label": label });
  const max = niceMax(Math.max(0, ...daily.flatMap((d) => series.map(([key]) => d[key] || 0))));
  const { step, plotH } = frame(root, daily.length, max, label);
  for (const [key, cls] of series) {
    const points = daily.map((d, i) => d[key] === null ? null
      : [PAD.l + step * (i + 0.5), PAD.t + plotH * (1 - d[key] / max)]).filter(Boolean);
    if (points.length > 1) root.append(svg("polyline", { points: points.map((p) => p.join(",")).join(" "), class: cls }));
    for (const [x, y] of points) root.append(svg("circle", { cx: x, cy: y, r: 2.5, class: cls }));
  }
  return root;
}

function figure(label, value) {
  const box = document.createElement("div");
  box.className = "figure";
  const v = document.createElement("span");
  v.className = "value";
  v.textContent = value;
  const l = document.createElement("span");
  l.textContent = label;
  box.append(v, l);
  return box;
}

function chartLabel(text, keys) {
  const p = document.createElement("p");
  p.className = "chart-label";
  p.textContent = text;
  const legend = document.createElement("span");
  legend.className = "legend";
  for (const [cls, label] of keys) {
    const key = document.createElement("span");
    key.className = "key " + cls;
    key.textContent = label;
    legend.append(key);
  }
  p.append(legend);
  return p;
}

function secs(v) { return v === null ? "–" : `${v} ${t("seconds")}`; }

function drawCharts(data) {
  const host = document.getElementById("charts");
  host.replaceChildren();
  if (!data) return;
  host.dataset.month = data.month; // which month is drawn (a later answer for another month redraws)
  for (const dept of data.departments) {
    const card = document.createElement("article");
    card.className = "chart-card";
    card.dataset.department = dept.id;
    const h = document.createElement("h3");
    h.textContent = dept.name[fleetLang()];
    const m = dept.month;
    const figures = document.createElement("div");
    figures.className = "figures small";
    figures.append(figure(t("calls"), m.calls), figure(t("answered_pct"), m.answered_pct === null ? "–" : `${m.answered_pct}%`),
      figure(t("wait_p50"), secs(m.wait_median_s)), figure(t("wait_p90"), secs(m.wait_p90_s)),
      figure(t("duration_median"), secs(m.duration_median_s)));
    card.append(h, figures);
    if (m.calls) {
      const c1 = chartLabel(t("calls_chart"), [["answered", t("answered")], ["missed", t("missed")]]);
      const c2 = chartLabel(t("wait_chart"), [["p50", t("wait_p50")], ["p90", t("wait_p90")]]);
      const c3 = chartLabel(t("duration_chart"), [["p50", t("duration_median")]]);
      card.append(c1, barChart(dept.daily, t("calls_chart")),
        c2, lineChart(dept.daily, t("wait_chart"), [["wait_p90_s", "p90"], ["wait_median_s", "p50"]], "wait"),
        c3, lineChart(dept.daily, t("duration_chart"), [["duration_median_s", "p50"]], "duration"));
    } else {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = t("no_data");
      card.append(p);
    }
    host.append(card);
  }
}
