"""MarketSnapshot: accessors, marks, quotes, collateral, bumps and validation of every field."""

from __future__ import annotations

import copy
import math
import pickle
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from pmargin.errors import InvalidInput, MarketDataError, StaleMarketData
from pmargin.instruments import parse_instrument
from pmargin.market import MarketSnapshot, Quote, ValuationPolicy, VolSurface, solve_implied_vol
from pmargin.pricing import black76

VT = "2024-06-17T08:00:00Z"
T0 = datetime(2024, 6, 17, 8, tzinfo=UTC)
JUN = datetime(2024, 6, 28, 8, tzinfo=UTC)
SEP = datetime(2024, 9, 27, 8, tzinfo=UTC)
CALL = "BTC-28JUN24-65000-C"
PUT = "BTC-28JUN24-65000-P"


def _market() -> dict[str, Any]:
    return {
        "valuation_time": VT,
        "index": {"BTC": 65000.0, "ETH": 3500.0},
        "instruments": {
            "BTC-PERPETUAL": {"mark_price": 65050.0, "bid_price": 65049.5, "ask_price": 65050.5},
            "BTC-28JUN24": {"mark_price": 65400.0},
            CALL: {"mark_iv": 0.55, "underlying_price": 65400.0, "bid_price": 1500.0,
                   "ask_price": 1560.0, "open_interest": 12.5, "volume": 3.0},
            PUT: {"mark_iv": 0.56, "mark_price": 1000.0, "underlying_price": 65400.0},
            "BTC-28JUN24-70000-C": {"mark_iv": 0.60, "underlying_price": 65400.0},
            "BTC-27SEP24-65000-C": {"mark_iv": 0.58},
            "ETH_USDC-28JUN24-3500-P": {"mark_price": 95.0, "underlying_price": 3510.0},
        },
    }


@pytest.fixture
def snap() -> MarketSnapshot:
    return MarketSnapshot(**_market())


def test_basic_accessors(snap):
    assert snap.valuation_time == T0
    assert snap.valuation_time.tzinfo is UTC
    assert snap.underlyings == ("BTC", "ETH")
    assert snap.index_price("BTC") == 65000.0
    assert snap.index_price("btc") == 65000.0
    assert snap.perpetual_mark("BTC") == 65050.0
    assert snap.perpetual_mark("ETH") == 3500.0  # no perpetual: the index
    assert snap.forward("BTC", None) == 65050.0
    assert snap.forward("BTC", JUN) == 65400.0
    assert snap.forward("ETH", JUN) == 3510.0
    assert snap.tau(JUN) == pytest.approx(11 / 365)
    assert snap.tau(T0 - timedelta(days=1)) == 0.0
    assert "BTC-PERPETUAL" in snap.instrument_names


def test_forward_beyond_last_pillar_uses_flat_basis(snap):
    t1 = snap.tau(JUN)
    r = math.log(65400.0 / 65000.0) / t1
    assert snap.forward("BTC", SEP) == pytest.approx(65000.0 * math.exp(r * snap.tau(SEP)))


def test_mark_price_by_kind(snap):
    assert snap.mark_price(parse_instrument("BTC-PERPETUAL")) == 65050.0
    assert snap.mark_price("BTC-28JUN24") == 65400.0
    snap = snap.with_policy(price_unlisted=True)  # the model fallbacks below are an opt-in
    assert snap.mark_price("BTC_USDC-28JUN24") == 65400.0  # unmarked future: forward curve
    assert snap.mark_price("BTC_USDC-PERPETUAL") == 65050.0  # unmarked perp: perpetual mark
    assert snap.mark_price("BTC_USDC") == 65000.0  # spot: index
    assert snap.mark_price(PUT) == 1000.0  # explicit mark wins
    tau = snap.tau(JUN)
    expect = float(black76.price(65400.0, 65000.0, tau, 0.55, True))
    assert snap.mark_price(CALL) == pytest.approx(expect, rel=1e-15)
    # Unlisted option: Black-76 from the curve forward and the surface vol.
    v = snap.implied_vol("BTC", JUN, 67500.0)
    k0, k1, k = (math.log(x / 65400.0) for x in (65000.0, 70000.0, 67500.0))
    assert v == pytest.approx(0.56 + (0.60 - 0.56) * (k - k0) / (k1 - k0), rel=1e-14)
    expect = float(black76.price(65400.0, 67500.0, tau, v, False))
    assert snap.mark_price("BTC-28JUN24-67500-P") == pytest.approx(expect, rel=1e-14)
    assert snap.model_price("BTC-28JUN24-67500-P") == snap.mark_price("BTC-28JUN24-67500-P")


