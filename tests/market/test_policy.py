"""Listed, model-priced, expired and stale: the valuation policy of a snapshot (issue 8.1, 8.2)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pmargin.errors import MarketDataError, StaleMarketData, UnknownInstrument
from pmargin.market import load_market, load_market_json
from pmargin.pricing import black76
from tests.conftest import shared_path
from tests.factories import VALUATION, expiry_code, make_market

SNAP = "deribit_options_snapshot_20260822T153351Z.csv.gz"


def _csv():
    return shared_path("data", "deribit", SNAP)


# -- unlisted instruments -------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "BTC-25SEP26-85001-C",  # unlisted strike
    "BTC-26SEP26-85000-C",  # unlisted expiry
    "BTC-26SEP26",  # a future that does not exist
    "BTC_USDC-PERPETUAL",  # the CSV lists no linear perpetual
])
@pytest.mark.data
def test_unlisted_instrument_is_an_error_naming_it(name):
    mkt = load_market(_csv())
    assert not mkt.is_listed(name)
    with pytest.raises(UnknownInstrument, match=name) as info:
        mkt.mark_price(name)
    assert "\n" not in str(info.value)
    assert info.value.value == name


@pytest.mark.data
def test_unlisted_strike_error_suggests_the_nearest_listed_one():
    with pytest.raises(UnknownInstrument, match="nearest listed: BTC-25SEP26-85000-C"):
        load_market(_csv()).priced_by("BTC-25SEP26-85001-C")


@pytest.mark.data
def test_price_unlisted_opt_in_prices_from_the_surface():
    mkt = load_market(_csv(), price_unlisted=True)
    name = "BTC-25SEP26-85001-C"
    assert mkt.priced_by(name) == "model"
    assert mkt.priced_by("BTC-25SEP26-85000-C") == "market"
    exp = mkt.option_marks.loc["BTC-25SEP26-85000-C", "expiry"].to_pydatetime()
    fwd = mkt.forward("BTC", exp)
    vol = mkt.implied_vol("BTC", exp, 85001.0)
    want = float(black76.price(fwd, 85001.0, mkt.tau(exp), vol, True))
    assert mkt.mark_price(name) == pytest.approx(want, rel=1e-14)
    # the opt-in survives a stress bump
    assert mkt.bumped({"BTC": -0.1}).priced_by(name) == "model"


@pytest.mark.data
def test_csv_perpetual_is_listed_by_construction_at_the_index():
    mkt = load_market(_csv())
    assert mkt.is_listed("BTC-PERPETUAL")
    assert mkt.is_listed("ETH-PERPETUAL")
    assert mkt.priced_by("BTC-PERPETUAL") == "index"
    assert mkt.mark_price("BTC-PERPETUAL") == mkt.index_price("BTC")
    # written out, it becomes an explicit mark equal to the index
    d = mkt.to_dict()
    assert d["instruments"]["BTC-PERPETUAL"] == {"mark_price": mkt.index_price("BTC")}


def test_with_policy_returns_a_copy_and_keeps_the_original_strict():
    mkt = make_market()
    name = f"BTC-{expiry_code(30)}-81000-C"
    loose = mkt.with_policy(price_unlisted=True)
    assert loose.priced_by(name) == "model"
    with pytest.raises(UnknownInstrument):
        mkt.priced_by(name)
    assert loose.with_policy(price_unlisted=True) is loose


# -- expired instruments --------------------------------------------------------------------


def _after_expiry(settle: dict[str, float] | None = None, **kw):
    """make_market's data valued 8 days later, after the 7-day expiry (whose rows are gone)."""
    data = make_market().to_dict()
    data["valuation_time"] = (VALUATION + timedelta(days=8)).isoformat()
    data["instruments"] = {k: v for k, v in data["instruments"].items()
                           if expiry_code(7) not in k}
    if settle is not None:
        data["settlement_prices"] = settle
    return load_market_json(data, **kw)


def test_expired_instrument_is_an_error_naming_it_and_its_expiry():
    mkt = _after_expiry()
    name = f"BTC-{expiry_code(7)}-72000-P"
    with pytest.raises(StaleMarketData, match=name) as info:
        mkt.mark_price(name)
    assert (VALUATION + timedelta(days=7)).isoformat() in str(info.value)


