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
  // what the browser test reads: first render time, each update's arrival (ms since epoch),
  // and when the service published each market's book message (server clock, ms, by digest)
  window.pmOverview = { firstRenderMs: null, updates: [], marketPublished: {} };

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
      el("div", { class: "card", id: "insurance-fund" }, el("div", { class: "label", text: "insurance fund" })),
      el("div", { class: "card", id: "liquidations" }, el("div", { class: "label", text: "liquidations" })));
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
      if (a.summary) enforcement(a.book).catch((e) => PM.showError(e.message));
      proximity(a.seq);
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
      if (m.cause === "market" && m.market_digest && typeof m.published_at === "number" &&
          !(m.market_digest in window.pmOverview.marketPublished))
        window.pmOverview.marketPublished[m.market_digest] = 1000 * m.published_at;
      if (typeof m.seq === "number" && m.seq !== seqShown) refresh();
    });
    ws.addEventListener("close", (ev) => {
      if (ev.code !== 1000) document.getElementById("st-mode").textContent = `stream closed (${ev.code} ${ev.reason || ""})`;
      startPolling();
    });
  }

  // Liquidation-proximity curve: GET /v1/book/proximity (computed in the background by the
  // service, stamped with the sequence number it was computed on). Asked again when the book's
  // sequence number moves or while a computation runs, at most every 2 s.
  let proxAsked = 0, proxSeq = -1, proxTimer = null;
  function proximitySvg(c) {
    const NS = "http://www.w3.org/2000/svg";
    const W = 640, H = 270, L = 52, R = 26, T = 14, B = 40;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("class", "chart");
    svg.setAttribute("id", "proximity-chart");
    svg.setAttribute("role", "img");
    const s = (tag, attrs, text) => {
      const e = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (text !== undefined) e.textContent = text;
      svg.append(e);
      return e;
    };
    const x0 = c.moves[0], x1 = c.moves[c.moves.length - 1];
    const top = Math.max(0.05, ...c.share_accounts, ...c.share_open_interest);
    const ymax = Math.min(1, Math.ceil(top * 20) / 20);
    const X = (m) => L + (W - L - R) * (m - x0) / Math.max(1e-12, x1 - x0);
    const Y = (v) => T + (H - T - B) * (1 - v / ymax);
    for (let k = 0; k <= 4; k++) {
      const v = ymax * k / 4;
      s("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: "grid" });
      s("text", { x: L - 6, y: Y(v) + 4, "text-anchor": "end" }, `${(100 * v).toFixed(ymax < 0.2 ? 1 : 0)}%`);
    }
    for (let m = Math.ceil(x0 * 5) / 5; m <= x1 + 1e-9; m += 0.2) {
      s("line", { x1: X(m), x2: X(m), y1: T, y2: H - B, class: "grid" });
      s("text", { x: X(m), y: H - B + 15, "text-anchor": "middle" }, `${m > 1e-9 ? "+" : ""}${(100 * m).toFixed(0)}%`);
    }
    s("text", { x: L + (W - L - R) / 2, y: H - 6, "text-anchor": "middle" }, "index move (every underlying, vols sticky to strike)");
    const pts = (ys) => c.moves.map((m, i) => `${X(m).toFixed(1)},${Y(ys[i]).toFixed(1)}`).join(" ");
    // two series told apart by line style and a label at their end, not by colour alone
    s("polyline", { points: pts(c.share_accounts), class: "line accounts", "data-series": "share_accounts" });
    s("polyline", { points: pts(c.share_open_interest), class: "line oi", "data-series": "share_open_interest" });
    s("line", { x1: X(0), x2: X(0), y1: T, y2: H - B, class: "zero" });
    svg.setAttribute("aria-label", `liquidation proximity: share of accounts (solid) and of open interest (dashed) under maintenance margin for index moves from ${(100 * x0).toFixed(0)}% to ${(100 * x1).toFixed(0)}%`);
    return svg;
  }
  function renderProximity(p) {
    const box = document.getElementById("proximity");
    const c = p.curve;
    if (!c) {
      box.replaceChildren(el("p", { class: "na", id: "proximity-na",
        text: p.status === "failed" ? `the curve could not be computed: ${p.reason}` :
          p.status === "computing" ? "the curve is being computed by the service (seconds on a large book)" :
            p.reason || p.status }));
      return;
    }
    // the table: the curve's points nearest to these moves (within 1 %), each once
    const pick = [];
    for (const m of [-0.5, -0.3, -0.1, 0, 0.1, 0.3, 0.5]) {
      const i = c.moves.reduce((b, x, k) => Math.abs(x - m) < Math.abs(c.moves[b] - m) ? k : b, 0);
      if (Math.abs(c.moves[i] - m) < 0.01 && !pick.includes(i)) pick.push(i);
    }
    const age = (Date.now() - new Date(c.computed_at).getTime()) / 1000;
    const stamp = el("p", { class: "note", id: "proximity-stamp", "data-status": p.status, "data-seq": String(c.seq),
      text: `${p.status === "current" ? "current" : "outdated (" + p.reason + ")"} · computed on sequence ${c.seq} ` +
        `in ${fmt(c.seconds, 1)} s, ${fmt(Math.max(0, age), 0)} s ago · ${c.model} · ${c.active_accounts.toLocaleString("en-US")} accounts with positions, ` +
        `open interest ${fmt(c.open_interest_usd, 0)} USD` });
    const legend = el("p", { class: "legend" },
      el("span", { class: "key accounts", text: "── share of accounts under MM" }),
      el("span", { class: "key oi", text: "- - - share of open interest under MM" }));
    const rows = pick.map((i) => ({ move: c.moves[i], n: c.accounts_under_mm[i], sa: c.share_accounts[i], so: c.share_open_interest[i] }));
    const tbl = table([
      { key: "move", label: "index move", render: (r, td) => { numCell(td, 100 * r.move, "%", 0); } },
      { key: "n", label: "accounts under MM", num: "", digits: 0 },
      { key: "sa", label: "share of accounts", render: (r, td) => { numCell(td, 100 * r.sa, "%", 2); } },
      { key: "so", label: "share of open interest", render: (r, td) => { numCell(td, 100 * r.so, "%", 2); } },
    ], rows, { id: "proximity-table" });
    box.replaceChildren(stamp, proximitySvg(c), legend, el("div", { class: "scroll" }, tbl),
      el("p", { class: "note", text: p.method }));
  }
  async function proximity(seq) {
    if (seq !== undefined && seq === proxSeq && !proxTimer) return;
    if (Date.now() - proxAsked < 2000) { if (!proxTimer) proxTimer = setTimeout(() => { proxTimer = null; proximity(); }, 2000); return; }
    proxAsked = Date.now();
    try {
      const p = await api("/v1/book/proximity");
      renderProximity(p);
      proxSeq = p.curve && p.status === "current" ? p.seq : -1;
      if ((p.computing || p.status === "outdated" || p.status === "computing") && !proxTimer)
        proxTimer = setTimeout(() => { proxTimer = null; proximity(); }, 2000);
    } catch (e) {
      document.getElementById("proximity").replaceChildren(el("p", { class: "na", id: "proximity-na", text: e.message }));
    }
  }

  // Insurance fund, liquidations in progress and the circuit breaker: GET /v1/book.
  async function enforcement(bookId) {
    const b = await api("/v1/book");
    const e = b.enforcement && b.enforcement[bookId];
    const fund = document.getElementById("insurance-fund"), liq = document.getElementById("liquidations");
    if (!fund || !liq) return;
    if (!e) {
      fund.replaceChildren(el("div", { class: "label", text: "insurance fund" }), el("div", { class: "na", text: "no enforcement figures for this book (no accounts or no market yet)" }));
      liq.replaceChildren(el("div", { class: "label", text: "liquidations" }), el("div", { class: "na", text: "as for the insurance fund" }));
      return;
    }
    const v = el("div", { class: "value" });
    numCell(v, Number(e.insurance_fund), ccy, 4);
    v.className = "value";
    fund.replaceChildren(el("div", { class: "label", text: "insurance fund" }), v);
    const inProgress = e.liquidation_in_progress;
    liq.replaceChildren(el("div", { class: "label", text: "liquidations" }),
      el("div", { class: "value", id: "liq-progress", text: inProgress ? `in progress: ${inProgress}` : "none in progress" }),
      el("div", { class: "note", text: `${e.liquidations_done} done · ${e.under_maintenance_margin} under MM · breaker ${e.breaker.state}` }));
  }

  async function start() {
    await refresh();
    if (document.body.dataset.stream === "1" && PM.key()) listen(); else startPolling();
  }

  document.addEventListener("DOMContentLoaded", () => {
    start();
    setInterval(tickAge, 1000);
    PM.onKey(() => { document.getElementById("needs-key").hidden = true; refresh(); });
  });
})();