def test_smile_keeps_the_out_of_the_money_option(snap):
    # F = 65400 > K = 65000, so the put is OTM: its 0.56 is the pillar, the call keeps its own.
    assert snap.implied_vol("BTC", JUN, 65000.0) == 0.56
    assert snap.instrument_vol(CALL) == 0.55
    assert snap.instrument_vol(PUT) == 0.56
    assert snap.instrument_vol("BTC-28JUN24-70000-P") == 0.60


def test_implied_vol_solved_from_mark_price(snap):
    om = snap.option_marks
    row = om.loc["ETH_USDC-28JUN24-3500-P"]
    assert bool(row.iv_solved)
    price = black76.price(3510.0, 3500.0, snap.tau(JUN), row.mark_iv, False)
    assert float(price) == pytest.approx(95.0, rel=1e-11)
    assert snap.implied_vol("ETH", JUN, 3500.0) == row.mark_iv
    assert snap.mark_price("ETH_USDC-28JUN24-3500-P") == 95.0


def test_vectorised_implied_vols(snap):
    taus = np.array([snap.tau(JUN), snap.tau(JUN), snap.tau(SEP)])
    strikes = np.array([65000.0, 70000.0, 65000.0])
    got = snap.implied_vols("BTC", taus, strikes)
    assert got.tolist() == [0.56, 0.60, 0.58]
    assert snap.forwards("BTC", taus[:1]).tolist() == [65400.0]


def test_has_mark_and_quote(snap):
    assert snap.has_mark("BTC-PERPETUAL")
    assert snap.has_mark("btc-perpetual")
    assert snap.has_mark(parse_instrument(CALL))
    assert not snap.has_mark("BTC-28JUN24-60000-C")
    assert not snap.has_mark("not an instrument")
    assert snap.quote(CALL) == (1500.0, 1560.0)
    assert snap.quote("BTC-PERPETUAL") == (65049.5, 65050.5)
    assert snap.quote(PUT) == (None, None)
    assert snap.quote("BTC-28JUN24-60000-C") == (None, None)


def test_option_marks_frame(snap):
    om = snap.option_marks
    assert set(om.index) == {CALL, PUT, "BTC-28JUN24-70000-C", "BTC-27SEP24-65000-C",
                             "ETH_USDC-28JUN24-3500-P"}
    assert om.loc[CALL, "bid_price"] == 1500.0
    assert math.isnan(om.loc[CALL, "mark_price"])
    assert om.loc[CALL, "open_interest"] == 12.5
    assert om.loc["ETH_USDC-28JUN24-3500-P", "settlement"] == "linear"
    assert om.loc["BTC-27SEP24-65000-C", "forward"] == snap.forward("BTC", SEP)
    assert str(om["expiry"].dt.tz) == "UTC"


def test_collateral_prices():
    m = _market()
    m["collateral_prices"] = {"USDC": 0.98}
    s = MarketSnapshot(**m)
    assert s.collateral_price("USDC") == 0.98
    assert s.collateral_price("usdt") == 1.0
    assert s.collateral_price("USD") == 1.0
    assert s.collateral_price("BTC") == 65000.0
    with pytest.raises(MarketDataError, match=r"collateral_prices\['DOGE'\].*unknown.*'doge'"):
        s.collateral_price("doge")
    # A stablecoin in the index block is read as its USD price.
    s2 = MarketSnapshot(VT, {"BTC": 1.0, "USDT": 0.995})
    assert s2.collateral_price("USDT") == 0.995
    assert s2.underlyings == ("BTC",)


def test_unknown_underlying_queries_name_the_index():
    s = MarketSnapshot(VT, {"BTC": 1.0})
    for call in (lambda: s.index_price("SOL"), lambda: s.forward("SOL", None),
                 lambda: s.mark_price("SOL-PERPETUAL")):
        with pytest.raises(MarketDataError, match=r"market\.index\['SOL'\].*no index price"):
            call()


