"""Terminal tables: cells say what the number is, never a bare ``nan`` or ``inf``."""

from __future__ import annotations

from rich.console import Console

from pmargin.models import load_model
from pmargin.reports.greeks import portfolio_greeks
from pmargin.reports.tables import print_frame, print_margin
from tests.factories import expiry_code, make_market, pf


def _text(render) -> str:
    console = Console(record=True, width=200)
    render(console)
    return console.export_text()


def test_greeks_total_row_has_no_quantity_cell():
    mkt = make_market()
    p = pf("BTC", [(f"BTC-{expiry_code(30)}-80000-C", -2.0), ("BTC-PERPETUAL", 0.5)],
           {"BTC": 3.0})
    frame = portfolio_greeks(p, mkt)
    text = _text(lambda c: print_frame(c, frame, "greeks"))
    total = next(line for line in text.splitlines() if "TOTAL" in line)
    assert "nan" not in total.lower()
    assert "nan" not in text.lower()


def test_margin_ratio_of_an_account_without_equity_says_why():
    mkt = make_market()
    p = pf("BTC", [(f"BTC-{expiry_code(30)}-80000-C", -2.0)], {"BTC": 0.0})
    res = load_model("deribit-sm").margin(p, mkt)
    assert res.equity <= 0
    text = _text(lambda c: print_margin(c, res))
    row = next(line for line in text.splitlines() if "margin ratio" in line)
    assert "inf (equity <= 0)" in row


def test_zero_cells_never_print_minus_zero():
    import pandas as pd

    frame = pd.DataFrame({"pnl": [-0.0, 1.5, -2.0]}, index=["a", "b", "c"])
    text = _text(lambda c: print_frame(c, frame, "pnl"))
    assert "-0" not in text
    assert "-2" in text  # a true negative keeps its sign
