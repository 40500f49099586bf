// Account view: a trader key sees its own account only (the API refuses the others: 403).
"use strict";
(() => {
  const { el, api, table, numCell, healthEl, fmt } = PM;

  function card(label, value, unit, digits = 4, id = null) {
    const v = el("div", { class: "value" });
    numCell(v, value, unit, digits);
    v.className = "value";
    return el("div", Object.assign({ class: "card" }, id ? { id } : {}), el("div", { class: "label", text: label }), v);
  }

  async function show(id) {
    const box = document.getElementById("acct");
    box.hidden = true;
    PM.showError("");
    let a, ev;
    try {
      [a, ev] = await Promise.all([api(`/v1/accounts/${encodeURIComponent(id)}/margin?explain=true`),
        api(`/v1/accounts/${encodeURIComponent(id)}/events?limit=1000`)]);
    } catch (e) {
      PM.showError(e.status === 403 ? `you may not see account ${id} (${e.message})` : e.message);
      document.body.dataset.loaded = "error";
      return;
    }
    const ccy = a.margin_currency, x = a.explain || {};
    document.getElementById("a-id").textContent = a.id;
    document.getElementById("a-book").textContent = `${a.book} (${ccy})`;
    document.getElementById("a-seq").textContent = String(a.seq);
    document.getElementById("a-health").replaceChildren(healthEl(a.health));
    const cards = [
      card("equity", a.equity, ccy, 4, "c-equity"),
      card("initial margin", a.initial_margin, ccy, 4, "c-im"),
      card("maintenance margin", a.maintenance_margin, ccy, 4, "c-mm"),
      card("available (equity − IM)", a.equity - a.initial_margin, ccy, 4, "c-avail"),
    ];
    const ratio = card("margin ratio (MM / equity)", a.margin_ratio === null ? Infinity : 100 * a.margin_ratio, "%", 2, "c-ratio");
    if (a.margin_ratio_reason) ratio.append(el("div", { class: "note", text: a.margin_ratio_reason }));
    cards.push(ratio);
    // distance to liquidation: shown when the service reports it (issue 10 follow-up)
    const d = a.distance_to_liquidation;
    if (d !== undefined && d !== null) {
      const c = el("div", { class: "card", id: "c-distance" }, el("div", { class: "label", text: "distance to liquidation" }));
      if (typeof d === "object") {
        // per underlying: the index move (percent) at which equity reaches MM, down and up
        for (const [u, v] of Object.entries(d)) {
          const line = el("div", { class: "value", "data-underlying": u });
          if (v !== null && typeof v === "object") {
            const pct = (k) => typeof v[k] === "number" ? `${v[k] > 0 ? "+" : ""}${fmt(v[k], 1)} %` : "none";
            line.textContent = `${u}: ${pct("down_pct")} / ${pct("up_pct")}`;
            line.title = JSON.stringify(v);
          } else if (typeof v === "number") { numCell(line, v, "", 4); line.className = "value"; line.prepend(u + " "); }
          else line.textContent = `${u}: ${String(v)}`;
          c.append(line);
        }
        c.append(el("div", { class: "note", text: "index move down / up at which equity reaches MM" }));
      } else { const v = el("div", { class: "value" }); numCell(v, d, "", 4); v.className = "value"; c.append(v); }
      cards.push(c);
    } else {
      cards.push(el("div", { class: "card", id: "c-distance" }, el("div", { class: "label", text: "distance to liquidation" }),
        el("div", { class: "na", text: "the service does not report it for this account" })));
    }
    document.getElementById("a-cards").replaceChildren(...cards);
    document.getElementById("a-balances").replaceChildren(table([
      { key: "currency", label: "currency" }, { key: "amount", label: "balance", num: "", digits: 8, render: (r, td) => { numCell(td, r.amount, r.currency, 8); } },
    ], Object.entries(a.balances).map(([c, v]) => ({ currency: c, amount: v })), { id: "balances-table" }));
    const comps = Object.entries(x.components || {}).map(([k, v]) => ({ component: k.replaceAll("_", " "), value: v }));
    document.getElementById("a-components").replaceChildren(table([
      { key: "component", label: "component" }, { key: "value", label: "amount", num: ccy },
    ], comps, { id: "components-table" }));
    const greeks = new Map(((a.position_greeks || {}).positions || []).map((g) => [g.instrument, g]));
    const prow = a.positions.map((p) => Object.assign({}, p, greeks.get(p.instrument) || {}));
    document.getElementById("a-positions").replaceChildren(table([
      { key: "instrument", label: "instrument" },
      { key: "quantity", label: "quantity", num: "", digits: 4 },
      { key: "entry_notional_usd", label: "entry notional", num: "USD", digits: 2 },
      { key: "delta", label: "delta", num: "coin", digits: 4 },
      { key: "delta_usd", label: "delta", num: "USD", digits: 0 },
      { key: "gamma", label: "gamma", num: "coin/USD", digits: 6 },
      { key: "vega", label: "vega", num: "USD/vol pt", digits: 2 },
      { key: "theta", label: "theta", num: "USD/day", digits: 2 },
    ], prow, { id: "positions-table", empty: "no positions" }));
    const mx = document.getElementById("a-matrix");
    const groups = PM.byUnderlying(x.scenarios);
    if (!groups.size) mx.replaceChildren(el("p", { class: "note", text: `model ${x.model || "?"} (${x.mode || "?"}) has no scenario grid for this account` }));
    else mx.replaceChildren(...[...groups].flatMap(([u, rows]) => [el("h3", { text: `${u} — model ${x.model}` }), PM.scenarioView(rows, ccy, ((x.worst_scenario || {})[u] || {}).name)]));
    const hh = (ev.health_history || []).map((h) => ({ seq: h.seq, time: new Date(1000 * h.time).toISOString().slice(0, 19) + "Z", from: h.from, to: h.to }));
    hh.push({ seq: a.seq, time: "now", from: null, to: a.health });
    document.getElementById("a-health-history").replaceChildren(table([
      { key: "seq", label: "sequence" }, { key: "time", label: "time (UTC)" },
      { key: "from", label: "from", render: (r) => r.from ? healthEl(r.from) : el("span", { class: "note", text: "current" }) },
      { key: "to", label: "to", render: (r) => healthEl(r.to) },
    ], hh, { id: "health-history-table" }), el("p", { class: "note", text: "Transitions seen at market updates since the service started." }));
    const posting = (r) => el("span", { text: r.postings.map((p) => `${p.account} ${p.units >= 0 ? "+" : ""}${p.units} ${p.currency} units`).join("; ") || "—" });
    const liq = ev.events.filter((e) => e.kind.startsWith("liquidat") || e.kind.startsWith("adl") || e.kind.startsWith("takeover"));
    document.getElementById("a-liquidations").replaceChildren(table([
      { key: "seq", label: "sequence" }, { key: "kind", label: "step" },
      { key: "detail", label: "detail", render: (r) => el("code", { text: JSON.stringify(r.payload) }) },
      { key: "postings", label: "ledger postings", render: posting },
    ], liq, { id: "liquidations-table", empty: "no liquidation events for this account (the service does not liquidate yet: issue 11)" }));
    document.getElementById("a-events").replaceChildren(table([
      { key: "seq", label: "sequence" }, { key: "created_at", label: "time (UTC)" }, { key: "kind", label: "kind" },
      { key: "detail", label: "detail", render: (r) => el("code", { text: JSON.stringify(r.payload) }) },
      { key: "postings", label: "ledger postings (minor units)", render: posting },
    ], ev.events, { id: "events-table", empty: "no events" }));
    box.hidden = false;
    document.body.dataset.loaded = a.id;
  }

  async function start() {
    const form = document.getElementById("acct-form");
    const input = document.getElementById("acct-id");
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const id = input.value.trim();
      if (!id) return;
      history.replaceState(null, "", `?id=${encodeURIComponent(id)}`);
      show(id);
    });
    if (!PM.key()) { document.getElementById("acct-hint").textContent = "enter an API key above first"; return; }
    let id = new URLSearchParams(location.search).get("id");
    try {
      const me = await PM.whoami();
      if (me && me.role === "trader") {
        document.getElementById("acct-hint").textContent = `a trader key shows its own account (${me.account}) only`;
        if (!id) id = me.account;
      }
    } catch (e) { PM.showError(e.message); return; }
    if (id) { input.value = id; show(id); }
  }
  document.addEventListener("DOMContentLoaded", () => { start(); PM.onKey(start); });
})();