def test_option_without_surface_raises():
    s = MarketSnapshot(VT, {"BTC": 65000.0}).with_policy(price_unlisted=True)
    with pytest.raises(MarketDataError, match=r"vol_surface\['BTC'\]"):
        s.mark_price(CALL)
    flat = MarketSnapshot(VT, {"BTC": 65000.0}, vol_surfaces={"BTC": VolSurface.flat(0.5)},
                          policy=ValuationPolicy(price_unlisted=True))
    assert flat.implied_vol("BTC", JUN, 60000.0) == 0.5
    assert flat.mark_price(CALL) == pytest.approx(
        float(black76.price(65000.0, 65000.0, flat.tau(JUN), 0.5, True)))


def test_expired_instrument_queries_are_stale(snap):
    old = "BTC-14JUN24-65000-C"
    with pytest.raises(StaleMarketData, match=r"expired.*BTC-14JUN24-65000-C"):
        snap.mark_price(old)
    with pytest.raises(StaleMarketData, match="BTC-14JUN24"):
        snap.mark_price("BTC-14JUN24")


def test_bumped_scales_prices_and_keeps_vols(snap):
    b = snap.bumped({"BTC": -0.2})
    assert b.index_price("BTC") == pytest.approx(52000.0)
    assert b.index_price("ETH") == 3500.0
    assert b.perpetual_mark("BTC") == pytest.approx(65050.0 * 0.8)
    assert b.forward("BTC", JUN) == pytest.approx(65400.0 * 0.8)
    assert b.forward("BTC", SEP) == pytest.approx(snap.forward("BTC", SEP) * 0.8)
    assert b.mark_price("BTC-28JUN24") == pytest.approx(65400.0 * 0.8)
    assert b.collateral_price("BTC") == pytest.approx(52000.0)
    # Sticky strike: each listed option keeps its mark IV at its strike.
    assert b.implied_vol("BTC", JUN, 70000.0) == snap.implied_vol("BTC", JUN, 70000.0)
    assert b.instrument_vol(CALL) == 0.55
    assert b.instrument_vol(PUT) == 0.56
    tau = snap.tau(JUN)
    assert b.mark_price(PUT) == pytest.approx(
        float(black76.price(65400.0 * 0.8, 65000.0, tau, 0.56, False)), rel=1e-14)
    assert b.quote(CALL) == (None, None)
    assert b.mark_price("ETH_USDC-28JUN24-3500-P") == 95.0  # other underlying untouched
    assert snap.bumped({"BTC": 0.0}) is snap
    assert snap.bumped({}) is snap
    with pytest.raises(MarketDataError, match=r"spot_move\['BTC'\].*above -1.*-1\.5"):
        snap.bumped({"BTC": -1.5})
    with pytest.raises(MarketDataError, match=r"spot_move\['BTC'\].*finite.*nan"):
        snap.bumped({"BTC": float("nan")})
    with pytest.raises(MarketDataError, match=r"index\['SOL'\]"):
        snap.bumped({"SOL": 0.1})


def test_bumped_solved_iv_kept():
    b = MarketSnapshot(**_market()).bumped({"ETH": 0.1})
    s = MarketSnapshot(**_market())
    assert b.instrument_vol("ETH_USDC-28JUN24-3500-P") == s.instrument_vol(
        "ETH_USDC-28JUN24-3500-P")
    assert b.forward("ETH", JUN) == pytest.approx(3510.0 * 1.1)


def test_immutable_and_picklable(snap):
    with pytest.raises(AttributeError, match="immutable"):
        snap._index = {}  # type: ignore[misc]
    _ = snap.option_marks  # cached_property must still work
    back = pickle.loads(pickle.dumps(snap))
    assert back.mark_price(CALL) == snap.mark_price(CALL)
    assert back.implied_vols("BTC", [0.1, 0.5], [60000.0, 70000.0]).tolist() == \
        snap.implied_vols("BTC", [0.1, 0.5], [60000.0, 70000.0]).tolist()


def test_to_dict_round_trip(snap):
    again = MarketSnapshot(**snap.to_dict())
    assert again.to_dict() == snap.to_dict()
    for name in snap.instrument_names:
        assert again.mark_price(name) == snap.mark_price(name)


def test_quote_objects_accepted():
    s = MarketSnapshot(T0, {"BTC": 65000.0}, {CALL: Quote(mark_iv=0.5)})
    assert s.instrument_vol(CALL) == 0.5


def test_solve_implied_vol_round_trip():
    for is_call in (True, False):
        for vol in (0.05, 0.5, 2.0, 6.0):
            for k in (50000.0, 65000.0, 90000.0):
                p = float(black76.price(65000.0, k, 0.1, vol, is_call))
                if p - max((65000.0 - k) if is_call else (k - 65000.0), 0.0) < 1e-6:
                    continue
                assert solve_implied_vol(p, 65000.0, k, 0.1, is_call) == pytest.approx(
                    vol, rel=1e-8)


