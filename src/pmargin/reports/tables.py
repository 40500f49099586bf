"""Terminal tables (rich) for margin results, Greeks and conformance outcomes."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from rich.console import Console
from rich.table import Table

from pmargin.conformance.outcome import CaseOutcome
from pmargin.models.result import AccountMargin

__all__ = ["print_conformance", "print_frame", "print_margin"]


def _fmt(x: object) -> str:
    """Format a table cell: floats to 8 significant digits, NaN (no value) as an empty cell.

    A zero prints as ``0``, never ``-0`` (``x + 0.0`` turns -0.0 into 0.0).
    """
    if isinstance(x, float):
        return "" if x != x else f"{x + 0.0:,.8g}"
    return str(x)


def print_frame(console: Console, df: pd.DataFrame, title: str) -> None:
    """Print a DataFrame (index included) as a rich table."""
    table = Table(title=title, show_lines=False)
    frame = df.reset_index() if df.index.name or isinstance(df.index, pd.MultiIndex) else df
    for col in frame.columns:
        table.add_column(str(col), justify="right")
    for row in frame.itertuples(index=False):
        table.add_row(*[_fmt(v) for v in row])
    console.print(table)


def print_margin(console: Console, res: AccountMargin, explain: bool = False) -> None:
    """Print the summary, components and positions of one account's margin."""
    mc = res.margin_currency
    summary = Table(title=f"{res.model} ({res.mode}) margin, in {mc}")
    summary.add_column("figure")
    summary.add_column(mc, justify="right")
    summary.add_column("USD", justify="right")
    for label, v in (
        ("initial margin", res.initial_margin),
        ("maintenance margin", res.maintenance_margin),
        ("equity", res.equity),
        ("available margin", res.available_margin),
    ):
        summary.add_row(label, _fmt(v), _fmt(v * res.mc_usd))
    ratio = res.margin_ratio
    summary.add_row("margin ratio (MM/equity)",
                    _fmt(ratio) if ratio != float("inf") else "inf (equity <= 0)", "")
    summary.add_row("health", res.health, "")
    console.print(summary)
    comp = Table(title="components")
    comp.add_column("component")
    comp.add_column(mc, justify="right")
    for k, v in res.components.items():
        comp.add_row(k, _fmt(v))
    console.print(comp)
    if len(res.by_position):
        print_frame(console, res.by_position, "positions")
    if res.model_priced:
        console.print(f"model-priced (not listed in the market, priced from the surface): "
                      f"{', '.join(res.model_priced)}", highlight=False)
    if res.settled:
        console.print(f"settled (expired, at the market's settlement price): "
                      f"{', '.join(res.settled)}", highlight=False)
    if res.worst_scenario:
        for u, w in res.worst_scenario.items():
            console.print(f"worst scenario {u}: {w['name']} (P&L {w['pnl']:,.8g} {mc})")
    if explain and res.risk_matrix is None and res.scenarios is not None and len(res.scenarios):
        # models without a price x vol grid (var-fhs): the scenarios that set the requirement
        print_frame(console, res.scenarios, f"worst scenarios (P&L in {mc})")
    if explain and res.risk_matrix is not None:
        print_frame(console, res.risk_matrix, f"risk matrix: P&L in {mc} by price move and vol")
        if res.scenarios is not None:
            ext = res.scenarios[res.scenarios["extended"]]
            if len(ext):
                print_frame(console, ext.drop(columns=["extended"]), "extended scenarios")


def print_conformance(console: Console, outcomes: Sequence[CaseOutcome]) -> None:
    """Print one line per case and the closing ``N passed, M failed`` line."""
    for o in outcomes:
        status = "PASS" if o.passed else "FAIL"
        console.print(
            f"{status} {o.name} ({o.model}) IM {o.initial_margin:.10g} (expected "
            f"{o.expected_im:.10g}) MM {o.maintenance_margin:.10g} (expected "
            f"{o.expected_mm:.10g}) {'' if o.passed else o.detail}",
            highlight=False, soft_wrap=True,
        )
    n_pass = sum(o.passed for o in outcomes)
    console.print(f"{n_pass} passed, {len(outcomes) - n_pass} failed", highlight=False)
