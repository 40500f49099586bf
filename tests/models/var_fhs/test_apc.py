"""EMIR Art. 28 tools of var-fhs: weighted ES, buffer, look-back floor (hand calculations)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmargin.book import Book
from pmargin.errors import InvalidInput, ParamsError
from pmargin.models.var_fhs import VarFhsModel, expected_shortfall, load_var_fhs_params
from pmargin.models.var_fhs.apc import (
    buffer_release,
    buffered,
    lookback_shortfall_years,
    scenario_weights,
    tail_weights,
    weighted_expected_shortfall,
)
from tests.factories import expiry_code, pf
from tests.models.var_fhs.test_model import MARKET, SERIES


# ----------------------------------------------------------------------------- weights
def test_scenario_weights_by_hand():
    st_ = np.array([True, False, False, False, False])
    # natural stressed share 1/5 = 0.2 < 0.25: the stressed day gets 0.25, the rest 0.75 / 4
    assert scenario_weights(st_, 0.25) == pytest.approx([0.25, 0.1875, 0.1875, 0.1875, 0.1875])
    # at least 10 %: 20 % is already more, so equal weights
    assert scenario_weights(st_, 0.1) == pytest.approx([0.2] * 5)
    assert scenario_weights(np.zeros(4, bool), 0.25) == pytest.approx([0.25] * 4)
    assert scenario_weights(np.ones(4, bool), 0.25) == pytest.approx([0.25] * 4)


# ----------------------------------------------------------------------------- weighted ES
def test_weighted_es_by_hand_with_a_fractional_boundary():
    # losses 10, 8, 6, 4 with weights 0.1, 0.2, 0.3, 0.4; alpha = 0.25:
    # tail = all of 10 (0.1) and 0.15 of the 0.2 of 8 -> (1.0 + 1.2) / 0.25 = 8.8
    pnl = np.array([[-8.0, -4.0, -10.0, -6.0]])
    w = np.array([0.2, 0.4, 0.1, 0.3])
    assert weighted_expected_shortfall(pnl, w, 0.75)[0] == pytest.approx(8.8, rel=1e-12)
    share = tail_weights(pnl[0], w, 0.75)
    assert share == pytest.approx([0.6, 0.0, 0.4, 0.0])   # 0.15/0.25 and 0.1/0.25


def test_weighted_es_stressed_weight_by_hand():
    # 100 scenarios, 10 stressed, >= 25 % on them: stressed 0.025 each, others 0.75/90 = 1/120
    stressed = np.zeros(100, bool)
    stressed[90:] = True
    w = scenario_weights(stressed, 0.25)
    assert w[90] == pytest.approx(0.025)
    assert w[0] == pytest.approx(1 / 120)
    pnl = np.zeros((2, 100))
    pnl[0, 95] = -50.0                         # worst is stressed: 0.025 >= 0.01 covers the tail
    pnl[1, 3], pnl[1, 95] = -50.0, -40.0       # worst is calm (1/120), then a stressed 40
    es = weighted_expected_shortfall(pnl, w, 0.99)
    assert es[0] == pytest.approx(50.0, rel=1e-12)
    assert es[1] == pytest.approx((50 / 120 + (0.01 - 1 / 120) * 40) / 0.01, rel=1e-12)
    # the plain ES of the same rows (the single worst loss, 1 % of 100)
    assert expected_shortfall(pnl, 0.99) == pytest.approx([50.0, 50.0])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(0, 10_000))
def test_equal_weights_give_the_plain_es(m, seed):
    rng = np.random.default_rng(seed)
    n = 100 * m                                   # alpha * n whole: both definitions agree
    pnl = rng.normal(size=(5, n)) * rng.uniform(0.1, 10)
    got = weighted_expected_shortfall(pnl, np.full(n, 1.0 / n), 0.99)
    assert got == pytest.approx(expected_shortfall(pnl, 0.99), rel=1e-10)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=20, max_size=60), st.integers(0, 10_000))
def test_integer_weights_equal_the_plain_es_of_repeated_scenarios(counts, seed):
    # weight c_i / C is scenario i repeated c_i times; alpha * C whole (C a multiple of 20)
    c = np.array(counts)
    c[-1] += (-c.sum()) % 20
    rng = np.random.default_rng(seed)
    pnl = rng.normal(size=(3, c.size))
    got = weighted_expected_shortfall(pnl, c / c.sum(), 0.95)
    want = expected_shortfall(np.repeat(pnl, c, axis=1), 0.95)
    assert got == pytest.approx(want, rel=1e-10)


def test_weighted_es_refuses_misshaped_weights():
    with pytest.raises(InvalidInput, match="weights"):
        weighted_expected_shortfall(np.zeros((1, 3)), np.full(4, 0.25), 0.9)


# ----------------------------------------------------------------------------- buffer
def test_buffer_release_quantile_by_hand():
    hist = np.r_[np.arange(1, 101) / 1000.0, np.nan]
    # linear quantile 0.9 of 0.001..0.100: position 89.1 -> 0.090 + 0.1 * 0.001 = 0.0901
    assert buffer_release(0.0902, hist, 0.9)
    assert not buffer_release(0.0900, hist, 0.9)
    with pytest.raises(InvalidInput):
        buffer_release(0.1, np.array([np.nan]), 0.9)


def test_gradual_release_by_hand():
    hist = np.r_[np.arange(1, 101) / 1000.0, np.nan]
    # q(0.8) = 0.0802, q(0.9) = 0.0901 (linear): half-way between them releases half
    lo, hi = 0.0802, 0.0901
    assert buffer_release(lo, hist, 0.8, 0.9) == 0.0
    assert buffer_release(0.5 * (lo + hi), hist, 0.8, 0.9) == pytest.approx(0.5, abs=1e-12)
    assert buffer_release(lo + 0.25 * (hi - lo), hist, 0.8, 0.9) == pytest.approx(0.25, abs=1e-12)
    assert buffer_release(hi, hist, 0.8, 0.9) == pytest.approx(1.0, abs=1e-12)
    assert buffer_release(0.2, hist, 0.8, 0.9) == 1.0
    assert buffer_release(0.01, hist, 0.8, 0.9) == 0.0
    # equal quantiles (a flat history): the step of the all-or-nothing rule
    flat = np.full(10, 0.05)
    assert buffer_release(0.0501, flat, 0.8, 0.9) == 1.0
    assert buffer_release(0.05, flat, 0.8, 0.9) == 0.0


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 0.2), st.floats(0.05, 0.9), st.floats(0.01, 0.09))
def test_gradual_release_is_monotone_and_between_the_steps(sigma, q, width):
    hist = np.linspace(0.01, 0.1, 37)
    full = min(q + width, 0.99)
    r = buffer_release(sigma, hist, q, full)
    assert 0.0 <= r <= 1.0
    # never more than the step at the full quantile, never less than the step at the start
    assert buffer_release(sigma, hist, full) <= r <= buffer_release(sigma, hist, q)
    assert buffer_release(sigma + 1e-3, hist, q, full) >= r


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1e9), min_size=1, max_size=20), st.floats(0, 1),
       st.one_of(st.booleans(), st.floats(0, 1)))
def test_buffer_never_takes_im_below_the_unbuffered(es, buf, released):
    e = np.array(es)
    out = buffered(e, buf, float(released))
    assert np.all(out >= e)
    assert np.all(out <= e * (1 + buf))
    if released == 1:
        assert np.array_equal(out, e)
    elif released == 0:
        assert np.array_equal(out, e * (1 + buf))
    else:
        assert out == pytest.approx(e * (1 + buf * (1 - released)))


def test_buffered_refuses_a_release_outside_0_1():
    with pytest.raises(InvalidInput, match="released"):
        buffered(np.ones(2), 0.25, 1.5)


# ----------------------------------------------------------------------------- look-back
def test_lookback_shortfall_by_hand():
    # 2018-05-16 .. 2026-03-04: 8 * 365 + 2 leap days - 73 + 1 = 2850 days = 7.8029 years
    short = lookback_shortfall_years(np.datetime64("2018-05-16"), np.datetime64("2026-03-04"),
                                     10.0)
    assert short == pytest.approx(10.0 - 2850 / 365.25)
    assert lookback_shortfall_years(np.datetime64("2010-01-01"), np.datetime64("2026-03-04"),
                                    10.0) == 0.0


# ----------------------------------------------------------------------------- in the model
def apc_model(**apc) -> VarFhsModel:
    over = {"history_start": "2018-01-01", "apc": apc,
            "stressed_periods": [{"name": "synthetic stress", "start": str(SERIES["BTC"].day[1000]),
                                  "end": str(SERIES["BTC"].day[1040])}]}
    return VarFhsModel(load_var_fhs_params(overrides=over), series=SERIES)


BOOK = Book.from_portfolios([
    pf("BTC", [(f"BTC-{expiry_code(30)}-72000-P", -1.0)], {"BTC": 1.0}),
    pf("BTC", [(f"BTC-{expiry_code(7)}-80000-C", -2.0)], {"BTC": 1.0}),
])


def test_preset_has_every_tool_off():
    a = load_var_fhs_params().apc
    assert (a.buffer, a.stressed_weight, a.lookback_floor_years) == (0.0, 0.0, 0.0)
    with pytest.raises(ParamsError, match="buffer"):
        load_var_fhs_params(overrides={"apc": {"buffer": -0.1}})


def test_model_buffer_in_calm_and_in_stress():
    plain = apc_model().compute(BOOK, MARKET)
    for q in (0.001, 0.999):   # below every day's vol: stress; above almost all: calm
        m = apc_model(buffer=0.25, stress_quantile=q)
        prep = m.prepare(BOOK, MARKET)
        res = m.evaluate(prep, BOOK)
        assert prep.buffer_released == (q == 0.001)
        factor = 1.0 if prep.buffer_released else 1.25
        assert res.initial_margin == pytest.approx(factor * plain.initial_margin, rel=1e-12)
        assert res.components["apc_buffer"] == pytest.approx(
            (factor - 1) * plain.components["expected_shortfall"], abs=1e-9)
        assert np.all(res.initial_margin >= plain.initial_margin)
        # MM stays a fraction of the un-buffered ES
        assert res.maintenance_margin == pytest.approx(plain.maintenance_margin, rel=1e-12)


def test_model_gradual_release_sits_between_calm_and_stress():
    plain = apc_model().compute(BOOK, MARKET)
    m = apc_model(buffer=0.25, stress_quantile=0.05, release_full_quantile=0.999)
    prep = m.prepare(BOOK, MARKET)
    r = prep.buffer_released
    # the hand figure from the same vol history the model compares with
    coin = "BTC"
    f = prep.filtered[coin]
    hist = m._vol_history(coin, f, MARKET)
    sigma = m._sigma_now(coin, f, MARKET)
    assert r == buffer_release(sigma, hist, 0.05, 0.999)
    assert 0.0 < r < 1.0, r  # this market sits between the two quantiles
    res = m.evaluate(prep, BOOK)
    factor = 1.0 + 0.25 * (1.0 - r)
    assert res.initial_margin == pytest.approx(factor * plain.initial_margin, rel=1e-12)
    assert res.maintenance_margin == pytest.approx(plain.maintenance_margin, rel=1e-12)
    with pytest.raises(ParamsError, match="release_full_quantile"):
        load_var_fhs_params(overrides={"apc": {"stress_quantile": 0.9,
                                               "release_full_quantile": 0.8}})


def test_model_stressed_weight_equals_weighted_es_of_its_scenarios():
    m = apc_model(stressed_weight=0.25)
    prep = m.prepare(BOOK, MARKET)
    sc = prep.scenarios
    n_s = int(sc.stressed.sum())
    assert n_s == 41
    assert prep.weights is not None
    assert prep.weights[sc.stressed].sum() == pytest.approx(0.25)
    pnl = m.pnl(prep, BOOK)
    # the short call's ES (row 1) by hand: sort its losses, accumulate the weights to 1 %
    loss = -pnl[1]
    order = np.argsort(-loss)
    acc, tot = 0.0, 0.0
    for i in order:
        take = min(prep.weights[i], 0.01 - acc)
        if take <= 0:
            break
        tot += take * loss[i]
        acc += take
    res = m.evaluate(prep, BOOK)
    assert res.initial_margin[1] == pytest.approx(tot / 0.01, rel=1e-10)
    # the explanation's tail weights sum to 1 and match
    one = m.margin(BOOK.portfolio(1), MARKET)
    assert one.initial_margin == pytest.approx(res.initial_margin[1], rel=1e-10)
    # a share below the natural one leaves the plain ES
    low = apc_model(stressed_weight=0.001)
    assert low.prepare(BOOK, MARKET).weights is None
    assert low.compute(BOOK, MARKET).initial_margin == pytest.approx(
        apc_model().compute(BOOK, MARKET).initial_margin, rel=1e-12)


def test_model_lookback_floor_flag_and_refuse():
    days = SERIES["BTC"].day
    # moves from the second day to the last: (n - 1) days
    want = 10.0 - (days.size - 1) / 365.25
    res = apc_model(lookback_floor_years=10.0).compute(BOOK, MARKET)
    assert res.components["lookback_floor_shortfall_years"] == pytest.approx([want, want])
    assert apc_model().compute(BOOK, MARKET).components[
        "lookback_floor_shortfall_years"].tolist() == [0.0, 0.0]
    with pytest.raises(InvalidInput, match="lookback_floor_years"):
        apc_model(lookback_floor_years=10.0, lookback_floor_action="refuse").compute(BOOK, MARKET)
    ok = apc_model(lookback_floor_years=3.0, lookback_floor_action="refuse").compute(BOOK, MARKET)
    assert ok.components["lookback_floor_shortfall_years"].tolist() == [0.0, 0.0]
