"""Heston/Bates: calibration recovers the parameters that generated the prices, simulated
moments match closed forms, path revaluation matches QuantLib's Black formula."""

import math

import numpy as np
import pytest

from pmargin.analytics.stochvol import (
    BatesParams,
    HestonParams,
    OptionQuote,
    Paths,
    book_tail,
    calibrate,
    chain_quotes,
    expected_shortfall,
    load_stochvol_settings,
    model_vols,
    path_pnl,
    simulate,
)
from pmargin.book import Book
from pmargin.errors import InvalidInput
from pmargin.instruments import parse_instrument
from pmargin.models import load_model
from pmargin.portfolio import Portfolio, Position
from tests.factories import VALUATION, expiry_code, make_market

ql = pytest.importorskip("QuantLib")

S = 80000.0
HESTON = HestonParams(v0=0.36, kappa=3.0, theta=0.42, sigma=1.2, rho=-0.35)
BATES = BatesParams(0.36, 3.0, 0.42, 1.2, -0.35, lam=2.0, nu=-0.15, delta=0.12)


def grid_quotes():
    out = []
    for d in (14, 30, 60, 120, 240):
        f = S * (1 + 0.05 * d / 365)
        out += [OptionQuote(d, round(f * m), f, 0.6)
                for m in (0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.35, 1.5)]
    return out


def generated(params):
    qs = grid_quotes()
    vols = model_vols(VALUATION, S, qs, params)
    return [OptionQuote(q.days, q.strike, q.forward, float(v)) for q, v in zip(qs, vols,
                                                                                 strict=True)]


# Tolerance: the model prices are reproduced exactly, so the optimum is the generating point;
# we ask for 1e-4 relative on every parameter (Levenberg-Marquardt stops at 1e-10 changes).
@pytest.mark.parametrize(("params", "jumps"), [(HESTON, False), (BATES, True)])
def test_calibration_recovers_generating_parameters(params, jumps):
    start = (BatesParams(0.25, 1.0, 0.3, 0.8, -0.1, 1.0, -0.05, 0.2) if jumps
             else HestonParams(0.25, 1.0, 0.3, 0.8, -0.1))
    cal = calibrate(VALUATION, S, generated(params), jumps=jumps, initial=start)
    for k, v in params.__dict__.items():
        assert getattr(cal.params, k) == pytest.approx(v, rel=1e-4), k
    assert cal.iv_rmse < 1e-6
    assert [f.days for f in cal.fit] == [14, 30, 60, 120, 240]
    assert all(f.options == 10 for f in cal.fit)


def test_model_vols_match_quantlib_european_pricing():
    # independent path: QuantLib's own European option + AnalyticHestonEngine, then Black-76
    q = OptionQuote(60, 90000.0, S, 0.6)  # forward = spot: no dividend
    vol = model_vols(VALUATION, S, [q], HESTON)[0]
    today = ql.Date(VALUATION.day, VALUATION.month, VALUATION.year)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    flat = ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, dc))
    proc = ql.HestonProcess(flat, flat, ql.QuoteHandle(ql.SimpleQuote(S)), *[
        getattr(HESTON, k) for k in ("v0", "kappa", "theta", "sigma", "rho")])
    opt = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call, 90000.0),
                           ql.EuropeanExercise(today + 60))
    opt.setPricingEngine(ql.AnalyticHestonEngine(ql.HestonModel(proc)))
    t = 60 / 365
    d1 = (math.log(S / 90000.0) + 0.5 * vol * vol * t) / (vol * math.sqrt(t))
    nd = 0.5 * (1 + math.erf(d1 / math.sqrt(2)))
    nd2 = 0.5 * (1 + math.erf((d1 - vol * math.sqrt(t)) / math.sqrt(2)))
    assert S * nd - 90000.0 * nd2 == pytest.approx(opt.NPV(), rel=1e-6)


@pytest.mark.parametrize("params", [HESTON, BATES])
def test_simulated_moments_match_closed_forms(params):
    t, n = 0.5, 100_000
    p = simulate(params, t, 180, n, seed=11)
    # E[F_T / F_0] = 1 (martingale): within 4 standard errors
    se = p.ratio.std() / math.sqrt(n)
    assert abs(p.ratio.mean() - 1.0) < 4 * se
    # E[v_T] = theta + (v0 - theta) e^{-kappa t}; Var of the mean from the sample
    ev = params.theta + (params.v0 - params.theta) * math.exp(-params.kappa * t)
    assert abs(p.variance.mean() - ev) < 4 * p.variance.std() / math.sqrt(n)
    assert (p.variance >= 0).all()


