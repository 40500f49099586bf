"""var-fhs: ES over filtered historical scenarios, checked against direct computations.

Generated history (a GARCH-like daily series with DVOL from a known day) keeps these tests
independent of ../shared; one test at the end runs the shipped preset on the real history.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from pmargin.book import Book
from pmargin.errors import InvalidInput
from pmargin.market.history_series import DailySeries
from pmargin.models import load_model
from pmargin.models.var_fhs import VarFhsModel, expected_shortfall, load_var_fhs_params
from pmargin.models.var_fhs.model import tail_size
from pmargin.synthetic import chain_universe, generate_book
from tests.conftest import model_param
from tests.factories import VALUATION, expiry_code, make_market, pf

MARKET = make_market()


END = VALUATION.date()


def synthetic_series(asset: str, seed: int, days: int = 1500, dvol_from: int = 900,
                     end=END) -> DailySeries:
    rng = np.random.default_rng(seed)
    var = np.empty(days)
    r = np.empty(days)
    var[0] = 0.03**2
    for t in range(days):
        if t:
            var[t] = 2e-5 + 0.08 * r[t - 1] ** 2 + 0.9 * var[t - 1]
        r[t] = math.sqrt(var[t]) * rng.standard_normal()
    close = 50000.0 * np.exp(np.cumsum(r)) if asset == "BTC" else 2000.0 * np.exp(np.cumsum(r))
    dvol = 0.6 * np.exp(np.cumsum(0.04 * rng.standard_normal(days) - 1.5 * r))
    dvol[:dvol_from] = np.nan
    last = np.datetime64(end, "D") - np.timedelta64(1, "D")
    day = last - np.arange(days)[::-1].astype("timedelta64[D]")
    return DailySeries(asset, day, close, dvol)


SERIES = {"BTC": synthetic_series("BTC", 1), "ETH": synthetic_series("ETH", 2)}


def model(**over) -> VarFhsModel:
    base = {"history_start": "2018-01-01", "stressed_periods": []}
    return VarFhsModel(load_var_fhs_params(overrides={**base, **over}), series=SERIES)


# ----------------------------------------------------------------------------- ES arithmetic
def test_tail_size_and_expected_shortfall_by_hand():
    assert tail_size(0.99, 250) == 3           # 2.5 -> 3 worst
    assert tail_size(0.99, 100) == 1
    assert tail_size(0.975, 400) == 10
    pnl = np.array([[5.0, -1.0, -7.0, 2.0, -3.0, 0.0, 1.0, -2.0, 4.0, -10.0]])
    # 0.8 over 10 scenarios: the 2 worst losses are 10 and 7
    assert expected_shortfall(pnl, 0.8)[0] == pytest.approx(8.5)
    assert expected_shortfall(pnl, 0.95)[0] == pytest.approx(10.0)
    assert expected_shortfall(-pnl, 0.8)[0] == pytest.approx(4.5)   # losses 5 and 4
    gains = np.array([[1.0, 2.0, 3.0]])  # even the tail gains: ES is negative (IM floors it)
    assert expected_shortfall(gains, 0.5)[0] == pytest.approx(-1.5)


# ----------------------------------------------------------------------------- revaluation
def test_linear_perpetual_es_equals_the_tail_of_its_scenario_moves():
    m = model()
    p = pf("USDC", [("BTC_USDC-PERPETUAL", -2.0)], {"USDC": 50000.0})
    book = Book.from_portfolios([p])
    prep = m.prepare(book, MARKET)
    fwd = MARKET.perpetual_mark("BTC")
    direct = -2.0 * fwd * prep.scenarios.move["BTC"]      # USD P&L of a linear short
    k = tail_size(m.params.confidence, prep.scenarios.size)
    want = -np.sort(direct)[:k].mean()
    res = m.compute(book, MARKET)
    assert res.initial_margin[0] == pytest.approx(want, rel=1e-12)
    assert res.maintenance_margin[0] == pytest.approx(m.params.mm_fraction * want, rel=1e-12)


def test_book_equals_each_account_alone():
    universe = chain_universe(MARKET, "BTC")
    book = generate_book(MARKET, universe, 30, seed=3)
    m = model()
    res = m.compute(book, MARKET)
    for r in range(book.n_accounts):
        one = m.margin(book.portfolio(r), MARKET)
        for a, b in ((res.initial_margin[r], one.initial_margin),
                     (res.maintenance_margin[r], one.maintenance_margin)):
            assert abs(a - b) <= 1e-9 * max(1.0, abs(b))


def test_long_option_never_needs_more_than_its_value():
    m = model()
    name = f"BTC-{expiry_code(30)}-88000-C"
    p = pf("BTC", [(name, 3.0)], {"BTC": 0.0})
    res = m.compute(Book.from_portfolios([p]), MARKET)
    assert 0.0 < res.initial_margin[0] <= res.equity[0] * (1 + 1e-12)


def test_no_look_ahead():
    base = model()
    p = pf("BTC", [(f"BTC-{expiry_code(30)}-72000-P", -1.0)], {"BTC": 1.0})
    im = base.compute(Book.from_portfolios([p]), MARKET).initial_margin[0]
    later = {}
    for u, s in SERIES.items():
        extra = 40
        day = np.r_[s.day, s.day[-1] + np.arange(1, extra + 1).astype("timedelta64[D]")]
        close = np.r_[s.close, s.close[-1] * np.linspace(0.2, 3.0, extra)]
        later[u] = DailySeries(u, day, close, np.r_[s.dvol, np.full(extra, 3.0)])
    m2 = VarFhsModel(base.params, series=later)
    assert m2.compute(Book.from_portfolios([p]), MARKET).initial_margin[0] == im


def test_current_vol_rescales_filtered_scenarios():
    p = pf("BTC", [(f"BTC-{expiry_code(30)}-72000-P", -1.0)], {"BTC": 1.0})
    book = Book.from_portfolios([p])
    filt = model(current_vol="filter").prepare(book, MARKET)
    impl = model(current_vol="implied").prepare(book, MARKET)
    f = filt.filtered["BTC"]
    # the filtered scenario returns scale exactly with the current vol
    r_f = np.log1p(filt.scenarios.move["BTC"])
    r_i = np.log1p(impl.scenarios.move["BTC"])
    ratio = impl.scenarios.sigma_now["BTC"] / f.forecast_ret
    np.testing.assert_allclose(r_i, r_f * ratio, rtol=1e-10)
    assert impl.scenarios.sigma_now["BTC"] == pytest.approx(0.6 / math.sqrt(365.0), rel=1e-9)


# ----------------------------------------------------------------------------- refusals
def test_stale_history_is_refused_when_only_the_filter_may_rescale():
    old = {u: synthetic_series(u, i + 1, end=VALUATION.date() - timedelta(days=10))
           for i, u in enumerate(("BTC", "ETH"))}
    params = load_var_fhs_params(overrides={
        "history_start": "2018-01-01", "stressed_periods": [], "current_vol": "filter",
        "max_history_gap_days": 1.0})
    book = Book.from_portfolios([pf("BTC", [("BTC-PERPETUAL", 1.0)])])
    with pytest.raises(InvalidInput, match="max_history_gap_days"):
        VarFhsModel(params, series=old).compute(book, MARKET)
    # 'max' then rescales to the market's implied vol alone, never to the stale forecast
    m = VarFhsModel(params.model_copy(update={"current_vol": "max"}), series=old)
    prep = m.prepare(book, MARKET)
    assert prep.scenarios.sigma_now["BTC"] == pytest.approx(0.6 / math.sqrt(365.0), rel=1e-9)


def test_too_little_history_is_refused():
    short = {u: DailySeries(u, s.day[-50:], s.close[-50:], s.dvol[-50:])
             for u, s in SERIES.items()}
    m = VarFhsModel(model().params, series=short)
    with pytest.raises(InvalidInput, match="min_scenarios"):
        m.compute(Book.from_portfolios([pf("BTC", [("BTC-PERPETUAL", 1.0)])]), MARKET)


def test_bad_parameters_are_named():
    with pytest.raises(InvalidInput, match="confidence"):
        load_var_fhs_params(overrides={"confidence": 1.5})
    with pytest.raises(InvalidInput, match="filtr"):
        load_var_fhs_params(overrides={"filtr": "ewma"})


# ----------------------------------------------------------------------------- real history
@pytest.mark.parametrize("name", [model_param("var-fhs")])
def test_shipped_preset_on_real_history_explains_its_tail(name):
    m = load_model(name)
    p = pf("BTC", [(f"BTC-{expiry_code(30)}-72000-P", -1.0)], {"BTC": 1.0})
    res = m.margin(p, MARKET)
    assert res.initial_margin > res.maintenance_margin > 0
    sc = res.scenarios
    assert sc is not None
    k = tail_size(m.params.confidence, 1)  # at least one row
    assert len(sc) >= k
    assert sc["pnl"].is_monotonic_increasing          # worst first
    worst = res.worst_scenario["BTC"]
    assert worst["pnl"] == sc["pnl"].iloc[0]
    assert sc["extended"].any()                        # a stressed day (COVID) is in the tail
