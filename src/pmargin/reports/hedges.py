"""The hedge-recognition matrix: classic option structures, portfolio versus standard margin."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pmargin.errors import InvalidInput
from pmargin.market import MarketSnapshot
from pmargin.models import load_model
from pmargin.portfolio import Portfolio, portfolio_from_dict

__all__ = ["HEDGED", "hedge_markdown", "hedge_table", "structures"]

HEDGED = frozenset({
    "bull call spread", "bear put spread", "long butterfly", "short butterfly", "iron condor",
    "covered call (spot)", "covered call (future)", "protective put",
    "delta-neutral spot + short perpetual", "calendar spread",
})
"""Structures whose legs offset each other's risk (portfolio margin must need less)."""


def structures(market: MarketSnapshot, underlying: str = "BTC") -> dict[str, Portfolio]:
    """Build the structures on a ~30-day and a ~90-day expiry of a real chain.

    Every account is USDC-margined (cross-collateral, as Deribit X:PM) so that coin collateral
    hedges are visible in USD; instruments are the chain's inverse contracts, one contract per leg.

    Parameters
    ----------
    market : MarketSnapshot
        Market with an option chain (``option_marks``) and listed futures.
    underlying : str
        Coin.

    Returns
    -------
    dict of str to Portfolio
        Structure name to account.

    Raises
    ------
    InvalidInput
        The market lists no coin-settled option on ``underlying``.
    """
    om = market.option_marks
    ch = om[(om["underlying"] == underlying) & (om["settlement"] == "inverse")]
    if ch.empty:
        raise InvalidInput("market", underlying, "has no coin-settled option chain on this "
                           "underlying; the hedge matrix needs one")
    taus = np.sort(ch["tau"].unique())
    near = taus[np.argmin(np.abs(taus - 30 / 365))]
    far = taus[np.argmin(np.abs(taus - 90 / 365))]
    if far <= near:
        far = taus[-1]

    def leg_name(tau: float, moneyness: float, cp: str) -> str:
        rows = ch[ch["tau"] == tau]
        fwd = float(rows["forward"].iloc[0])
        ks = np.sort(rows["strike"].unique())
        k = ks[np.argmin(np.abs(ks - moneyness * fwd))]
        code = rows.index[0].split("-")[1]
        return f"{underlying}-{code}-{int(k)}-{cp}"

    def n(m: float, cp: str, tau: float = near) -> str:
        return leg_name(tau, m, cp)

    futures = sorted(
        (name for name in market.instrument_names
         if name.startswith(f"{underlying}-") and name.count("-") == 1
         and not name.endswith("PERPETUAL")),
        key=lambda s: market.tau(__import__("pmargin").instruments.parse_instrument(s).expiry),
    )
    fut = futures[min(1, len(futures) - 1)] if futures else f"{underlying}-PERPETUAL"
    perp = f"{underlying}-PERPETUAL"
    legs: dict[str, tuple[list[tuple[str, float]], dict[str, float]]] = {
        "bull call spread": ([(n(1.0, "C"), 1), (n(1.1, "C"), -1)], {}),
        "bear put spread": ([(n(1.0, "P"), 1), (n(0.9, "P"), -1)], {}),
        "long butterfly": ([(n(0.9, "C"), 1), (n(1.0, "C"), -2), (n(1.1, "C"), 1)], {}),
        "short butterfly": ([(n(0.9, "C"), -1), (n(1.0, "C"), 2), (n(1.1, "C"), -1)], {}),
        "iron condor": ([(n(0.85, "P"), 1), (n(0.92, "P"), -1), (n(1.08, "C"), -1),
                         (n(1.15, "C"), 1)], {}),
        "short straddle": ([(n(1.0, "C"), -1), (n(1.0, "P"), -1)], {}),
        "short strangle": ([(n(1.1, "C"), -1), (n(0.9, "P"), -1)], {}),
        "covered call (spot)": ([(n(1.1, "C"), -1)], {underlying: 1.0}),
        "covered call (future)": ([(fut, 1.0), (n(1.1, "C"), -1)], {}),
        "protective put": ([(fut, 1.0), (n(0.95, "P"), 1)], {}),
        "delta-neutral spot + short perpetual": ([(perp, -1.0)], {underlying: 1.0}),
        "calendar spread": ([(n(1.0, "C"), -1), (n(1.0, "C", far), 1)], {}),
        "risk reversal": ([(n(1.1, "C"), 1), (n(0.9, "P"), -1)], {}),
    }
    return {
        name: portfolio_from_dict({
            "margin_currency": "USDC", "collateral": coll, "account_id": name,
            "positions": [{"instrument": i, "quantity": q} for i, q in pos],
        })
        for name, (pos, coll) in legs.items()
    }


