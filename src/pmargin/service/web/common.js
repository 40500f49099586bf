// pmargin dashboard: shared helpers (no library). The API key lives in sessionStorage only.
"use strict";
const PM = (() => {
  const KEY = "pmargin.apiKey";
  const listeners = [];
  const key = () => sessionStorage.getItem(KEY) || "";

  function showError(msg) {
    const el = document.getElementById("error");
    if (!el) return;
    el.hidden = !msg;
    el.textContent = msg || "";
  }

  class ApiError extends Error {
    constructor(status, body) {
      const what = body && (body.reason ? `${body.field} = ${JSON.stringify(body.value)}: ${body.reason}`
        : body.detail || JSON.stringify(body));
      super(`HTTP ${status}: ${what}`);
      this.status = status;
      this.body = body;
    }
  }

  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    if (key()) headers.Authorization = `Bearer ${key()}`;
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      options = Object.assign({}, options, { method: options.method || "POST", body: JSON.stringify(options.json) });
    }
    const r = await fetch(path, Object.assign({}, options, { headers }));
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = { detail: text.slice(0, 200) }; }
    if (!r.ok) throw new ApiError(r.status, body);
    return body;
  }

  let spec = null;
  // Which optional routes this service has (read from its own OpenAPI, never by probing).
  async function hasRoute(path) {
    if (spec === null) spec = await (await fetch("/openapi.json")).json();
    return Object.prototype.hasOwnProperty.call(spec.paths || {}, path);
  }

  let me = null;
  async function whoami() {
    if (!key()) return null;
    if (me === null) me = await api("/v1/me");
    return me;
  }

  function initKeyForm() {
    const form = document.getElementById("key-form");
    const input = document.getElementById("api-key");
    const state = document.getElementById("key-state");
    const show = async () => {
      if (!key()) { state.textContent = "no key: enter one (kept for this browser tab only)"; return; }
      try {
        const m = await whoami();
        state.textContent = `key in use: ${m.role}${m.account ? " of " + m.account : ""}`;
      } catch (e) { state.textContent = "the key was refused"; showError(e.message); }
    };
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = input.value.trim();
      if (!v) return;
      sessionStorage.setItem(KEY, v);
      input.value = "";
      me = null;
      show();
      listeners.forEach((f) => f());
    });
    document.getElementById("key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY);
      me = null;
      show();
    });
    show();
  }

  // Numbers: right-aligned cells, grouped digits, unit after the number, raw value in data-value.
  function fmt(x, digits = 4) {
    if (x === null || x === undefined) return "—";
    if (typeof x === "string") x = Number(x);
    if (!Number.isFinite(x)) return x > 0 ? "∞" : x < 0 ? "−∞" : "—";
    return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function numCell(td, x, unit = "", digits = 4) {
    td.className = "num";
    td.dataset.value = x === null || x === undefined ? "" : String(x);
    td.textContent = fmt(x, digits) + (unit && x !== null && x !== undefined ? " " + unit : "");
    return td;
  }
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  function healthEl(h) {
    return el("span", { class: `health ${h}`, text: String(h).replace("_", " ") });
  }
  function pct(x) { return x === null || x === undefined ? "—" : (100 * x).toFixed(2) + " %"; }

  // A table from rows: cols = [{key, label, num: unit|null, digits, render(row)}].
  function table(cols, rows, opts = {}) {
    const t = el("table", opts.id ? { id: opts.id } : {});
    const tr = el("tr");
    for (const c of cols) {
      const th = el("th", { scope: "col", class: c.num !== undefined ? "num" : "" });
      if (opts.sort && c.sortable) {
        const b = el("button", { class: "sort", type: "button", "data-key": c.key, text: c.label });
        b.addEventListener("click", () => opts.sort.onSort(c.key));
        th.append(b);
        if (opts.sort.key === c.key) th.setAttribute("aria-sort", opts.sort.order === "asc" ? "ascending" : "descending");
      } else th.textContent = c.label;
      tr.append(th);
    }
    t.append(el("thead", {}, tr));
    const tb = el("tbody");
    for (const r of rows) {
      const row = el("tr");
      for (const c of cols) {
        const td = el("td");
        if (c.render) { const v = c.render(r, td); if (v !== undefined && v !== td) td.append(v); }
        else if (c.num !== undefined) numCell(td, r[c.key], c.num, c.digits ?? 4);
        else td.textContent = r[c.key] ?? "—";
        if (c.key) td.dataset.col = c.key;
        row.append(td);
      }
      tb.append(row);
    }
    if (!rows.length) tb.append(el("tr", {}, el("td", { colspan: String(cols.length), class: "note", text: opts.empty || "none" })));
    t.append(tb);
    return t;
  }

  // Risk matrix heat map (inline SVG): rows = vol shock, columns = price shock, cell = the
  // scenario's P&L times its weight (what the model takes the worst of). The worst cell (the
  // model's binding scenario when given, else the lowest) has a thick black border and a ▼, and
  // is named in the caption: not only a colour.
  const VOL_ORDER = ["up", "none", "down"];
  const volLabel = (v) => typeof v === "number" ? `vol ${v > 0 ? "+" : ""}${(100 * v).toFixed(0)}%` : `vol ${v}`;
  const priceLabel = (p) => `${p > 0 ? "+" : ""}${(100 * p).toFixed(0)}%`;
  function heatmap(rows, unit, worstName) {
    const val = (r) => r.pnl * (typeof r.weight === "number" ? r.weight : 1);
    const ps = [...new Set(rows.map((r) => r.price_shock))].sort((a, b) => a - b);
    const vs = [...new Set(rows.map((r) => r.vol_shock))].sort((a, b) =>
      typeof a === "number" && typeof b === "number" ? b - a :
        (VOL_ORDER.indexOf(a) + 99 * (VOL_ORDER.indexOf(a) < 0)) - (VOL_ORDER.indexOf(b) + 99 * (VOL_ORDER.indexOf(b) < 0)));
    const cell = new Map();
    for (const r of rows) {
      const k = `${r.price_shock}|${r.vol_shock}`;
      if (!cell.has(k) || val(r) < val(cell.get(k))) cell.set(k, r);
    }
    let worst = null;
    for (const [k, r] of cell) {
      if (worstName !== undefined && worstName !== null) { if (r.name === worstName) worst = [k, r]; }
      else if (worst === null || val(r) < val(worst[1])) worst = [k, r];
    }
    const maxAbs = Math.max(1e-12, ...[...cell.values()].map((r) => Math.abs(val(r))));
    const cw = 58, ch = 30, left = 70, top = 34;
    const W = left + cw * ps.length + 4, H = top + ch * vs.length + 8;
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("width", String(W));
    svg.setAttribute("class", "heatmap");
    svg.setAttribute("role", "img");
    const s = (tag, attrs, text, parent = svg) => {
      const e = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (text !== undefined) e.textContent = text;
      parent.append(e);
      return e;
    };
    s("text", { x: left, y: 12 }, `price shock → (weighted P&L in ${unit})`);
    ps.forEach((p, i) => s("text", { x: left + i * cw + cw / 2, y: top - 6, "text-anchor": "middle" }, priceLabel(p)));
    vs.forEach((v, j) => s("text", { x: left - 6, y: top + j * ch + ch / 2 + 3, "text-anchor": "end" }, volLabel(v)));
    let worstRect = null;
    ps.forEach((p, i) => vs.forEach((v, j) => {
      const k = `${p}|${v}`;
      if (!cell.has(k)) return;
      const r0 = cell.get(k), x = val(r0), a = Math.min(1, Math.abs(x) / maxAbs);
      // loss: red, gain: blue (a colour-blind safe pair); darker = larger share of the largest |P&L|
      const rgb = x < 0 ? [207, 34, 46] : [9, 105, 218];
      const mix = (c) => Math.round(255 - (255 - c) * (0.12 + 0.88 * a));
      const isWorst = worst !== null && k === worst[0];
      const r = s("rect", { x: left + i * cw, y: top + j * ch, width: cw - 2, height: ch - 2,
        fill: `rgb(${mix(rgb[0])},${mix(rgb[1])},${mix(rgb[2])})`, "data-price-shock": p,
        "data-vol-shock": v, "data-pnl": x, "data-name": r0.name });
      s("title", {}, `${isWorst ? "worst: " : ""}${r0.name}: P&L ${fmt(r0.pnl)} ${unit} × weight ${r0.weight ?? 1}`, r);
      const t = s("text", { x: left + i * cw + cw / 2, y: top + j * ch + ch / 2 + 3, "text-anchor": "middle",
        fill: a > 0.55 ? "#fff" : "#000" }, (isWorst ? "▼" : "") + fmt(x, Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 1 ? 2 : 3));
      if (isWorst) worstRect = [r, t];
    }));
    if (worstRect) {
      worstRect[0].classList.add("worst");
      worstRect[0].setAttribute("data-worst", "true");
      svg.append(worstRect[0], worstRect[1]); // drawn last (border whole), its value on top
    }
    const w = worst ? worst[1] : null;
    const text = w ? `Worst scenario (▼, outlined): ${w.name} — price ${priceLabel(w.price_shock)}, ${volLabel(w.vol_shock)}, ` +
      `P&L ${fmt(w.pnl)} ${unit}${(w.weight ?? 1) !== 1 ? ` × weight ${w.weight}` : ""}. Red: loss, blue: gain; darker is larger.` : "no scenarios";
    svg.setAttribute("aria-label", `risk matrix: ${ps.length} price shocks by ${vs.length} vol shocks. ${text}`);
    return el("div", { class: "scroll" }, svg, el("p", { class: "legend", text }));
  }

  // The heat map when the scenarios form a price x vol grid (PM presets); otherwise (var-fhs:
  // historical days) the table of the worst scenarios, the binding one marked.
  function scenarioView(rows, unit, worstName) {
    const ps = new Set(rows.map((r) => r.price_shock)), vs = new Set(rows.map((r) => r.vol_shock));
    if (vs.size <= 7 && ps.size <= 41) return heatmap(rows, unit, worstName); // a grid (cells may be empty)
    const worst = [...rows].sort((a, b) => a.pnl - b.pnl).slice(0, 15);
    const t = table([
      { key: "name", label: "scenario", render: (r) => r.name === worstName ? el("b", { text: `▼ ${r.name} (binding)` }) : r.name },
      { key: "price_shock", label: "price move", num: "%", digits: 2, render: (r, td) => { numCell(td, 100 * r.price_shock, "%", 2); } },
      { key: "vol_shock", label: "vol", render: (r) => String(r.vol_shock) },
      { key: "weight", label: "weight", num: "", digits: 4 },
      { key: "pnl", label: "P&L", num: unit, digits: 6 },
    ], worst, { id: "worst-scenarios" });
    return el("div", { class: "scroll" }, el("p", { class: "note", text: `The model's scenarios form no price × vol grid; its ${worst.length} worst (of ${rows.length}):` }), t);
  }

  // Scenario rows of a margin explanation, grouped per underlying.
  function byUnderlying(scenarios) {
    const out = new Map();
    for (const r of scenarios || []) {
      if (typeof r.price_shock !== "number" || r.vol_shock === undefined || r.vol_shock === null) continue;
      const u = r.underlying || "all";
      if (!out.has(u)) out.set(u, []);
      out.get(u).push(r);
    }
    return out;
  }

  document.addEventListener("DOMContentLoaded", initKeyForm);
  return { key, api, hasRoute, whoami, showError, onKey: (f) => listeners.push(f), fmt, numCell, el,
    healthEl, pct, table, heatmap, scenarioView, byUnderlying, ApiError };
})();
