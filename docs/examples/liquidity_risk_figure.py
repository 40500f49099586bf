r"""Print the example figure of docs/models/liquidity-risk.md (a Markdown table).

A short BTC-25SEP26-70000-P, 10 and 2,000 contracts, in a BTC-margined account, on the Deribit
snapshot of 2026-08-22, margined by ``pmargin`` and ``var-fhs`` with the liquidity-risk options
off (the shipped presets) and on (``docs/examples/*-liquidity.toml``)::

    PYTHONPATH=src python docs/examples/liquidity_risk_figure.py \\
        ../shared/data/deribit/deribit_options_snapshot_20260822T153351Z.csv.gz

tests/models/test_liquidity.py runs it and checks that its output is in the document.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pmargin.instruments import parse_instrument
from pmargin.market.loaders import load_market
from pmargin.models import load_model
from pmargin.portfolio import Portfolio, Position

HERE = Path(__file__).resolve().parent
INSTRUMENT = "BTC-25SEP26-70000-P"
SIZES = (10.0, 2000.0)
MODELS = ("pmargin", str(HERE / "pmargin-liquidity.toml"),
          "var-fhs", str(HERE / "var-fhs-liquidity.toml"))


def figure(market_path: str) -> str:
    """The Markdown of the figure (instrument line and table)."""
    market = load_market(market_path)
    oi, vol = market.activity(INSTRUMENT)
    bid, ask = market.quote(INSTRUMENT)
    mark = market.mark_price(INSTRUMENT)
    lines = [f"{INSTRUMENT}: mark {mark:,.2f} USD, bid {bid:,.2f}, ask {ask:,.2f}, "
             f"open interest {oi:,.1f}, 24-hour volume {vol:,.1f} contracts; "
             f"index {market.index_price('BTC'):,.2f} USD.",
             "",
             "| model | short puts | IM (BTC) | MM (BTC) | concentration (BTC) "
             "| liquidation period (BTC) | MPOR_eff / MPOR |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in MODELS:
        model = load_model(name)
        for q in SIZES:
            pf = Portfolio("BTC", [Position(parse_instrument(INSTRUMENT), -q)], {"BTC": 0.0})
            r = model.margin(pf, market)
            c = r.components
            lines.append(
                f"| {model.name} | {q:,.0f} | {r.initial_margin:,.4f} "
                f"| {r.maintenance_margin:,.4f} | {c.get('concentration', 0.0):,.4f} "
                f"| {c.get('liquidation_period', 0.0):,.4f} "
                f"| {c.get('liquidation_period_multiple', 1.0):,.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(figure(sys.argv[1]))