def _legs(p: Portfolio) -> list[Portfolio]:
    """Each position alone, and the collateral alone: the structure without offsets."""
    out = [Portfolio(p.margin_currency, (pos,), {}, (), p.account_id) for pos in p.positions]
    if p.collateral:
        out.append(Portfolio(p.margin_currency, (), dict(p.collateral), (), p.account_id))
    return out


def hedge_table(market: MarketSnapshot, pm_models: tuple[str, ...] = ("deribit-pm", "pmargin"),
                sm_model: str = "deribit-sm") -> pd.DataFrame:
    """Initial margin (USD) of every structure under cross standard margin and portfolio margin.

    Parameters
    ----------
    market : MarketSnapshot
        Market with an option chain.
    pm_models : tuple of str
        Portfolio-margin presets to compare.
    sm_model : str
        Standard-margin preset (cross mode).

    Returns
    -------
    pandas.DataFrame
        One row per structure: ``hedged``, ``cross_sm``, then for each PM preset its IM, its
        worst scenario loss, the sum of the IMs of its legs margined alone (``_legs``) and the
        ratio PM / SM.
    """
    sm = load_model(sm_model)
    pms = {m: load_model(m) for m in pm_models}
    rows = []
    for name, p in structures(market).items():
        row: dict[str, object] = {"structure": name, "hedged": name in HEDGED,
                                  "legs": ", ".join(f"{q:+g} {x.instrument.name}"
                                                    for x, q in ((x, x.quantity)
                                                                 for x in p.positions))
                                  + "".join(f", {v:+g} {c} collateral"
                                            for c, v in p.collateral.items())}
        sm_im = sm.margin(p, market).initial_margin
        row["cross_sm"] = sm_im
        for m, model in pms.items():
            r = model.margin(p, market)
            legs = sum(model.margin(leg, market).initial_margin for leg in _legs(p))
            row[m] = r.initial_margin
            row[f"{m}_worst_loss"] = r.components["worst_case"]
            row[f"{m}_legs"] = legs
            row[f"{m}_ratio"] = r.initial_margin / sm_im if sm_im else np.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("structure")


def hedge_markdown(table: pd.DataFrame, market_label: str) -> str:
    """Render the whole Markdown page ``docs/hedges.md``: introduction, table, reading.

    Every figure in the text is computed from ``table``, so regenerating the page never leaves
    stale prose beside new numbers.
    """
    pms = [c[:-6] for c in table.columns if c.endswith("_ratio")]
    hedged = table[table["hedged"]]
    intro = [
        "# Hedges are recognised: portfolio margin versus cross standard margin",
        "",
        f"Produced by `pmargin hedges --markdown docs/hedges.md` on {market_label}. One contract "
        "per leg on the ~30-day expiry (the calendar's long leg on the ~90-day expiry), "
        "USDC-margined accounts holding the chain's inverse contracts (cross-collateral, like "
        "Deribit X:PM), initial margin in USD. \"legs alone\" is the sum of each leg margined in "
        "its own account (collateral is a leg too): the structure without any offset. Checked by "
        "`tests/reports/test_hedges.py`.",
        "",
    ]
    reading = ["", "Reading the table:", ""]
    for m in pms:
        below = hedged[hedged[f"{m}_ratio"] < 1.0]
        above = hedged[hedged[f"{m}_ratio"] >= 1.0]
        if len(below):
            reading.append(
                f"* Under `{m}`, {len(below)} of {len(hedged)} hedged structures need "
                f"{below[f'{m}_ratio'].min():.1%} to {below[f'{m}_ratio'].max():.1%} of cross "
                "standard margin (standard margin charges every short leg as if naked).")
        if len(above):
            reading.append(
                f"* Under `{m}`, {', '.join(map(str, above.index))} need more than under "
                "standard margin: their residual risk is the underlying's move (a covered call "
                "is a synthetic short put), which portfolio margin charges at its full price "
                "scenario while standard margin charges a future at 2 % and coin collateral at "
                "nothing.")
        less = int((hedged[m] < hedged[f"{m}_legs"]).sum())
        reading.append(f"* Under `{m}`, {less} of {len(hedged)} hedged structures need less "
                       "than their legs margined alone.")
    reading.append("* Defined-risk structures (spreads, butterflies, condors) never need more "
                   "than they can lose (docs/models/loss-bound.md).")
    head = ["structure", "legs", "cross SM"]
    for m in pms:
        head += [m, f"{m} / SM", f"{m} legs alone"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in table.iterrows():
        cells = [f"{name}{'' if r['hedged'] else ' (not a hedge)'}", str(r["legs"]),
                 f"{r['cross_sm']:,.0f}"]
        for m in pms:
            cells += [f"{r[m]:,.0f}", f"{r[f'{m}_ratio']:.3f}", f"{r[f'{m}_legs']:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(intro + lines + reading) + "\n"
