"""``pmargin report``: one self-contained HTML page of the systemic analytics.

The page holds the capital-efficiency table, the stress audit (tables and proximity curves),
the stochastic-vol comparison (calibration fit, tail against the grid models) and the crash
replays (table and trade-off plot). Figures are PNGs embedded as base64 ``data:`` URIs, so the
file needs nothing else; no script runs in it.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from pmargin.reports.plots import _pyplot
from pmargin.reports.systemic import audit_figure, tradeoff_figure

__all__ = ["ReportOptions", "collect_report", "render_html"]


@dataclass(frozen=True)
class ReportOptions:
    """What the report computes.

    Attributes
    ----------
    accounts : int
        Accounts of the generated book (efficiency, audit, stochastic-vol tail).
    models : tuple of str
        Methodologies compared.
    replay_accounts : int
        Accounts of the replayed books.
    episodes : tuple of str
        Crash episodes replayed (empty: none).
    assets : tuple of str
        Assets replayed.
    regimes : tuple of str
        Regimes of the replays (empty: crash_replay.toml's).
    bates : bool
        Also calibrate and simulate Bates (slower).
    paths : int or None
        Simulated paths (default stochvol.toml).
    seed : int
        Generator seed.
    """

    accounts: int = 2000
    models: tuple[str, ...] = ("deribit-sm-isolated", "deribit-sm", "deribit-pm", "okx-pm",
                               "span", "pmargin")
    replay_accounts: int = 1000
    episodes: tuple[str, ...] = ("covid-2020", "may-2021", "june-2022", "ftx-2022")
    assets: tuple[str, ...] = ("BTC", "ETH")
    regimes: tuple[str, ...] = ()
    bates: bool = True
    paths: int | None = None
    seed: int = 1
    notes: list[str] = field(default_factory=list)


def _png(fig: Any) -> str:
    plt = _pyplot("report")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _tail_figure(returns: Mapping[str, Any]) -> Any:
    plt = _pyplot("report")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, r in returns.items():
        ax.hist(100 * (np.asarray(r) - 1.0), bins=120, histtype="step", density=True,
                label=name)
    ax.set_yscale("log")
    ax.set_xlabel("index move over the margin period of risk, %")
    ax.set_ylabel("density (log)")
    ax.set_title("Simulated index moves: Heston and Bates calibrated to the Deribit chain")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def collect_report(opts: ReportOptions) -> dict[str, Any]:
    """Run every analysis of the report and return its data and figures (base64 PNG).

    Parameters
    ----------
    opts : ReportOptions
        Sizes and selections.

    Returns
    -------
    dict
        ``meta``, ``efficiency`` (rows), ``audit`` (dict), ``stochvol`` (dict or None),
        ``replays`` (rows), ``figures`` (name -> base64 PNG), ``notes``.
    """
    from pmargin.analytics.audit import run_audit
    from pmargin.analytics.books import generated_book
    from pmargin.analytics.efficiency import efficiency
    from pmargin.demo import demo_market
    from pmargin.models import load_model

    market, source = demo_market()
    book = generated_book(market, opts.accounts, opts.seed)
    notes = list(opts.notes)
    out: dict[str, Any] = {"meta": {
        "written": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "market": source,
        "accounts": opts.accounts, "positions": int(book.positions.nnz),
        "models": list(opts.models)}, "figures": {}, "notes": notes}
    eff_rows = []
    iso = None
    for name in opts.models:
        model = load_model(name)
        e = efficiency(model, book, market, isolated=iso)
        if iso is None:
            from pmargin.analytics.efficiency import isolated_reference

            iso = load_model(isolated_reference(book.margin_currency)).compute(book, market)
        eff_rows.append({"model": name, **e.totals()})
    out["efficiency"] = eff_rows
    audit = run_audit(book, market, list(opts.models)).to_dict()
    out["audit"] = audit
    out["figures"]["audit"] = _png(audit_figure(audit))
    out["stochvol"] = _stochvol(book, market, opts, out["figures"], notes)
    out["replays"] = _replays(opts, out["figures"], notes)
    return out


def _stochvol(book: Any, market: Any, opts: ReportOptions, figures: dict[str, str],
              notes: list[str]) -> dict[str, Any]:
    from pmargin.analytics.stochvol import (
        book_tail,
        calibrate,
        chain_quotes,
        load_stochvol_settings,
        simulate,
    )
    from pmargin.models import load_model

    s = load_stochvol_settings()
    u = book.margin_currency
    quotes = chain_quotes(market, u, s)
    spot = market.index_price(u)
    cals = [calibrate(market.valuation_time, spot, quotes)]
    if opts.bates:
        cals.append(calibrate(market.valuation_time, spot, quotes, jumps=True))
    horizon = s.mpor_days / 365.0
    steps = max(1, round(s.mpor_days * s.steps_per_day))
    n = opts.paths or s.paths
    models = [load_model(m) for m in opts.models]
    rows = []
    returns = {}
    for c in cals:
        paths = simulate(c.params, horizon, steps, n, s.seed, s.qe_psi_critical)
        returns[c.model] = paths.ratio
        q = np.quantile(paths.ratio - 1.0, [0.001, 0.01, 0.99, 0.999])
        for t in book_tail(book, market, u, paths, c.params.v0, models, s.es_level, c.model):
            rows.append({"dynamics": c.model, "model": t.model, **t.summary(),
                         "move_q001": float(q[0]), "move_q01": float(q[1]),
                         "move_q99": float(q[2]), "move_q999": float(q[3])})
    figures["stochvol"] = _png(_tail_figure(returns))
    return {"calibrations": [c.to_dict() for c in cals], "tail": rows, "paths": n,
            "mpor_days": s.mpor_days, "es_level": s.es_level, "quotes": len(quotes)}


def _replays(opts: ReportOptions, figures: dict[str, str], notes: list[str]
             ) -> list[dict[str, Any]]:
    from pmargin.analytics.crash_replay import load_replay_params, replay_episode
    from pmargin.demo import find_shared

    if not opts.episodes:
        return []
    if find_shared() is None:
        notes.append("crash replays skipped: ../shared/data not found")
        return []
    p = load_replay_params()
    rows = [o.to_dict() for e in opts.episodes for a in opts.assets
            for o in replay_episode(p.episode(e), a, p, list(opts.regimes) or None,
                                    opts.replay_accounts)]
    if rows:
        figures["tradeoff"] = _png(tradeoff_figure(rows))
    return rows


def _fmt(x: Any, spec: str = ",.0f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, float | int) and not isinstance(x, bool):
        return format(x, spec)
    return html.escape(str(x))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(figures: Mapping[str, str], name: str, alt: str) -> str:
    if name not in figures:
        return ""
    return (f'<figure><img class="plot" id="plot-{name}" alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{figures[name]}"><figcaption>{html.escape(alt)}'
            "</figcaption></figure>")


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;
padding:3px 7px;text-align:right}th{background:#f3f3f3}img.plot{max-width:100%}
.note{color:#955}"""


def render_html(data: Mapping[str, Any]) -> str:
    """Render :func:`collect_report`'s data as one self-contained HTML page."""
    m = data["meta"]
    figs = data["figures"]
    parts = [f"<h1>pmargin systemic report</h1><p>Written {html.escape(m['written'])}; market: "
             f"{html.escape(m['market'])}; generated book of {m['accounts']:,} accounts "
             f"({m['positions']:,} positions).</p>"]
    for n in data.get("notes", []):
        parts.append(f'<p class="note">{html.escape(n)}</p>')
    parts.append("<h2>Capital efficiency</h2>")
    parts.append(_table(
        ["model", "gross notional USD", "IM USD", "IM / notional", "IM / equity",
         "free collateral USD", "isolated IM USD", "freed vs isolated USD", "freed share"],
        [[_fmt(r["model"]), _fmt(r["gross_notional_usd"]), _fmt(r["initial_margin_usd"]),
          _fmt(r["im_over_gross_notional"], ".2%"), _fmt(r["utilisation"], ".1%"),
          _fmt(r["free_collateral_usd"]), _fmt(r["isolated_initial_margin_usd"]),
          _fmt(r["capital_freed_usd"]), _fmt(r["capital_freed_share"], ".1%")]
         for r in data["efficiency"]]))
    a = data["audit"]
    parts.append("<h2>Stress audit</h2>")
    parts.append(f"<p>Insurance fund {a['insurance_fund_usd']:,.0f} USD. Scenarios: "
                 f"{html.escape(a['params'])} (audit.toml).</p>")
    parts.append(_table(
        ["scenario", "model", "accounts under MM", "equity under MM", "OI under MM",
         "losses beyond collateral USD", "Cover-1 USD", "Cover-2 USD", "fund covers 1 / 2"],
        [[_fmt(o["scenario"]), _fmt(o["model"]), _fmt(o["share_accounts_under_mm"], ".1%"),
          _fmt(o["share_equity_under_mm"], ".1%"), _fmt(o["share_open_interest_under_mm"], ".1%"),
          _fmt(o["losses_beyond_collateral_usd"]), _fmt(o["cover1_usd"]), _fmt(o["cover2_usd"]),
          f"{'yes' if o['cover1_covered'] else 'NO'} / {'yes' if o['cover2_covered'] else 'NO'}"]
         for o in a["scenarios"]]))
    parts.append(_img(figs, "audit", "Liquidation proximity: share of accounts and of open "
                      "interest under maintenance margin against the index move"))
    sv = data.get("stochvol")
    if sv:
        parts.append("<h2>Stochastic-volatility stress</h2>")
        parts.append(f"<p>{sv['quotes']} out-of-the-money marks; {sv['paths']:,} paths over "
                     f"{sv['mpor_days']:g} days; ES at {sv['es_level']:.1%}.</p>")
        for c in sv["calibrations"]:
            ps = ", ".join(f"{k} {v:.4g}" for k, v in c["params"].items())
            parts.append(f"<h3>{html.escape(c['model'])}: {html.escape(ps)}; IV RMSE "
                         f"{100 * c['iv_rmse']:.2f} vol points</h3>")
            parts.append(_table(["expiry days", "options", "IV RMSE (vol pts)",
                                 "largest IV error (vol pts)"],
                                [[str(f["days"]), str(f["options"]),
                                  _fmt(100 * f["iv_rmse"], ".2f"),
                                  _fmt(100 * f["iv_max_error"], ".2f")] for f in c["fit"]]))
        parts.append(_table(
            ["dynamics", "model", "accounts", "IM below ES", "IM below worst", "sum ES",
             "sum worst loss", "sum IM", "move 0.1 %", "move 99.9 %"],
            [[_fmt(r["dynamics"]), _fmt(r["model"]), _fmt(r["accounts"]),
              _fmt(r["share_im_below_es"], ".1%"), _fmt(r["share_im_below_worst"], ".1%"),
              _fmt(r["sum_es"], ",.2f"), _fmt(r["sum_worst_loss"], ",.2f"),
              _fmt(r["sum_initial_margin"], ",.2f"), _fmt(r["move_q001"], "+.1%"),
              _fmt(r["move_q999"], "+.1%")] for r in sv["tail"]]))
        parts.append(_img(figs, "stochvol", "Distribution of simulated index moves"))
    rp = data.get("replays") or []
    parts.append("<h2>Crash replays</h2>")
    if rp:
        parts.append(_table(
            ["episode", "asset", "regime", "capital demanded USD", "margin calls", "liquidated",
             "liquidated notional USD", "bad debt USD", "fund used USD", "ADL USD",
             "socialised USD", "uncovered USD", "conservation"],
            [[_fmt(r["episode"]), _fmt(r["asset"]), _fmt(r["regime"]),
              _fmt(r["capital_demanded_usd"]), _fmt(r["margin_calls"]),
              f"{r['accounts_liquidated']}/{r['accounts']}" if not r.get("reason") else "n/a",
              _fmt(r["liquidated_notional_usd"]),
              _fmt(r["bad_debt_usd"]), _fmt(r["insurance_fund_used_usd"]), _fmt(r["adl_usd"]),
              _fmt(r["socialised_usd"]), _fmt(r["uncovered_usd"]),
              _fmt(r["conservation_error"])] for r in rp]))
        for r in rp:
            if r.get("reason"):
                parts.append(f"<p>{_fmt(r['episode'])} {_fmt(r['asset'])} {_fmt(r['regime'])} "
                             f"not run: {_fmt(r['reason'])}</p>")
        parts.append(_img(figs, "tradeoff", "Capital demanded before the crash against losses "
                          "beyond the defaulters' collateral, one point per regime and episode"))
    else:
        parts.append("<p>No replay in this report.</p>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>pmargin systemic report</title><link rel=\"icon\" href=\"data:,\">"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
