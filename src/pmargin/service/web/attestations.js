// Attestations: the latest signed epoch, its root and input digests, the signature checked in
// the browser when Web Crypto has Ed25519, and an account's inclusion proof checked here with
// Web Crypto SHA-256 (the leaf format and the tree of docs/attestations.md).
"use strict";
(() => {
  const { el, api, table, fmt } = PM;
  const enc = new TextEncoder();
  const hex = (b) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");
  const unhex = (h) => {
    if (typeof h !== "string" || h.length % 2 || /[^0-9a-f]/i.test(h)) throw new Error(`not hex: ${String(h).slice(0, 20)}`);
    return Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));
  };
  const cat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let k = 0;
    for (const p of parts) { out.set(p, k); k += p.length; }
    return out;
  };
  const sha256 = async (b) => new Uint8Array(await crypto.subtle.digest("SHA-256", b));

  // canonical JSON (keys sorted, no whitespace, ASCII only): what the service signs
  function canonical(v) {
    if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
    if (v !== null && typeof v === "object") return `{${Object.keys(v).sort().map((k) => `${canonical(k)}:${canonical(v[k])}`).join(",")}}`;
    if (typeof v === "number" && !Number.isSafeInteger(v)) throw new Error(`not an exact integer: ${v}`);
    return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  }

  // pmargin-leaf/1: 100 bytes, big-endian
  function leafBytes(leaf) {
    const b = new Uint8Array(100), dv = new DataView(b.buffer);
    const ascii = (s, at, n, what) => {
      if (typeof s !== "string" || s.length < 1 || s.length > n || /[^\x20-\x7e]/.test(s)) throw new Error(`leaf ${what} must be 1-${n} ASCII characters`);
      b.set(enc.encode(s), at);
    };
    b[0] = 1;
    ascii(leaf.account, 1, 64, "account");
    ascii(leaf.currency, 65, 10, "currency");
    [["equity", 75], ["initial_margin", 83], ["maintenance_margin", 91]].forEach(([k, at]) => {
      if (!Number.isSafeInteger(leaf[k])) throw new Error(`leaf ${k} is not an exact integer`);
      dv.setBigInt64(at, BigInt(leaf[k]));
    });
    if (![0, 1, 2, 3].includes(leaf.health)) throw new Error("leaf health must be 0-3");
    b[99] = leaf.health;
    return b;
  }

  // RFC 6962 path: sibling on the left for an odd index, on the right for an even one that has
  // a right neighbour; the last node of an odd level is promoted without a sibling
  async function rootFromProof(p) {
    if (!Number.isSafeInteger(p.index) || !Number.isSafeInteger(p.count) || p.index < 0 || p.index >= p.count) throw new Error("index outside the tree");
    let h = await sha256(cat(Uint8Array.of(0), leafBytes(p.leaf)));
    let i = p.index, n = p.count, used = 0;
    while (n > 1) {
      if (i % 2 === 1) h = await sha256(cat(Uint8Array.of(1), unhex(p.path[used++] || ""), h));
      else if (i + 1 < n) h = await sha256(cat(Uint8Array.of(1), h, unhex(p.path[used++] || "")));
      i = Math.floor(i / 2);
      n = Math.ceil(n / 2);
    }
    if (used !== p.path.length) throw new Error(`the path has ${p.path.length} hashes; a tree of ${p.count} leaves needs ${used} at index ${p.index}`);
    return hex(h);
  }

  async function checkSignature(doc, publicKey) {
    let key;
    try {
      key = await crypto.subtle.importKey("raw", unhex(publicKey), { name: "Ed25519" }, false, ["verify"]);
    } catch (e) {
      return { ok: null, text: "not checked in this browser (its Web Crypto has no Ed25519): check it with `pmargin verify att.json --public-key key.json`" };
    }
    const msg = cat(enc.encode("pmargin-attestation/1\u0000"), enc.encode(canonical(doc.attestation)));
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, unhex(doc.signature), msg);
    return { ok, text: ok ? "valid: Ed25519 over the canonical attestation, checked in this browser" : "INVALID: the signature does not match the attestation and the key" };
  }

  const mark = (ok, text) => el("span", { class: ok === null ? "note" : ok ? "ok-mark" : "bad-mark", text });
  const row = (label, value) => el("tr", {}, el("th", { scope: "row", text: label }), el("td", {}, value));
  const code = (s) => el("code", { class: "digest", text: String(s) });

  async function showLatest(box) {
    const [doc, pk] = await Promise.all([api("/v1/attestations/latest"), api("/v1/attestations/public-key")]);
    const a = doc.attestation;
    const sig = await checkSignature(doc, pk.public_key);
    const keyId = hex(await sha256(unhex(pk.public_key))).slice(0, 16);
    const sameKey = doc.public_key === pk.public_key && a.key_id === keyId;
    box.replaceChildren(
      el("h2", { text: `Latest attestation: epoch ${a.epoch}` }),
      el("div", { class: "scroll" }, el("table", { id: "att-table" }, el("tbody", {},
        row("signature", mark(sig.ok, sig.text)),
        row("signed by key", el("span", {}, code(pk.public_key), " ", mark(sameKey,
          sameKey ? "the service's published key (key id matches)" : "not the service's published key"))),
        row("Merkle root", code(a.merkle_root)),
        row("leaves", el("span", { text: `${a.leaves.count.toLocaleString("en-US")} accounts, ${a.leaves.format}, scale ${a.leaves.scale}, ${a.leaves.rounding}` })),
        row("sequence (log position)", el("span", { text: String(a.seq) })),
        row("log hash", code(a.log_hash)),
        row("market digest", code(a.market_digest)),
        row("market valuation time", el("span", { text: a.valuation_time })),
        row("engine", el("span", { text: `${a.engine.name} ${a.engine.version} (${a.engine.kernels} kernels)` })),
        row("created at", el("span", { text: a.created_at }))))),
      el("h3", { text: "Books" }),
      table([{ key: "id", label: "book" }, { key: "margin_currency", label: "margin currency" }, { key: "model", label: "model" },
        { key: "params_digest", label: "parameters digest", render: (r) => code(r.params_digest) },
        { key: "accounts", label: "accounts", num: "", digits: 0 }], a.books, { id: "att-books" }),
      el("p", { class: "note", text: "A third party should take the public key from the venue out of band, not from the server it checks; `pmargin verify --recompute` re-runs the engine on the epoch's inputs." }));
    return doc;
  }

  async function checkAccount(id, out) {
    out.replaceChildren(el("p", { class: "note", text: `checking ${id}…` }));
    let p;
    try { p = await api(`/v1/accounts/${encodeURIComponent(id)}/proof`); } catch (e) {
      out.replaceChildren(el("p", { class: "bad-mark", text: e.status === 403 ? `you may not see the proof of ${id} (${e.message})` : e.message }));
      document.body.dataset.proof = "error";
      return;
    }
    const att = await api(`/v1/attestations/${p.epoch}`);
    let root, err = null;
    try { root = await rootFromProof(p); } catch (e) { err = e.message; }
    const ok = err === null && root === p.merkle_root && root === att.attestation.merkle_root && p.count === att.attestation.leaves.count;
    const scale = att.attestation.leaves.scale, ccy = p.leaf.currency;
    out.replaceChildren(
      el("p", {}, mark(ok, ok ? `the figures of ${id} are in the signed root of epoch ${p.epoch} (checked here: SHA-256 leaf hash and ${p.path.length} sibling hashes)` :
        `NOT in the root of epoch ${p.epoch}: ${err || `recomputed root ${root} differs from the attested ${att.attestation.merkle_root}`}`)),
      table([{ key: "k", label: "leaf field" }, { key: "v", label: "value", num: "", render: (r, td) => { if (typeof r.v === "number") PM.numCell(td, r.v, ccy, 8); else { td.className = "num"; td.textContent = r.v; } } }], [
        { k: "equity", v: p.leaf.equity / scale }, { k: "initial margin", v: p.leaf.initial_margin / scale },
        { k: "maintenance margin", v: p.leaf.maintenance_margin / scale }, { k: "health", v: p.leaf.health_name || String(p.leaf.health) },
        { k: "position in the tree", v: `${p.index + 1} of ${p.count}` }], { id: "proof-table" }),
      el("p", { class: "note", text: `recomputed root: ${root || "—"}` }));
    document.body.dataset.proof = ok ? "valid" : "invalid";
  }

  async function start() {
    const box = document.getElementById("att");
    if (!(await PM.hasRoute("/v1/attestations/latest"))) {
      box.replaceChildren(el("p", { class: "na", id: "att-na",
        text: "this service publishes no attestations (GET /v1/attestations/latest is not in its API). When it does, this page shows the latest signed epoch, its root and input digests, and checks an account's proof here." }));
      document.body.dataset.loaded = "na";
      return;
    }
    if (!PM.key()) { box.replaceChildren(el("p", { class: "note", text: "enter an API key above (any role)" })); return; }
    const latest = el("div", { id: "att-latest" }), out = el("div", { id: "proof-result" });
    const input = el("input", { id: "proof-account", spellcheck: "false", required: "" });
    const form = el("form", { class: "row", id: "proof-form" }, el("label", {}, "account id", input), el("button", { type: "submit", id: "proof-go", text: "Check its proof" }));
    form.addEventListener("submit", (e) => { e.preventDefault(); if (input.value.trim()) checkAccount(input.value.trim(), out); });
    box.replaceChildren(latest, el("h2", { text: "Is an account in the root?" }), form, out);
    try {
      await showLatest(latest);
      const me = await PM.whoami();
      if (me && me.account) input.value = me.account;
      const q = new URLSearchParams(location.search).get("account");
      if (q) { input.value = q; await checkAccount(q, out); }
      document.body.dataset.loaded = "yes";
    } catch (e) {
      latest.replaceChildren(el("p", { class: e.status === 404 ? "na" : "bad-mark", text: e.status === 404 ? "no epoch has been attested yet" : e.message }));
      document.body.dataset.loaded = "error";
    }
  }
  window.pmAttest = { rootFromProof, leafBytes: (l) => hex(leafBytes(l)), canonical }; // for the tests
  document.addEventListener("DOMContentLoaded", () => { start(); PM.onKey(start); });
})();