# -- every bad input names the field and the value -----------------------------------------


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    m = copy.deepcopy(_market())
    node: Any = m
    for p in path[:-1]:
        node = node.setdefault(p, {})
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return m


_DELETE = object()
NAN, INF = float("nan"), float("inf")

BAD_CASES = [
    # (path into the market dict, bad value, field expected in the message, value in message)
    (("index", "BTC"), NAN, "market.index['BTC']", "nan"),
    (("index", "BTC"), INF, "market.index['BTC']", "inf"),
    (("index", "BTC"), 0.0, "market.index['BTC']", "0.0"),
    (("index", "BTC"), -65000.0, "market.index['BTC']", "-65000.0"),
    (("index", "BTC"), "65000", "market.index['BTC']", "'65000'"),
    (("index", "BTC"), _DELETE, "market.index['BTC']", "None"),
    (("instruments", CALL, "mark_iv"), NAN, f"market.instruments['{CALL}'].mark_iv", "nan"),
    (("instruments", CALL, "mark_iv"), INF, f"market.instruments['{CALL}'].mark_iv", "inf"),
    (("instruments", CALL, "mark_iv"), -0.3, f"market.instruments['{CALL}'].mark_iv", "-0.3"),
    (("instruments", CALL, "mark_iv"), 0.0, f"market.instruments['{CALL}'].mark_iv", "0.0"),
    (("instruments", CALL, "mark_iv"), 55.0, f"market.instruments['{CALL}'].mark_iv", "55.0"),
    (("instruments", CALL, "mark_iv"), None, f"market.instruments['{CALL}'].mark_iv", "None"),
    (("instruments", CALL, "underlying_price"), -1.0,
     f"market.instruments['{CALL}'].underlying_price", "-1.0"),
    (("instruments", CALL, "underlying_price"), NAN,
     f"market.instruments['{CALL}'].underlying_price", "nan"),
    (("instruments", CALL, "bid_price"), -5.0, f"market.instruments['{CALL}'].bid_price", "-5.0"),
    (("instruments", CALL, "bid_price"), 2000.0, f"market.instruments['{CALL}'].bid_price",
     "2000.0"),
    (("instruments", CALL, "mark_vol"), 0.5, f"market.instruments['{CALL}'].mark_vol",
     "did you mean 'mark_iv'?"),
    (("instruments", PUT, "mark_price"), -3.0, f"market.instruments['{PUT}'].mark_price", "-3.0"),
    (("instruments", "BTC-28JUN24", "mark_price"), 0.0,
     "market.instruments['BTC-28JUN24'].mark_price", "0.0"),
    (("instruments", "BTC-28JUN24", "mark_price"), NAN,
     "market.instruments['BTC-28JUN24'].mark_price", "nan"),
    (("instruments", "BTC-PERPETUAL", "mark_price"), -1.0,
     "market.instruments['BTC-PERPETUAL'].mark_price", "-1.0"),
    (("instruments", "BTC-PERPETUAL", "mark_price"), None,
     "market.instruments['BTC-PERPETUAL'].mark_price", "None"),
    (("instruments", "BTC-PERPETUAL", "mark_iv"), 0.5,
     "market.instruments['BTC-PERPETUAL'].mark_iv", "0.5"),
    (("instruments", "BTC-28JUN24--65000-C"), {"mark_iv": 0.5},
     "market.instruments['BTC-28JUN24--65000-C']", "'BTC-28JUN24--65000-C'"),
    (("instruments", "BTC-28JUN24-0-C"), {"mark_iv": 0.5},
     "market.instruments['BTC-28JUN24-0-C']", "strike must be positive"),
    (("instruments", "BTC-14JUN24-65000-C"), {"mark_iv": 0.5},
     "market.instruments['BTC-14JUN24-65000-C']", "2024-06-14T08:00:00+00:00"),
    (("instruments", "BTC-14JUN24"), {"mark_price": 65000.0},
     "market.instruments['BTC-14JUN24']", "2024-06-14T08:00:00+00:00"),
    (("instruments", "BTC-28JUN24-60000-P"), {"underlying_price": 65400.0},
     "market.instruments['BTC-28JUN24-60000-P'].mark_iv", "None"),
    (("instruments", "SOL-28JUN24-150-C"), {"mark_iv": 0.9}, "market.index['SOL']", "None"),
    (("instruments", "SOL-PERPETUAL"), {"mark_price": 150.0}, "market.index['SOL']", "None"),
    # Arbitrage-violating option prices (no mark_iv given).
    (("instruments", "BTC-28JUN24-50000-C"), {"mark_price": 10000.0, "underlying_price": 65400.0},
     "market.instruments['BTC-28JUN24-50000-C'].mark_price", "10000.0"),
    (("instruments", "BTC-28JUN24-50000-C"), {"mark_price": 70000.0, "underlying_price": 65400.0},
     "market.instruments['BTC-28JUN24-50000-C'].mark_price", "70000.0"),
    (("instruments", "BTC-28JUN24-80000-P"), {"mark_price": 14600.0, "underlying_price": 65400.0},
     "market.instruments['BTC-28JUN24-80000-P'].mark_price", "14600.0"),
    (("instruments", "BTC-28JUN24-80000-C"), {"mark_price": 0.0, "underlying_price": 65400.0},
     "market.instruments['BTC-28JUN24-80000-C'].mark_price", "0.0"),
    (("instruments", "BTC-28JUN24-66000-C"), {"mark_price": 60000.0, "underlying_price": 65400.0},
     "market.instruments['BTC-28JUN24-66000-C'].mark_price", "60000.0"),
    (("collateral_prices",), {"USDC": -0.98}, "market.collateral_prices['USDC']", "-0.98"),
    (("collateral_prices",), {"USDC": NAN}, "market.collateral_prices['USDC']", "nan"),
    (("valuation_time",), "2024-06-17T08:00:00", "market.valuation_time",
     "'2024-06-17T08:00:00'"),
    (("valuation_time",), "2024-06-17T10:00:00+02:00", "market.valuation_time",
     "'2024-06-17T10:00:00+02:00'"),
    (("valuation_time",), "yesterday", "market.valuation_time", "'yesterday'"),
    (("valuation_time",), datetime(2024, 6, 17, 8), "market.valuation_time",  # noqa: DTZ001
     "datetime.datetime(2024, 6, 17, 8, 0)"),
    (("valuation_time",), datetime(2024, 6, 17, 10, tzinfo=timezone(timedelta(hours=2))),
     "market.valuation_time", "datetime.datetime(2024, 6, 17, 10, 0"),
]


