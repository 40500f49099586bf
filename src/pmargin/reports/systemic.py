"""Tables and figures of the systemic analytics.

Audit, capital efficiency, crash replays: rich tables and matplotlib figures (Agg backend).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pmargin.reports.plots import _pyplot

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["audit_figure", "print_audit", "print_efficiency", "print_replays", "save_figure",
           "tradeoff_figure"]


def print_audit(console: Console, data: Mapping[str, Any]) -> None:
    """Print the audit (:meth:`pmargin.analytics.audit.AuditReport.to_dict`) as tables."""
    from rich.table import Table

    console.print(
        f"{data['accounts']:,} accounts ({data['active_accounts']:,} with positions), gross "
        f"notional {data['gross_notional_usd']:,.0f} USD, equity {data['equity_usd']:,.0f} USD, "
        f"insurance fund {data['insurance_fund_usd']:,.0f} USD; market: {data['market_source']}",
        highlight=False)
    t = Table(title="before any shock (USD)")
    for col in ("model", "IM", "MM", "under MM", "share"):
        t.add_column(col, justify="right")
    for b in data["base"]:
        t.add_row(b["model"], f"{b['initial_margin_usd']:,.0f}",
                  f"{b['maintenance_margin_usd']:,.0f}", str(b["accounts_under_mm"]),
                  f"{b['share_accounts_under_mm']:.1%}")
    console.print(t)
    t = Table(title=f"scenarios ({data['params']}; losses in USD)")
    for col in ("scenario", "model", "accounts under MM", "equity under MM", "OI under MM",
                "losses beyond collateral", "Cover-1", "Cover-2", "fund covers 1 / 2"):
        t.add_column(col, justify="right")
    for o in data["scenarios"]:
        t.add_row(o["scenario"], o["model"], f"{o['share_accounts_under_mm']:.1%}",
                  f"{o['share_equity_under_mm']:.1%}", f"{o['share_open_interest_under_mm']:.1%}",
                  f"{o['losses_beyond_collateral_usd']:,.0f}", f"{o['cover1_usd']:,.0f}",
                  f"{o['cover2_usd']:,.0f}",
                  f"{'yes' if o['cover1_covered'] else 'NO'} / "
                  f"{'yes' if o['cover2_covered'] else 'NO'}")
    console.print(t)
    if data["curves"]:
        moves = data["curves"][0]["moves"]
        picks = [i for i, m in enumerate(moves)
                 if any(abs(m - x) < 1e-9 for x in (-0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6))]
        t = Table(title="liquidation proximity: share of accounts (of open interest) under MM")
        t.add_column("model")
        for i in picks:
            t.add_column(f"{moves[i]:+.0%}", justify="right")
        for c in data["curves"]:
            t.add_row(c["model"], *[f"{c['share_accounts'][i]:.1%} "
                                    f"({c['share_open_interest'][i]:.1%})" for i in picks])
        console.print(t)


def audit_figure(data: Mapping[str, Any]) -> Any:
    """The liquidation-proximity curves: share of accounts and of open interest under MM.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels, one line per methodology.
    """
    plt = _pyplot("audit")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for c in data["curves"]:
        x = [100 * m for m in c["moves"]]
        axes[0].plot(x, [100 * s for s in c["share_accounts"]], label=c["model"])
        axes[1].plot(x, [100 * s for s in c["share_open_interest"]], label=c["model"])
    for ax, what in zip(axes, ("accounts", "open interest"), strict=True):
        ax.set_xlabel("index move, %")
        ax.set_ylabel(f"share of {what} under MM, %")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Liquidation proximity ({data['accounts']:,} accounts)")
    fig.tight_layout()
    return fig


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write a figure and close it."""
    plt = _pyplot(path)
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def print_efficiency(console: Console, rows: Sequence[Mapping[str, Any]],
                     currency: str = "USD") -> None:
    """Print capital-efficiency figures, one row per model (or account)."""
    from rich.table import Table

    def f(x: Any, fmt: str) -> str:
        return "n/a" if x is None else format(x, fmt)

    t = Table(title=f"capital efficiency ({currency})")
    for col in ("model", "gross notional", "IM", "IM / notional", "IM / equity",
                "free collateral", "isolated IM", "freed vs isolated"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(r["model"], f(r["gross_notional_usd"], ",.0f"),
                  f(r["initial_margin_usd"], ",.2f"),
                  f(r["im_over_gross_notional"], ".2%"), f(r["utilisation"], ".1%"),
                  f(r["free_collateral_usd"], ",.2f"), f(r["isolated_initial_margin_usd"], ",.2f"),
                  f(r["capital_freed_usd"], ",.2f"))
    console.print(t)
    for r in rows:
        for u, d in (r.get("liquidation_distance") or {}).items():
            down = "none" if d["down_pct"] is None else f"{d['down_pct']:+.2f} %"
            up = "none" if d["up_pct"] is None else f"{d['up_pct']:+.2f} %"
            console.print(f"liquidation distance ({r['model']}, {u} index): down {down}, "
                          f"up {up}", highlight=False)


def print_replays(console: Console, rows: Sequence[Mapping[str, Any]]) -> None:
    """Print crash-replay outcomes (:meth:`RegimeOutcome.to_dict`), one row per regime."""
    from rich.table import Table

    t = Table(title="crash replays (USD)")
    for col in ("episode", "asset", "regime", "capital demanded", "margin calls", "liquidated",
                "liquidated notional", "bad debt", "fund used", "ADL", "socialised",
                "uncovered", "conservation"):
        t.add_column(col, justify="right")
    for r in rows:
        if r.get("reason"):
            t.add_row(r["episode"], r["asset"], r["regime"], "not run", "", "", "", "", "", "",
                      "", "", "")
            continue
        t.add_row(r["episode"], r["asset"], r["regime"], f"{r['capital_demanded_usd']:,.0f}",
                  str(r["margin_calls"]), f"{r['accounts_liquidated']}/{r['accounts']}",
                  f"{r['liquidated_notional_usd']:,.0f}", f"{r['bad_debt_usd']:,.0f}",
                  f"{r['insurance_fund_used_usd']:,.0f}", f"{r['adl_usd']:,.0f}",
                  f"{r['socialised_usd']:,.0f}", f"{r['uncovered_usd']:,.0f}",
                  r["conservation_error"])
    console.print(t)
    for r in rows:
        if r.get("reason"):
            console.print(f"{r['episode']} {r['asset']} {r['regime']} not run: {r['reason']}",
                          highlight=False)


def tradeoff_figure(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Capital required (x) against losses not covered (y), one point per regime and episode.

    Returns
    -------
    matplotlib.figure.Figure
        Markers by regime, labels by episode and asset.
    """
    plt = _pyplot("tradeoff")
    fig, ax = plt.subplots(figsize=(9, 6))
    rows = [r for r in rows if not r.get("reason")]  # a regime that did not run has no point
    regimes = sorted({r["regime"] for r in rows})
    markers = "osD^v<>px*"
    cmap = plt.get_cmap("tab10")
    for k, reg in enumerate(regimes):
        pts = [r for r in rows if r["regime"] == reg]
        ax.scatter([r["capital_demanded_usd"] / 1e6 for r in pts],
                   [r["losses_not_covered_usd"] / 1e3 for r in pts], label=reg,
                   marker=markers[k % len(markers)], color=cmap(k % 10), s=45)
        for r in pts:
            ax.annotate(f"{r['episode']} {r['asset']}", (r["capital_demanded_usd"] / 1e6,
                        r["losses_not_covered_usd"] / 1e3), fontsize=6, alpha=0.7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("capital demanded before the crash (sum of IM), USD million")
    ax.set_ylabel("losses beyond the defaulters' collateral (bad debt), USD thousand")
    ax.set_title("Crash replays: capital required against losses not covered")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