def test_settle_expired_needs_a_settlement_price():
    mkt = _after_expiry(settle_expired=True)
    with pytest.raises(StaleMarketData, match=r"settlement_prices\['BTC-.*'\].*missing"):
        mkt.mark_price(f"BTC-{expiry_code(7)}-72000-P")


def test_settle_expired_values_at_the_settlement_price():
    code = expiry_code(7)
    mkt = _after_expiry({f"BTC-{code}": 70000.0}, settle_expired=True)
    # intrinsic value against 70,000, written out: put 72,000 -> 2,000; call 64,000 -> 6,000
    assert mkt.priced_by(f"BTC-{code}-72000-P") == "settlement"
    assert mkt.mark_price(f"BTC-{code}-72000-P") == 2000.0
    assert mkt.mark_price(f"BTC-{code}-64000-C") == 6000.0
    assert mkt.mark_price(f"BTC-{code}-64000-P") == 0.0
    assert mkt.mark_price(f"BTC-{code}") == 70000.0
    assert mkt.mark_price(f"BTC_USDC-{code}-72000-P") == 2000.0  # linear twin shares it
    # the settlement price is not the index (80,000), which the old rule used
    assert mkt.index_price("BTC") == 80000.0


def test_settlement_price_must_be_of_a_past_expiry():
    data = make_market().to_dict()
    data["settlement_prices"] = {f"BTC-{expiry_code(30)}": 70000.0}
    with pytest.raises(MarketDataError, match=r"settlement_prices.*after the valuation time"):
        load_market_json(data)


def test_settlement_price_key_must_name_an_expiry():
    data = make_market().to_dict()
    data["settlement_prices"] = {"BTC-PERPETUAL": 70000.0}
    with pytest.raises(MarketDataError, match=r"settlement_prices\['BTC-PERPETUAL'\]"):
        load_market_json(data)


# -- stale data -----------------------------------------------------------------------------


def default_max_age() -> timedelta:
    from pmargin.market.policy import default_max_age as dma

    return dma()


def test_default_max_age_comes_from_the_data_file():
    import tomllib
    from importlib import resources

    text = (resources.files("pmargin.market") / "market_data.toml").read_text()
    seconds = tomllib.loads(text)["staleness"]["max_age_seconds"]
    assert default_max_age() == timedelta(seconds=seconds)


@pytest.mark.data
def test_valuation_later_than_max_age_is_stale():
    mkt = load_market(_csv())
    late = mkt.data_time + default_max_age() + timedelta(seconds=1)
    with pytest.raises(StaleMarketData, match=r"market\.data_time.*stale"):
        load_market(_csv(), valuation_time=late)
    with pytest.raises(StaleMarketData, match="stale"):
        load_market(_csv(), valuation_time=mkt.data_time + timedelta(hours=1), max_age=60)


@pytest.mark.data
def test_valuation_within_max_age_values_at_the_later_time():
    base = load_market(_csv())
    later = base.data_time + timedelta(seconds=120)
    mkt = load_market(_csv(), valuation_time=later, max_age=600)
    assert mkt.valuation_time == later
    assert mkt.data_time == base.data_time
    exp = base.option_marks["expiry"].iloc[0].to_pydatetime()
    assert mkt.tau(exp) == pytest.approx(base.tau(exp) - 120 / (365 * 86400), abs=1e-15)


def test_data_from_after_the_valuation_time_is_refused():
    data = make_market().to_dict()
    data["data_time"] = (VALUATION + timedelta(seconds=1)).isoformat()
    with pytest.raises(MarketDataError, match=r"market\.data_time.*after the valuation time"):
        load_market_json(data)


def test_stale_json_data_time_is_refused():
    data = make_market().to_dict()
    data["data_time"] = (VALUATION - timedelta(days=1)).isoformat()
    with pytest.raises(StaleMarketData, match="stale"):
        load_market_json(data)
    ok = load_market_json(data, max_age=timedelta(days=2))
    assert ok.to_dict()["data_time"] == data["data_time"].replace("+00:00", "Z")
