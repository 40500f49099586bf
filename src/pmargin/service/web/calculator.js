// Margin calculator: POST /v1/simulate for every model, one request per model (an error in one
// model shows in its row), on the market the service uses.
"use strict";
(() => {
  const { el, api, table, numCell, healthEl, fmt } = PM;
  let instruments = [], models = [], positions = [], lastResults = {};

  function portfolio(extra) {
    const pos = positions.map((p) => Object.assign({ instrument: p.instrument, quantity: Number(p.quantity) },
      p.avg_price ? { avg_price: p.avg_price } : {}));
    if (extra) pos.push(extra);
    const ccy = document.getElementById("margin-ccy").value;
    return { margin_currency: ccy, collateral: { [ccy]: Number(document.getElementById("collateral").value || 0) }, positions: pos };
  }

  function renderPositions() {
    document.getElementById("positions").replaceChildren(table([
      { key: "instrument", label: "instrument" },
      { key: "quantity", label: "quantity (contracts / coin)", num: "", render: (r, td) => {
        td.className = "num";
        const i = el("input", { type: "number", step: "any", value: String(r.quantity), "aria-label": `quantity of ${r.instrument}` });
        i.addEventListener("change", () => { r.quantity = Number(i.value); });
        return i;
      } },
      { key: "mark", label: "mark", num: "", render: (r, td) => {
        const m = instruments.find((x) => x.name === r.instrument);
        numCell(td, m ? m.mark_price : null, m ? m.price_currency : "", m && m.price_currency === "USD" ? 2 : 4);
      } },
      { key: "remove", label: "", render: (r) => el("button", { type: "button", text: "remove", on: { click: () => { positions = positions.filter((p) => p !== r); renderPositions(); } } }) },
    ], positions, { id: "positions-table", empty: "empty: add instruments from the list or paste JSON" }));
  }

  function add(name, qty = 1) {
    const have = positions.find((p) => p.instrument === name);
    if (have) have.quantity = Number(have.quantity) + qty; else positions.push({ instrument: name, quantity: qty });
    renderPositions();
  }

  function search() {
    const words = document.getElementById("find").value.toUpperCase().split(/\s+/).filter(Boolean);
    // a word matches a part of the name (BTC, 27MAR26, 80000, C) from its start, or inside it
    // from three characters on, or the start of the ISO expiry (2026-03)
    const hits = instruments.filter((r) => {
      const parts = r.name.split("-");
      return words.every((w) => parts.some((p) => p.startsWith(w) || (w.length >= 3 && p.includes(w))) ||
        (r.expiry || "").startsWith(w));
    });
    document.getElementById("find-count").textContent = `${hits.length} of ${instruments.length}`;
    document.getElementById("found").replaceChildren(...hits.slice(0, 200).map((r) => el("li", {},
      el("span", { text: r.name }),
      el("span", { class: "num", text: r.mark_price === null ? "no mark" : `${fmt(r.mark_price, r.price_currency === "USD" ? 2 : 4)} ${r.price_currency}` }),
      el("span", {}, el("button", { type: "button", text: "buy 1", "data-inst": r.name, on: { click: () => add(r.name, 1) } }), " ",
        el("button", { type: "button", text: "sell 1", on: { click: () => add(r.name, -1) } })))));
  }

  async function simulateAll(pf) {
    const out = {};
    await Promise.all(models.map(async (m) => {
      try { out[m] = (await api("/v1/simulate", { json: { portfolio: pf, models: [m], explain: true } })).results[m]; }
      catch (e) { out[m] = { error: e.message }; }
    }));
    return out;
  }

  function renderResults(res) {
    const rows = models.map((m) => Object.assign({ model: m }, res[m]));
    document.getElementById("results").replaceChildren(table([
      { key: "model", label: "model", render: (r, td) => { td.className = "model"; return r.model; } },
      { key: "mode", label: "mode", render: (r) => r.error ? "" : (r.explain && r.explain.mode) || "" },
      { key: "initial_margin", label: "initial margin", num: "", render: (r, td) => { if (r.error) { td.colSpan = 4; td.className = "bad-mark"; td.textContent = r.error; return; } numCell(td, r.initial_margin, r.margin_currency, 6); } },
      { key: "maintenance_margin", label: "maintenance margin", num: "", render: (r, td) => { if (r.error) { td.remove(); return; } numCell(td, r.maintenance_margin, r.margin_currency, 6); } },
      { key: "equity", label: "equity", num: "", render: (r, td) => { if (r.error) { td.remove(); return; } numCell(td, r.equity, r.margin_currency, 6); } },
      { key: "health", label: "health", render: (r, td) => { if (r.error) { td.remove(); return; } return healthEl(r.health); } },
    ], rows, { id: "results-table" }));
    const sel = document.getElementById("matrix-model");
    const withGrid = models.filter((m) => res[m] && res[m].explain && PM.byUnderlying(res[m].explain.scenarios).size);
    const keep = sel.value;
    sel.replaceChildren(...withGrid.map((m) => el("option", { value: m, text: m })));
    if (withGrid.includes(keep)) sel.value = keep;
    renderMatrix();
  }

  function renderMatrix() {
    const m = document.getElementById("matrix-model").value;
    const box = document.getElementById("matrix");
    const r = lastResults[m];
    if (!m || !r || !r.explain) { box.replaceChildren(el("p", { class: "note", text: "compute first; only portfolio-margin models have a risk matrix" })); return; }
    box.replaceChildren(...[...PM.byUnderlying(r.explain.scenarios)].flatMap(([u, rows]) => [el("h3", { text: `${u} — ${m}` }), PM.scenarioView(rows, r.margin_currency, ((r.explain.worst_scenario || {})[u] || {}).name)]));
  }

  async function compute() {
    const st = document.getElementById("compute-state");
    st.textContent = "computing…";
    PM.showError("");
    lastResults = await simulateAll(portfolio());
    renderResults(lastResults);
    st.textContent = `computed at ${new Date().toISOString().slice(11, 19)} UTC on the market in use`;
    document.body.dataset.computed = String(Date.now());
  }

  async function whatIf() {
    const inst = document.getElementById("wi-inst").value.trim();
    const qty = Number(document.getElementById("wi-qty").value);
    if (!inst || !Number.isFinite(qty) || qty === 0) { PM.showError("what-if: give an instrument and a non-zero quantity"); return; }
    const [before, after] = await Promise.all([simulateAll(portfolio()), simulateAll(portfolio({ instrument: inst, quantity: qty }))]);
    const rows = models.map((m) => ({ model: m, b: before[m], a: after[m] }));
    const d = (r, k, td) => { if (r.a.error || r.b.error) { td.textContent = (r.a.error || r.b.error); td.className = "bad-mark"; return; }
      const v = r.a[k] - r.b[k]; numCell(td, v, r.a.margin_currency, 6); td.textContent = (v > 0 ? "+" : "") + td.textContent; };
    const v = (r, side, k, td) => { const x = r[side]; if (x.error) { td.textContent = "—"; return; } numCell(td, x[k], x.margin_currency, 6); };
    document.getElementById("whatif").replaceChildren(el("p", { text: `${qty > 0 ? "buy" : "sell"} ${Math.abs(qty)} ${inst}:` }), table([
      { key: "model", label: "model" },
      { key: "im_before", label: "IM before", num: "", render: (r, td) => v(r, "b", "initial_margin", td) },
      { key: "im_after", label: "IM after", num: "", render: (r, td) => v(r, "a", "initial_margin", td) },
      { key: "im_change", label: "IM change", num: "", render: (r, td) => d(r, "initial_margin", td) },
      { key: "mm_before", label: "MM before", num: "", render: (r, td) => v(r, "b", "maintenance_margin", td) },
      { key: "mm_after", label: "MM after", num: "", render: (r, td) => v(r, "a", "maintenance_margin", td) },
      { key: "mm_change", label: "MM change", num: "", render: (r, td) => d(r, "maintenance_margin", td) },
    ], rows, { id: "whatif-table" }));
    document.body.dataset.whatif = String(Date.now());
  }

  function loadJson() {
    try {
      const p = JSON.parse(document.getElementById("paste").value);
      if (!p || !Array.isArray(p.positions || [])) throw new Error("positions must be a list");
      positions = (p.positions || []).map((x) => Object.assign({}, x));
      if (p.margin_currency) document.getElementById("margin-ccy").value = p.margin_currency;
      const c = p.collateral || {};
      document.getElementById("collateral").value = String(c[p.margin_currency || "BTC"] ?? 0);
      renderPositions();
      PM.showError("");
    } catch (e) { PM.showError(`the pasted text is not a portfolio: ${e.message}`); }
  }

  async function start() {
    renderPositions();
    if (!PM.key()) { document.getElementById("compute-state").textContent = "enter an API key above first (any role)"; return; }
    try {
      const [i, m] = await Promise.all([api("/v1/instruments"), api("/v1/models")]);
      instruments = i.instruments;
      models = m.models;
      document.getElementById("inst-names").replaceChildren(...instruments.map((r) => el("option", { value: r.name })));
      search();
      document.body.dataset.ready = "true";
    } catch (e) { PM.showError(e.message); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("find").addEventListener("input", search);
    document.getElementById("find-form").addEventListener("submit", (e) => e.preventDefault());
    document.getElementById("compute-form").addEventListener("submit", (e) => { e.preventDefault(); compute(); });
    document.getElementById("whatif-form").addEventListener("submit", (e) => { e.preventDefault(); whatIf(); });
    document.getElementById("matrix-model").addEventListener("change", renderMatrix);
    document.getElementById("load-json").addEventListener("click", loadJson);
    document.getElementById("show-json").addEventListener("click", () => { document.getElementById("paste").value = JSON.stringify(portfolio(), null, 2); });
    start();
    PM.onKey(start);
  });
})();