@pytest.mark.parametrize(
    ("path", "value", "field", "shown"), BAD_CASES,
    ids=[f"{'.'.join(c[0])}={'deleted' if c[1] is _DELETE else repr(c[1])}"[:60]
         for c in BAD_CASES],
)
def test_every_bad_input_names_field_and_value(path, value, field, shown):
    m = _with(path, value)
    with pytest.raises(MarketDataError, match=re.escape(field)) as info:
        MarketSnapshot(**m)
    assert shown in str(info.value)
    assert info.value.field == field


def test_expired_is_stale_market_data():
    m = _with(("instruments", "BTC-14JUN24-65000-C"), {"mark_iv": 0.5})
    with pytest.raises(StaleMarketData, match="expired"):
        MarketSnapshot(**m)


def test_implied_vol_rejects_bad_strike(snap):
    with pytest.raises(InvalidInput, match=r"strike.*-1"):
        snap.implied_vol("BTC", JUN, -1.0)


def test_duplicate_canonical_names_rejected():
    with pytest.raises(MarketDataError, match=r"btc-perpetual.*duplicates"):
        MarketSnapshot(VT, {"BTC": 1.0}, {"BTC-PERPETUAL": {"mark_price": 1.0},
                                          "btc-perpetual": {"mark_price": 1.0}})


def test_non_utc_aware_datetime_in_utc_alias_accepted():
    s = MarketSnapshot(datetime(2024, 6, 17, 8, tzinfo=timezone.utc), {"BTC": 1.0})  # noqa: UP017
    assert s.valuation_time == T0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"instruments": [1]}, "market.instruments"),
     ({"collateral_prices": 3}, "market.collateral_prices"),
     ({"index": [65000.0]}, "market.index")],
)
def test_container_types_checked(kwargs, field):
    args: dict[str, Any] = {"valuation_time": VT, "index": {"BTC": 1.0}, **kwargs}
    with pytest.raises(MarketDataError, match=re.escape(field)):
        MarketSnapshot(**args)
