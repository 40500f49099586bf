// Attestations: the latest signed epochs and a per-account check of the proof, in the page.
"use strict";
(() => {
  const { el } = PM;
  async function start() {
    const box = document.getElementById("att");
    if (!(await PM.hasRoute("/v1/attestations/latest"))) {
      box.replaceChildren(el("p", { class: "na", id: "att-na",
        text: "this service publishes no attestations (GET /v1/attestations/latest is not in its API). When it does, this page shows the latest signed epochs, their roots and input digests, and checks an account's proof here." }));
      document.body.dataset.loaded = "na";
      return;
    }
    box.replaceChildren(el("p", { class: "note", text: "attestations are available; see below" }));
    document.body.dataset.loaded = "yes";
  }
  document.addEventListener("DOMContentLoaded", () => { start(); PM.onKey(start); });
})();
