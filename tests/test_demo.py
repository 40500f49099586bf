"""The demo says only what its rows show (pmargin.demo)."""

import pandas as pd
import pytest

from pmargin.demo import COVERED_CALL, demo_footer, demo_market, demo_portfolios, find_shared


def rows(values):
    return pd.DataFrame([{"portfolio": p, "model": m, "IM": v} for (p, m), v in values.items()])


def test_footer_lists_exactly_the_rows_where_pm_is_below_sm():
    df = rows({("a", "deribit-sm"): 1.0, ("a", "deribit-pm"): 0.5,
               ("b", "deribit-sm"): 1.0, ("b", "deribit-pm"): 1.5})
    footer = " ".join(demo_footer(df))
    assert "below deribit-sm for: a;" in footer
    assert "not below for: b." in footer


def test_footer_makes_no_hedge_claim_that_rows_contradict():
    df = rows({("x", "deribit-sm"): 1.0, ("x", "deribit-pm"): 2.0})
    footer = " ".join(demo_footer(df))
    assert "below deribit-sm for: none" in footer
    assert "recognises" not in footer


def test_covered_call_is_a_short_call_against_the_coin_collateral():
    market, _ = demo_market()
    pfs = demo_portfolios(market)
    (name,) = [n for n in pfs if n.startswith(COVERED_CALL)]
    p = pfs[name]
    assert p.margin_currency == "BTC"
    assert dict(p.collateral) == {"BTC": 1.0}
    assert [(x.instrument.name.endswith("-C"), x.quantity) for x in p.positions] == [(True, -1)]
    assert "1 BTC" in name


def test_shared_env_var_must_exist(tmp_path, monkeypatch):
    from pmargin.errors import InvalidInput

    monkeypatch.setenv("PMARGIN_SHARED", str(tmp_path))
    with pytest.raises(InvalidInput, match="PMARGIN_SHARED"):
        find_shared()
