"""History markets: ATM vol = the day's vol at 30 days, smile by construction, instruments."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy.stats import norm

from pmargin.analytics.history import (
    constant_tenor_expiry,
    market_at,
    round_strike,
    standard_instruments,
)
from pmargin.analytics.history_params import load_history_params
from pmargin.analytics.series import load_series, series_from_frames
from pmargin.analytics.smile_template import SmileTemplate
from pmargin.conventions import year_fraction
from pmargin.errors import InvalidInput, StaleMarketData
from pmargin.instruments import parse_instrument
from tests.analytics.conftest import DVOL_START, generated_frames
from tests.conftest import shared_path

P = load_history_params()
WHEN = DVOL_START + timedelta(days=10, hours=13)  # a DVOL row
EARLY = DVOL_START - timedelta(days=5, hours=3)  # a proxy row


def _shape(x: np.ndarray) -> np.ndarray:
    return 1.0 + 0.15 * x * x - 0.08 * x


def _term(days: np.ndarray) -> np.ndarray:
    return 1.0 + 0.05 * np.log(days / 30.0)


@pytest.fixture(scope="module")
def tpl() -> SmileTemplate:
    t = np.array(P.template.term_nodes_days)
    x = np.array(P.template.x_nodes)
    return SmileTemplate("BTC", t, _term(t), x, np.tile(_shape(x), (t.size, 1)))


def _black(f: float, k: float, tau: float, vol: float, call: bool) -> float:
    s = vol * math.sqrt(tau)
    d1 = math.log(f / k) / s + 0.5 * s
    d2 = d1 - s
    if call:
        return f * norm.cdf(d1) - k * norm.cdf(d2)
    return k * norm.cdf(-d2) - f * norm.cdf(-d1)


def test_atm_vol_at_30_days_is_the_days_vol(gen_series, tpl):
    for when in (WHEN, EARLY):
        m = market_at("BTC", when, series=gen_series, template=tpl)
        point = gen_series.at(when)
        tau = year_fraction(when, when + timedelta(days=30))
        f = m.forward_curve("BTC").forward(when + timedelta(days=30))
        assert f == pytest.approx(point.index_price, rel=1e-14)  # no basis
        assert m.vol_surface("BTC").vol(tau, f, f) == pytest.approx(point.atm_vol, rel=1e-14)
        assert m.index_price("BTC") == point.index_price


def test_smile_at_the_nodes_is_level_times_term_times_shape(gen_series, tpl):
    m = market_at("BTC", WHEN, series=gen_series, template=tpl)
    atm = gen_series.at(WHEN).atm_vol
    surf = m.vol_surface("BTC")
    s = m.index_price("BTC")
    for days in (7.0, 90.0, 365.0):
        tau = year_fraction(WHEN, WHEN + timedelta(days=days))
        for x in (-2.0, -0.5, 0.75, 3.0):
            k = s * math.exp(x * math.sqrt(tau))
            want = atm * (1 + 0.05 * math.log(days / 30)) * (1 + 0.15 * x * x - 0.08 * x)
            assert surf.vol(tau, k, s) == pytest.approx(want, rel=1e-12)
        # flat beyond the last node
        far = s * math.exp(5.0 * math.sqrt(tau))
        assert surf.vol(tau, far, s) == pytest.approx(surf.vol(tau, s * math.exp(
            3.0 * math.sqrt(tau)), s), rel=1e-12)
    # between node tenors: total variance linear in tau at fixed k (k = 0)
    t1, t2 = (year_fraction(WHEN, WHEN + timedelta(days=d)) for d in (30.0, 60.0))
    v1, v2 = atm, atm * (1 + 0.05 * math.log(2.0))
    tm = year_fraction(WHEN, WHEN + timedelta(days=45))
    w = v1 * v1 * t1 + (v2 * v2 * t2 - v1 * v1 * t1) * (tm - t1) / (t2 - t1)
    assert surf.vol(tm, s, s) == pytest.approx(math.sqrt(w / tm), rel=1e-12)


def test_option_marks_are_black76_at_the_surface_vol(gen_series, tpl):
    m = market_at("BTC", WHEN, series=gen_series, template=tpl)
    marks = m.option_marks
    assert len(marks) == 3 * (2 + 2 * len(P.instruments.deltas))
    for name, row in marks.iterrows():
        inst = parse_instrument(str(name))
        tau = year_fraction(WHEN, inst.expiry)
        f = m.index_price("BTC")
        vol = float(m.vol_surface("BTC").vol(tau, inst.strike, f))
        assert row["mark_iv"] == pytest.approx(vol, rel=1e-14)
        assert m.mark_price(inst) == pytest.approx(
            _black(f, inst.strike, tau, vol, inst.is_call), rel=1e-9, abs=1e-9 * f)


def test_standard_instruments_tenors_and_delta_strikes(gen_series, tpl):
    std = standard_instruments("BTC", WHEN, series=gen_series, template=tpl)
    m = market_at("BTC", WHEN, series=gen_series, template=tpl)
    s = m.index_price("BTC")
    step = P.instruments.strike_step * 10 ** math.floor(math.log10(s))
    assert std["PERP"].name == "BTC-PERPETUAL"
    assert m.mark_price("BTC-PERPETUAL") == s
    for t in (7, 30, 90):
        fut = std[f"{t}d-FUT"]
        assert fut.expiry.hour == 8
        assert abs(fut.expiry - (WHEN + timedelta(days=t))) <= \
            timedelta(hours=12)
        assert m.mark_price(fut) == s
        assert std[f"{t}d-C-atm"].strike == round_strike(s, s, P.instruments.strike_step)
        tau = year_fraction(WHEN, fut.expiry)
        for d in P.instruments.deltas:
            for right, sign in (("C", 1.0), ("P", -1.0)):
                inst = std[f"{t}d-{right}-d{round(d * 100):02d}"]
                assert inst.expiry == fut.expiry
                assert m.is_listed(inst)

                def delta(k: float, inst=inst, tau=tau) -> float:
                    vol = float(m.vol_surface("BTC").vol(tau, k, s))
                    d1 = math.log(s / k) / (vol * math.sqrt(tau)) + 0.5 * vol * math.sqrt(tau)
                    return float(norm.cdf(d1)) if inst.is_call else float(norm.cdf(d1) - 1)

                # the rounded strike is the grid point whose half-step bracket holds the delta
                lo, hi = sorted((delta(inst.strike - step / 2), delta(inst.strike + step / 2)))
                assert lo <= sign * d <= hi


def test_proxy_markets_say_so(gen_series, tpl):
    early = market_at("BTC", EARLY, series=gen_series, template=tpl)
    late = market_at("BTC", WHEN, series=gen_series, template=tpl)
    assert early.source.startswith("history-built")
    assert "proxy" in early.source
    assert late.source.startswith("history-built")
    assert "proxy" not in late.source
    assert "DVOL" in late.source


def test_extra_instruments_are_listed_and_expired_ones_refused(gen_series, tpl):
    opened = standard_instruments("BTC", WHEN - timedelta(days=2), series=gen_series,
                                  template=tpl)
    put = opened["7d-P-d25"]
    m = market_at("BTC", WHEN, series=gen_series, template=tpl, instruments=[put, "BTC-PERPETUAL"])
    assert m.is_listed(put)
    assert m.priced_by(put) == "market"
    tau = year_fraction(WHEN, put.expiry)
    f = m.index_price("BTC")
    vol = float(m.vol_surface("BTC").vol(tau, put.strike, f))
    assert m.mark_price(put) == pytest.approx(_black(f, put.strike, tau, vol, False), rel=1e-9)
    with pytest.raises(StaleMarketData):
        market_at("BTC", put.expiry + timedelta(hours=1), series=gen_series, template=tpl,
                  instruments=[put])
    with pytest.raises(InvalidInput) as e:
        market_at("BTC", WHEN, series=gen_series, template=tpl, instruments=["ETH-PERPETUAL"])
    assert e.value.field == "instruments"


def test_basis_and_settlement_and_vol_override(gen_series, tpl):
    p = load_history_params(overrides={"forward.basis_rate": 0.1})
    m = market_at("BTC", WHEN, series=gen_series, template=tpl, params=p)
    fut = standard_instruments("BTC", WHEN, series=gen_series, template=tpl, params=p)["90d-FUT"]
    s = m.index_price("BTC")
    assert m.mark_price(fut) == pytest.approx(s * math.exp(0.1 * year_fraction(WHEN, fut.expiry)),
                                              rel=1e-14)
    lin = standard_instruments("BTC", WHEN, series=gen_series, template=tpl, settlement="linear")
    assert lin["30d-C-atm"].name.startswith("BTC_USDC-")
    mk = market_at("BTC", WHEN, series=gen_series, template=tpl, atm_vol=1.5)
    tau = year_fraction(WHEN, WHEN + timedelta(days=30))
    assert mk.vol_surface("BTC").vol(tau, s, s) == pytest.approx(1.5, rel=1e-14)
    assert "replaced" in mk.source


def test_bad_inputs_name_the_field(gen_series, tpl):
    cases = [
        (dict(asset="ETH"), "series"),
        (dict(settlement="quanto"), "settlement"),
        (dict(atm_vol=-0.2), "atm_vol"),
        (dict(tenors_days=[0]), "tenor_days"),
    ]
    for kw, field in cases:
        args = dict(asset="BTC", when=WHEN, series=gen_series, template=tpl) | kw
        with pytest.raises(InvalidInput) as e:
            market_at(**args)  # type: ignore[arg-type]
        assert e.value.field == field, kw
    eth = SmileTemplate.flat("ETH")
    with pytest.raises(InvalidInput) as e:
        market_at("BTC", WHEN, series=gen_series, template=eth)
    assert e.value.field == "template"
    with pytest.raises(InvalidInput) as e:
        standard_instruments("BTC", WHEN, series=gen_series, template=tpl, deltas=[0.7])
    assert e.value.field == "deltas"
    with pytest.raises(InvalidInput) as e:
        standard_instruments("BTC", WHEN, series=gen_series, template=tpl, moneyness=[1.0])
    assert e.value.field == "moneyness"
    with pytest.raises(InvalidInput) as e:
        market_at("BTC", gen_series.first_time - timedelta(days=1), series=gen_series,
                  template=tpl)
    assert e.value.field == "when"


def test_moneyness_strikes(gen_series, tpl):
    std = standard_instruments("BTC", WHEN, tenors_days=[30], deltas=[], moneyness=[0.8, 1.2],
                               series=gen_series, template=tpl)
    s = gen_series.at(WHEN).index_price
    assert set(std) == {"PERP", "30d-FUT", "30d-C-atm", "30d-P-atm", "30d-P-m080", "30d-C-m120"}
    assert std["30d-P-m080"].strike == round_strike(0.8 * s, s, P.instruments.strike_step)
    assert not std["30d-P-m080"].is_call
    assert std["30d-C-m120"].is_call


def test_round_strike_and_expiry_by_hand():
    assert round_strike(65_321.0, 65_000.0, 0.05) == 65_500.0  # step 500
    assert round_strike(2_024.0, 2_000.0, 0.05) == 2_000.0  # step 50
    assert round_strike(88.3, 88.0, 0.05) == 88.5  # step 0.5
    assert round_strike(10.0, 65_000.0, 0.05) == 500.0  # never below one step
    t = datetime(2020, 3, 12, 23, tzinfo=UTC)
    assert constant_tenor_expiry(t, 7) == datetime(2020, 3, 20, 8, tzinfo=UTC)  # 9 h away
    t = datetime(2020, 3, 12, 19, tzinfo=UTC)
    assert constant_tenor_expiry(t, 7) == datetime(2020, 3, 19, 8, tzinfo=UTC)  # 11 h away
    t = datetime(2020, 3, 12, 20, tzinfo=UTC)
    assert constant_tenor_expiry(t, 7) == datetime(2020, 3, 20, 8, tzinfo=UTC)  # tie: later
    with pytest.raises(InvalidInput):
        constant_tenor_expiry(t, -1)


def test_a_series_of_another_window_builds_too(tpl):
    prices, dvol = generated_frames(days=100)
    p = load_history_params(overrides={"proxy.window_hours": 168})
    s = series_from_frames("BTC", prices, dvol, p)
    m = market_at("BTC", s.first_time, series=s, template=tpl)
    assert "proxy" in m.source


# ------------------------------------------------------------------ real data


@pytest.mark.data
def test_real_market_30_day_atm_is_dvol():
    shared_path("data", "prices")
    when = datetime(2022, 6, 15, 14, tzinfo=UTC)
    m = market_at("BTC", when)
    s = load_series("BTC")
    tau = year_fraction(when, when + timedelta(days=30))
    f = m.index_price("BTC")
    assert m.vol_surface("BTC").vol(tau, f, f) == pytest.approx(s.at(when).atm_vol, rel=1e-14)
    assert "DVOL" in m.source
    assert "proxy" not in m.source
    covid = market_at("ETH", datetime(2020, 3, 12, 12, tzinfo=UTC))
    assert "proxy" in covid.source
    assert len(covid.instrument_names) == 3 * (3 + 2 * len(P.instruments.deltas))  # + perp