def test_simulation_is_seeded():
    a = simulate(BATES, 2 / 365, 48, 1000, seed=3)
    b = simulate(BATES, 2 / 365, 48, 1000, seed=3)
    assert np.array_equal(a.ratio, b.ratio)
    assert np.array_equal(a.variance, b.variance)
    c = simulate(BATES, 2 / 365, 48, 1000, seed=4)
    assert not np.array_equal(a.ratio, c.ratio)


MARKET = make_market(linear=False, vol=0.6)
CALL = parse_instrument(f"BTC-{expiry_code(30)}-88000-C")
PERP = parse_instrument("BTC-PERPETUAL")


def test_path_pnl_matches_hand_and_quantlib():
    book = Book.from_portfolios([Portfolio("BTC", (Position(PERP, 1.0), Position(CALL, -1.0)),
                                           {"BTC": 1.0})])
    h = 2 / 365
    paths = Paths(np.array([0.8, 1.0, 1.25]), np.array([0.36, 0.81, 0.16]), h)
    r = path_pnl(book, MARKET, "BTC", paths, v0=0.36)
    cols = {i.name: j for j, i in enumerate(book.instruments)}
    # inverse perpetual: coin P&L q (1 - F / F') per coin of notional
    assert r[cols["BTC-PERPETUAL"]] == pytest.approx(1 - 1 / paths.ratio, rel=1e-12)
    # inverse call: Black value in coin at the horizon (vol x sqrt(v_T / v0)) minus the mark
    j = cols[CALL.name]
    f0 = MARKET.forward("BTC", CALL.expiry)
    tau = MARKET.tau(CALL.expiry)
    mark_coin = MARKET.mark_price(CALL) / f0
    for k in range(3):
        fk = f0 * paths.ratio[k]
        vol = 0.6 * math.sqrt(paths.variance[k] / 0.36)
        std = vol * math.sqrt(tau - h)
        usd = ql.BlackCalculator(ql.PlainVanillaPayoff(ql.Option.Call, 88000.0), fk, std,
                                    1.0).value()
        assert r[j, k] == pytest.approx(usd / fk - mark_coin, rel=1e-9, abs=1e-12)


def test_expected_shortfall_by_brute_force():
    x = np.random.default_rng(0).standard_normal((3, 1000))
    es = expected_shortfall(x, 0.99)
    for i in range(3):
        assert es[i] == pytest.approx(np.sort(x[i])[-10:].mean())


def test_book_tail_compares_models():
    book = Book.from_portfolios([
        Portfolio("BTC", (Position(CALL, -2.0),), {"BTC": 1.0}, account_id="short_call"),
        Portfolio("BTC", (), {"BTC": 1.0}, account_id="cash")])
    paths = simulate(BATES, 2 / 365, 48, 4000, seed=5)
    out = book_tail(book, MARKET, "BTC", paths, BATES.v0,
                    [load_model("deribit-pm"), load_model("deribit-sm")], 0.99, "bates")
    assert [t.model for t in out] == ["deribit-pm", "deribit-sm"]
    assert out[0].es[1] == 0.0
    assert out[0].worst_loss[1] == 0.0
    assert out[0].worst_loss[0] >= out[0].es[0] > 0
    assert out[0].summary()["accounts"] == 1.0


def test_bad_parameters_are_named():
    with pytest.raises(InvalidInput, match="rho"):
        HestonParams(0.3, 1.0, 0.3, 1.0, 1.5)
    with pytest.raises(InvalidInput, match="lam"):
        BatesParams(0.3, 1.0, 0.3, 1.0, 0.0, lam=-1.0)
    with pytest.raises(InvalidInput, match="horizon_years"):
        simulate(HESTON, 0.0, 10, 10, 0)


@pytest.mark.data
def test_calibration_to_a_deribit_chain_reports_fit_per_expiry():
    from pmargin.demo import latest_snapshot
    from pmargin.market.loaders import load_market

    snap = latest_snapshot()
    if snap is None:
        pytest.skip("../shared/data/deribit not found")
    mkt = load_market(snap)
    s = load_stochvol_settings()
    quotes = chain_quotes(mkt, "BTC", s)
    cal = calibrate(mkt.valuation_time, mkt.index_price("BTC"), quotes)
    assert len(cal.fit) >= 4
    # a 5-parameter model fits a real crypto surface to a few vol points, not exactly
    assert cal.iv_rmse < 0.05
    assert all(f.iv_max_error >= f.iv_rmse for f in cal.fit)
