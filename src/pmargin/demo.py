"""`pmargin demo`: example portfolios margined on the latest real Deribit snapshot."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from pmargin.market import MarketSnapshot
from pmargin.models import load_model
from pmargin.portfolio import Portfolio, portfolio_from_dict
from pmargin.shared_folder import shared_folder

__all__ = ["COVERED_CALL", "demo_footer", "demo_market", "demo_portfolios", "find_shared",
           "run_demo"]

COVERED_CALL = "covered call"
"""Label of the demo's covered call: a short call whose cover is the account's coin collateral."""

MODELS = ("deribit-sm", "deribit-sm-isolated", "deribit-pm", "pmargin", "okx-pm", "span")


def find_shared() -> Path | None:
    """Locate the shared folder: ``$PMARGIN_SHARED``, ``./../shared`` or beside the repository.

    A ``PMARGIN_SHARED`` that is not a directory with ``data/deribit`` raises
    :class:`~pmargin.errors.InvalidInput` (see :func:`pmargin.shared_folder.shared_folder`).
    """
    return shared_folder((Path.cwd().parent / "shared",
                          Path(__file__).resolve().parents[3] / "shared"), "data/deribit")


def latest_snapshot() -> Path | None:
    """Latest Deribit option-chain snapshot in the shared data, if any."""
    shared = find_shared()
    if shared is None:
        return None
    files = sorted((shared / "data" / "deribit").glob("deribit_options_snapshot_*.csv.gz"))
    return files[-1] if files else None


def demo_market() -> tuple[MarketSnapshot, str]:
    """Latest real snapshot, or a generated flat-smile market when the data is absent."""
    from pmargin.market.loaders import load_market, load_market_json

    snap = latest_snapshot()
    if snap is not None:
        return load_market(snap), f"Deribit snapshot {snap.name}"
    from datetime import UTC, datetime

    now = datetime(2026, 8, 22, 8, tzinfo=UTC)
    instruments: dict[str, dict[str, float]] = {"BTC-PERPETUAL": {"mark_price": 115000.0}}
    for d in (7, 35, 98):
        exp = now + timedelta(days=d)
        code = f"{exp.day}{exp.strftime('%b').upper()}{exp.year % 100:02d}"
        fwd = 115000.0 * (1 + 0.05 * d / 365)
        instruments[f"BTC-{code}"] = {"mark_price": fwd}
        for k in range(80000, 150001, 5000):
            for cp in "CP":
                iv = 0.45 + 0.25 * np.log(k / fwd) ** 2
                instruments[f"BTC-{code}-{k}-{cp}"] = {"mark_iv": iv, "underlying_price": fwd}
    m = load_market_json({"valuation_time": now.isoformat(),
                          "market": {"mark_unit": "USD", "index": {"BTC": 115000.0},
                                     "instruments": instruments}})
    return m, "generated market (../shared/data not found)"


def demo_portfolios(market: MarketSnapshot) -> dict[str, Portfolio]:
    """Naked short put, covered call, bull call spread and straddles on a ~1-month BTC expiry.

    Every account is BTC-margined with 1 BTC of collateral, so the "covered call" is a short call
    against that coin collateral: in a coin-margined account the two are the same portfolio.
    """
    om = market.option_marks
    btc = om[(om["underlying"] == "BTC") & (om["settlement"] == "inverse")]
    taus = np.sort(btc["tau"].unique())
    tau = taus[np.argmin(np.abs(taus - 30 / 365))]
    chain = btc[btc["tau"] == tau]
    fwd = float(chain["forward"].iloc[0])
    strikes = np.sort(chain["strike"].unique())

    def strike(x: float) -> float:
        return float(strikes[np.argmin(np.abs(strikes - x))])

    code = chain.index[0].split("-")[1]
    atm, otm_put, otm_call = strike(fwd), strike(0.9 * fwd), strike(1.1 * fwd)

    def name(k: float, cp: str) -> str:
        return f"BTC-{code}-{int(k)}-{cp}"

    def make(positions: list[tuple[str, float]]) -> Portfolio:
        return portfolio_from_dict({
            "margin_currency": "BTC", "collateral": {"BTC": 1.0},
            "positions": [{"instrument": n, "quantity": q} for n, q in positions],
        })

    return {
        f"naked short put {int(otm_put)}": make([(name(otm_put, "P"), -1)]),
        f"{COVERED_CALL} {int(otm_call)} (short call, 1 BTC held)": make(
            [(name(otm_call, "C"), -1)]),
        f"bull call spread {int(atm)}/{int(otm_call)}": make(
            [(name(atm, "C"), 1), (name(otm_call, "C"), -1)]),
        f"short straddle {int(atm)}": make([(name(atm, "C"), -1), (name(atm, "P"), -1)]),
        f"long straddle {int(atm)}": make([(name(atm, "C"), 1), (name(atm, "P"), 1)]),
    }


def run_demo(console: Console) -> pd.DataFrame:
    """Print IM and MM (BTC) of the demo portfolios under several models; return the table."""
    market, label = demo_market()
    when = f"{market.valuation_time:%Y-%m-%d %H:%M}"
    console.print(f"[bold]pmargin demo[/bold] on {label}, valuation {when} UTC, "
                  f"BTC index {market.index_price('BTC'):,.2f}", highlight=False)
    console.print("Each account holds 1 BTC of collateral; margins in BTC.")
    rows = []
    for pname, portfolio in demo_portfolios(market).items():
        for mname in MODELS:
            res = load_model(mname).margin(portfolio, market)
            rows.append({"portfolio": pname, "model": mname,
                         "IM": res.initial_margin, "MM": res.maintenance_margin,
                         "equity": res.equity, "health": res.health})
    df = pd.DataFrame(rows)
    table = Table(title="Initial / maintenance margin (BTC)")
    table.add_column("portfolio")
    for model_name in dict.fromkeys(str(x) for x in df["model"]):
        table.add_column(model_name, justify="right")
    for group_name, grp in df.groupby("portfolio", sort=False):
        cells = [f"{r.IM:.4f} / {r.MM:.4f}" for r in grp.itertuples()]
        table.add_row(str(group_name), *cells)
    console.print(table)
    for line in demo_footer(df):
        console.print(line, highlight=False)
    return df


def demo_footer(df: pd.DataFrame, pm: str = "deribit-pm", sm: str = "deribit-sm"
                ) -> list[str]:
    """Footer of the demo table, derived from its rows so that it cannot contradict them.

    Parameters
    ----------
    df : pandas.DataFrame
        Rows of :func:`run_demo` (``portfolio``, ``model``, ``IM``).
    pm, sm : str
        The portfolio-margin and standard-margin columns compared.

    Returns
    -------
    list of str
        Lines to print.
    """
    im: dict[tuple[str, str], float] = {
        (str(p), str(m)): float(v) for p, m, v in zip(df["portfolio"], df["model"], df["IM"],
                                                      strict=True)}
    order = list(dict.fromkeys(str(x) for x in df["portfolio"]))
    less = [p for p in order if im[p, pm] < im[p, sm]]
    more = [p for p in order if im[p, pm] >= im[p, sm]]
    lines = [
        "Every account is BTC-margined and holds 1 BTC, so a short call here is a covered call "
        "(the coin collateral is the cover): in a coin-margined account the two are the same "
        "portfolio, and its loss in BTC is bounded (a coin-settled call pays at most 1 BTC).",
        f"{pm} initial margin is below {sm} for: {', '.join(less) or 'none'}"
        + (f"; not below for: {', '.join(more)}." if more else "."),
        "In USD terms (a USDC-margined account holding the coin, docs/hedges.md) the same covered "
        "call is a synthetic short put: portfolio margin sees the coin's downside, which "
        "standard margin leaves out, and can charge more than standard margin there.",
    ]
    return lines
