"""Instrument table: listed, model-priced and settled columns, and how margins report them."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from pmargin.errors import StaleMarketData, UnknownInstrument
from pmargin.instruments import parse_instrument
from pmargin.market import load_market_json
from pmargin.models import load_model
from pmargin.models.valuation import build_table
from tests.factories import VALUATION, expiry_code, make_market, pf

E30 = expiry_code(30)
UNLISTED = f"BTC-{E30}-81000-C"  # make_market lists 60k, 64k, 70k, 72k, 80k, 88k, 90k, 96k
LISTED = f"BTC-{E30}-80000-C"


def test_build_table_refuses_an_unlisted_instrument():
    with pytest.raises(UnknownInstrument, match=UNLISTED):
        build_table([parse_instrument(UNLISTED)], make_market(), "BTC")


def test_build_table_marks_how_each_column_is_priced():
    mkt = make_market().with_policy(price_unlisted=True)
    t = build_table([parse_instrument(n) for n in (LISTED, UNLISTED, "BTC-PERPETUAL")], mkt,
                    "BTC")
    assert list(t.priced_by) == ["market", "model", "market"]


@pytest.mark.parametrize("preset", ["deribit-sm", "deribit-pm", "pmargin"])
def test_margin_of_unlisted_position_is_an_error(preset):
    with pytest.raises(UnknownInstrument, match=UNLISTED):
        load_model(preset).margin(pf("BTC", [(UNLISTED, -1)], {"BTC": 1.0}), make_market())


@pytest.mark.parametrize("preset",
                         ["deribit-sm", "deribit-pm", "pmargin", "deribit-sm-isolated"])
def test_model_priced_positions_are_marked_in_every_output(preset):
    mkt = make_market().with_policy(price_unlisted=True)
    res = load_model(preset).margin(pf("BTC", [(UNLISTED, -1), (LISTED, 1)], {"BTC": 1.0}), mkt)
    assert res.model_priced == [UNLISTED]
    assert res.by_position.loc[UNLISTED, "priced_by"] == "model"
    assert res.by_position.loc[LISTED, "priced_by"] == "market"
    d = res.to_dict()
    assert d["model_priced"] == [UNLISTED]
    assert d["settled"] == []
    assert {p["instrument"]: p["priced_by"] for p in d["positions"]} == {
        UNLISTED: "model", LISTED: "market"}


def _settled_market(**kw):
    data = make_market().to_dict()
    data["valuation_time"] = (VALUATION + timedelta(days=8)).isoformat()
    data["instruments"] = {k: v for k, v in data["instruments"].items()
                           if expiry_code(7) not in k}
    data["settlement_prices"] = {f"BTC-{expiry_code(7)}": 70000.0}
    return load_market_json(data, **kw)


def test_expired_position_is_an_error_unless_settlement_is_asked_for():
    name = f"BTC-{expiry_code(7)}-72000-P"
    with pytest.raises(StaleMarketData, match=name):
        load_model("deribit-pm").margin(pf("BTC", [(name, -1)]), _settled_market())


@pytest.mark.parametrize("preset", ["deribit-sm", "deribit-pm"])
def test_settled_position_is_valued_at_the_settlement_price_and_says_so(preset):
    name = f"BTC-{expiry_code(7)}-72000-P"
    mkt = _settled_market(settle_expired=True)
    res = load_model(preset).margin(pf("BTC", [(name, -1)], {"BTC": 1.0}), mkt)
    # short 1 inverse put struck 72,000 settled at 70,000: an inverse option pays its intrinsic
    # value in coin at the delivery price, 2,000 / 70,000 BTC (not at the 80,000 index)
    assert res.equity == pytest.approx(1.0 - 2000.0 / 70000.0, rel=1e-12)
    assert res.initial_margin == pytest.approx(0.0, abs=1e-12)
    assert res.settled == [name]
    assert res.to_dict()["settled"] == [name]
    assert res.by_position.loc[name, "priced_by"] == "settlement"


def test_generated_books_use_listed_instruments_only():
    from pmargin.synthetic import chain_universe

    mkt = make_market(linear=False)
    for linear in (False, True):
        for inst in chain_universe(mkt, "BTC", linear=linear):
            assert mkt.is_listed(inst)
    assert chain_universe(mkt, "BTC", linear=True) == []  # no linear twins are invented
    lin = make_market(linear=True)
    names = {i.name for i in chain_universe(lin, "BTC", linear=True)}
    assert "BTC_USDC-PERPETUAL" in names
    assert np.all([lin.is_listed(n) for n in names])
