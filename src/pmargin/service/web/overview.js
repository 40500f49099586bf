// Book overview (risk key): totals, health, the largest requirements, the accounts nearest liquidation.
"use strict";
(() => {
  const { el, api, table, numCell, healthEl, fmt, pct } = PM;
  const tables = {
    largest: { sort: "initial_margin", order: "desc", page: 1, health: [] },
    nearest: { sort: "margin_ratio", order: "desc", page: 1, health: ["healthy", "margin_call"] },
  };
  const SIZE = 20;
  let ccy = "", seqShown = -1, valuation = null, mode = "", busy = false, again = false;
  // what the browser test reads: first render time and each update's arrival (ms since epoch)
  window.pmOverview = { firstRenderMs: null, updates: [] };

  const cols = () => [
    { key: "account", label: "account", sortable: true, render: (r) => el("a", { href: `/ui/account?id=${encodeURIComponent(r.account)}`, text: r.account }) },
    { key: "equity", label: "equity", num: ccy, sortable: true },
    { key: "initial_margin", label: "IM", num: ccy, sortable: true },
    { key: "maintenance_margin", label: "MM", num: ccy, sortable: true },
    { key: "margin_ratio", label: "MM / equity", num: "", sortable: true, render: (r, td) => { numCell(td, r.margin_ratio === null ? Infinity : 100 * r.margin_ratio, "%", 2); } },
    { key: "excess_over_mm", label: "equity − MM", num: ccy, sortable: true },
    { key: "health", label: "health", render: (r) => healthEl(r.health) },
  ];

  async function loadTable(name) {
    const t = tables[name];
    const q = new URLSearchParams({ sort: t.sort, order: t.order, page: t.page, size: SIZE });
    t.health.forEach((h) => q.append("health", h));
    return api(`/v1/book/accounts?${q}`);
  }

  function renderTable(name, data) {
    const t = tables[name];
    const box = document.getElementById(name);
    const onSort = (k) => {
      if (t.sort === k) t.order = t.order === "desc" ? "asc" : "desc";
      else { t.sort = k; t.order = k === "account" ? "asc" : "desc"; }
      t.page = 1;
      refresh();
    };
    const go = (p) => { t.page = p; refresh(); };
    const pager = el("div", { class: "pager" },
      el("button", { type: "button", text: "‹ previous", on: { click: () => go(Math.max(1, t.page - 1)) }, ...(t.page <= 1 ? { disabled: "" } : {}) }),
      el("span", { text: `page ${data.page} of ${Math.max(1, data.pages)} · ${data.total.toLocaleString("en-US")} accounts` }),
      el("button", { type: "button", text: "next ›", on: { click: () => go(t.page + 1) }, ...(t.page >= data.pages ? { disabled: "" } : {}) }));
    box.replaceChildren(table(cols(), data.rows, { id: `${name}-table`, sort: { key: t.sort, order: t.order, onSort } }), pager);
  }

  function card(label, value, unit, digits = 2) {
    const v = el("div", { class: "value" });
    numCell(v, value, unit, digits);
    v.className = "value";
    return el("div", { class: "card" }, el("div", { class: "label", text: label }), v);
  }

  function renderSummary(a) {
    const s = a.summary;
    document.getElementById("st-book").textContent = `${a.book} (${ccy})`;
    document.getElementById("st-seq").textContent = String(a.seq);
    valuation = a.market ? new Date(a.market.valuation_time) : null;
    document.getElementById("st-valuation").textContent = a.market ? a.market.valuation_time : "no market";
    const cards = document.getElementById("cards");
    if (!s) { cards.replaceChildren(el("p", { class: "note", text: "no accounts or no market yet" })); return; }
    cards.replaceChildren(
      card("accounts", s.accounts, "", 0),
      card("total equity", s.total_equity, ccy),
      card("total initial margin", s.total_initial_margin, ccy),
      card("total maintenance margin", s.total_maintenance_margin, ccy),
      card("in liquidation or bankrupt", s.by_health.liquidation.accounts + s.by_health.bankrupt.accounts, "accounts", 0),
      el("div", { class: "card", id: "insurance-fund" }, el("div", { class: "label", text: "insurance fund" }),
        el("div", { class: "na", text: "the service keeps no insurance fund yet (liquidation is not wired in: issue 11)" })),
      el("div", { class: "card", id: "liquidations" }, el("div", { class: "label", text: "liquidations in progress" }),
        el("div", { class: "na", text: "the service runs no liquidations yet (issue 11); accounts under MM are counted above" })));
    const rows = Object.entries(s.by_health).map(([h, v]) => ({ health: h, accounts: v.accounts, share: v.accounts / Math.max(1, s.accounts), equity: v.equity }));
    document.getElementById("health").replaceChildren(table([
      { key: "health", label: "state", render: (r) => healthEl(r.health) },
      { key: "accounts", label: "accounts", num: "", digits: 0 },
      { key: "share", label: "share", num: "%", digits: 2, render: (r, td) => { numCell(td, 100 * r.share, "%", 2); } },
      { key: "equity", label: "equity", num: ccy },
    ], rows, { id: "health-table" }));
  }

  function tickAge() {
    const s = valuation ? (Date.now() - valuation.getTime()) / 1000 : null;
    document.getElementById("st-age").textContent = s === null ? "—" : s < 3600 ? `${fmt(s, 0)} s` :
      s < 172800 ? `${fmt(s / 3600, 1)} h (${fmt(s, 0)} s)` : `${fmt(s / 86400, 1)} days (${fmt(s, 0)} s)`;
  }

  async function refresh() {
    if (!PM.key()) { document.getElementById("needs-key").hidden = false; return; }
    if (busy) { again = true; return; }
    busy = true;
    try {
      const me = await PM.whoami();
      if (me.role !== "risk") {
        PM.showError(`this page needs a risk key (the key in use is a ${me.role} key${me.account ? " of " + me.account : ""}: the account page shows it)`);
        return;
      }
      const [a, b] = await Promise.all([loadTable("largest"), loadTable("nearest")]);
      ccy = a.margin_currency;
      renderSummary(a);
      renderTable("largest", a);
      renderTable("nearest", b);
      tickAge();
      document.getElementById("st-refresh").textContent = new Date().toISOString().slice(11, 23) + " UTC";
      PM.showError("");
      const now = performance.timeOrigin + performance.now();
      if (window.pmOverview.firstRenderMs === null) window.pmOverview.firstRenderMs = performance.now();
      if (a.seq !== seqShown) { window.pmOverview.updates.push({ seq: a.seq, market: a.market && a.market.digest, at: now }); seqShown = a.seq; }
      document.body.dataset.seq = String(a.seq);
    } catch (e) {
      PM.showError(e.status === 403 ? "this page needs a risk key (" + e.message + ")" : e.message);
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }

  // Live updates: the sequence number of /healthz (no key, a few bytes) is polled every 250 ms;
  // the tables are fetched again only when it moved. (Stream plug-in point: /v1/stream.)
  let lastSeq = null;
  async function poll() {
    try {
      const h = await (await fetch("/healthz", { cache: "no-store" })).json();
      if (lastSeq !== null && h.seq !== lastSeq) refresh();
      lastSeq = h.seq;
    } catch (e) { /* the service is restarting: try again at the next tick */ }
  }

  // With the stream (/v1/stream, WebSocket): the key goes in the first message (never in the
  // URL); every message with a new sequence number refreshes the tables. If the socket closes,
  // the page falls back to polling.
  let polling = null;
  function startPolling() {
    if (polling === null) polling = setInterval(poll, 150);
    mode = "polling /healthz every 150 ms, tables refetched on a new sequence number";
    document.getElementById("st-mode").textContent = mode;
  }
  function listen() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/stream`);
    ws.addEventListener("open", () => ws.send(JSON.stringify({ key: PM.key() })));
    ws.addEventListener("message", (ev) => {
      let m = null;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.type === "hello") {
        mode = "live: WebSocket /v1/stream";
        document.getElementById("st-mode").textContent = mode;
      }
      if (typeof m.seq === "number" && m.seq !== seqShown) refresh();
    });
    ws.addEventListener("close", (ev) => {
      if (ev.code !== 1000) document.getElementById("st-mode").textContent = `stream closed (${ev.code} ${ev.reason || ""})`;
      startPolling();
    });
  }

  async function proximity() {
    const box = document.getElementById("proximity");
    box.replaceChildren(el("p", { class: "na", id: "proximity-na",
      text: "the liquidation-proximity curve (share of accounts and of open interest under MM against index moves) needs the book's proximity data from the service, which it does not publish yet" }));
  }

  async function start() {
    await refresh();
    if (document.body.dataset.stream === "1" && PM.key()) listen(); else startPolling();
    proximity();
  }

  document.addEventListener("DOMContentLoaded", () => {
    start();
    setInterval(tickAge, 1000);
    PM.onKey(() => { document.getElementById("needs-key").hidden = true; refresh(); });
  });
})();
