"""Backtest: losses equal the library's equity change, margins equal a per-account computation."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from pmargin.analytics.backtest import BacktestSpec, run_backtest, summarise
from pmargin.analytics.history import market_at, market_with_instruments
from pmargin.analytics.history_params import load_history_params
from pmargin.analytics.portfolios import PORTFOLIOS, build_portfolios
from pmargin.analytics.smile_template import SmileTemplate
from pmargin.errors import InvalidInput, ParamsError
from pmargin.instruments import InstrumentKind
from pmargin.models import load_model
from pmargin.models.valuation import build_table
from pmargin.portfolio import Portfolio, Position
from tests.analytics.conftest import DVOL_START

P = load_history_params()
MODELS = ("linear-sm", "span", "deribit-sm-isolated")
START = DVOL_START - timedelta(days=4)  # crosses from the proxy into DVOL


@pytest.fixture(scope="module")
def tpl() -> SmileTemplate:
    t = np.array(P.template.term_nodes_days)
    x = np.array(P.template.x_nodes)
    return SmileTemplate("BTC", t, 1.0 + 0.03 * np.log(t / 30.0), x,
                         np.tile(1.0 + 0.1 * x * x - 0.05 * x, (t.size, 1)))


def _spec(settlement: str = "linear", **kw) -> BacktestSpec:
    return BacktestSpec(asset="BTC", start=START, end=START + timedelta(days=8),
                        models=MODELS, settlement=settlement, **kw)


@pytest.fixture(scope="module")
def linear(gen_series, tpl):
    return run_backtest(_spec(), series=gen_series, template=tpl)


def _equity_change(portfolio: Portfolio, d0, d1, series, tpl, settlement) -> float:
    """Equity at d1 minus equity at d0 of one account, by the library (perps/futures entered
    at their d0 marks), in the margin currency."""
    m0 = market_at("BTC", d0, series=series, template=tpl, settlement=settlement)
    insts = [p.instrument for p in portfolio.positions]
    m1 = market_at("BTC", d1, series=series, template=tpl, settlement=settlement,
                   instruments=insts)
    entered = portfolio.with_positions(tuple(
        Position(p.instrument, p.quantity,
                 None if p.instrument.kind is InstrumentKind.OPTION
                 else m0.mark_price(p.instrument))
        for p in portfolio.positions))
    model = load_model("linear-sm")
    e0 = model.margin_figures(entered, m0).equity[0]
    e1 = model.margin_figures(entered, m1).equity[0]
    return float(e1 - e0)


@pytest.mark.parametrize("settlement", ["linear", "inverse"])
def test_losses_are_the_change_in_equity(gen_series, tpl, linear, settlement):
    r = linear if settlement == "linear" else run_backtest(
        replace(_spec("inverse"), end=START + timedelta(days=3)), series=gen_series,
        template=tpl)
    mc = "USDC" if settlement == "linear" else "BTC"
    for i in (0, 2):
        d0 = r.dates[i].to_pydatetime()
        market, std = market_with_instruments("BTC", d0, series=gen_series, template=tpl,
                                              settlement=settlement)
        pfs = build_portfolios(std, market, mc)
        for h in (1, 2):
            for k, pf in enumerate(pfs):
                if settlement == "inverse" and pf.account_id == "covered_call":
                    continue  # coin collateral: equity in coin is unchanged by construction
                want = -_equity_change(pf, d0, d0 + timedelta(days=h), gen_series, tpl,
                                       settlement)
                assert r.loss[h][i, k] == pytest.approx(want, rel=1e-9, abs=1e-9), (
                    pf.account_id, h)


def test_book_margins_equal_one_account_at_a_time(gen_series, tpl, linear):
    i = 3
    d = linear.dates[i].to_pydatetime()
    market, std = market_with_instruments("BTC", d, series=gen_series, template=tpl,
                                          settlement="linear")
    pfs = build_portfolios(std, market, "USDC")
    for j, name in enumerate(linear.models):
        model = load_model(name)
        for k, pf in enumerate(pfs):
            one = model.margin(pf, market)  # the explained single-account path
            assert linear.im[i, j, k] == pytest.approx(one.initial_margin, rel=1e-9)
            assert linear.mm[i, j, k] == pytest.approx(one.maintenance_margin, rel=1e-9)


def test_summary_counts_by_hand(linear):
    s = summarise(linear)
    assert len(s) == len(linear.models) * len(PORTFOLIOS) * 2 * 2
    for j, model in enumerate(linear.models):
        for k, pf in enumerate(linear.portfolios):
            for h in (1, 2):
                row = s[(s.model == model) & (s.portfolio == pf) & (s.horizon_days == h)
                        & (s.margin == "MM")].iloc[0]
                lo, m = linear.loss[h][:, k], linear.mm[:, j, k]
                assert row.exceedances == int(np.sum(lo > m))
                assert row.n == lo.size
                assert row.average_margin_usd == pytest.approx(float(np.mean(m)))


def test_portfolios_are_what_they_say(gen_series, tpl):
    d = START + timedelta(days=1)
    market, std = market_with_instruments("BTC", d, series=gen_series, template=tpl,
                                          settlement="linear")
    pfs = {p.account_id: p for p in build_portfolios(std, market, "USDC")}
    assert list(pfs) == list(PORTFOLIOS)
    hedged = pfs["short_straddle_hedged"]
    insts = [p.instrument for p in hedged.positions]
    delta = build_table(insts, market, "USDC").coin_delta()
    net = sum(p.quantity * dd for p, dd in zip(hedged.positions, delta, strict=True))
    assert abs(net) < 1e-6
    assert pfs["covered_call"].collateral["BTC"] == 1.0
    assert pfs["calendar"].positions[0].instrument == std["7d-C-atm"]
    mm = pfs["market_maker"]
    assert len(mm.positions) > 5
    assert any(p.instrument.kind is InstrumentKind.PERPETUAL
                                         for p in mm.positions)


def test_inverse_books_skip_usdc_only_models(gen_series, tpl):
    r = run_backtest(replace(_spec("inverse"), models=("derive-pm2", "span"),
                             end=START + timedelta(days=2)), series=gen_series, template=tpl)
    assert r.models == ["span"]
    assert "derive-pm2" in r.skipped
    assert "USDC" in r.skipped["derive-pm2"]
    assert r.im.shape[1] == 1


def test_spec_is_checked_naming_the_field(gen_series, tpl):
    cases = [
        (dict(models=("deribit-pmm",)), ParamsError, "model"),
        (dict(horizons_days=(0,)), InvalidInput, "horizons_days"),
        (dict(portfolios=("short_puts",)), InvalidInput, "portfolios"),
        (dict(settlement="quanto"), InvalidInput, "settlement"),
        (dict(hour=24), InvalidInput, "hour"),
        (dict(end=START - timedelta(days=1)), InvalidInput, "end"),
    ]
    for kw, exc, field in cases:
        with pytest.raises(exc) as e:
            run_backtest(replace(_spec(), **kw), series=gen_series, template=tpl)
        assert e.value.field == field, kw
    with pytest.raises(InvalidInput) as e:
        run_backtest(_spec(), series=gen_series, template=tpl, jobs=0)
    assert e.value.field == "jobs"


@pytest.mark.slow
def test_two_workers_give_the_same_numbers(gen_series, tpl, linear):
    r2 = run_backtest(_spec(), series=gen_series, template=tpl, jobs=2)
    assert r2.jobs == 2
    assert list(r2.dates) == list(linear.dates)
    np.testing.assert_array_equal(r2.im, linear.im)
    np.testing.assert_array_equal(r2.mm, linear.mm)
    for h in (1, 2):
        np.testing.assert_array_equal(r2.loss[h], linear.loss[h])


def test_daily_frame(linear):
    f = linear.daily_frame()
    n = len(linear.dates) * len(linear.models) * len(linear.portfolios)
    assert len(f) == n
    row = f[(f.model == linear.models[1]) & (f.portfolio == "short_put")].iloc[2]
    assert row.im == linear.im[2, 1, 0]
    assert row.loss_2d == linear.loss[2][2, 0]


def test_models_starting_later_and_never_are_told_apart():
    from datetime import UTC, datetime

    from pmargin.analytics.backtest import _Chunk, _merge

    days = [datetime(2021, 3, 20 + i, tzinfo=UTC) for i in range(6)]
    im = np.ones((6, 3, 2))
    im[:3, 0] = np.nan  # starts on day 3 (needs history before it)
    im[:, 1] = np.nan  # never margins the book
    im[4, 2] = np.nan  # fails one day after starting
    loss = {1: np.zeros((6, 2))}
    chunk = _Chunk(days, [1.0] * 6, [0.5] * 6, [False] * 6, [1.0] * 6, im, im.copy(), loss,
                   {"a": 3, "b": 6, "c": 1}, {"a": "x", "b": "refused: USDC only", "c": "y"},
                   {}, {})
    spec = BacktestSpec(models=("a", "b", "c"), horizons_days=(1,),
                        portfolios=("short_put", "calendar"))
    r = _merge(spec, [chunk], 0.0, 1)
    assert r.models == ["a", "c"]
    assert r.skipped == {"b": "refused: USDC only"}
    assert r.available_from == {"a": days[3].isoformat()}
    assert r.errors == {"c": 1}
    s = summarise(r)
    a = s[(s.model == "a") & (s.margin == "IM")].iloc[0]
    c = s[(s.model == "c") & (s.margin == "IM")].iloc[0]
    assert a.n == 3
    assert a.first_day == "2021-03-23"
    assert c.n == 6
    assert c.missing_margin == 1


def test_dynamic_overlay_scale_is_carried_day_to_day(gen_series, tpl, tmp_path, monkeypatch):
    # pmargin with the overlay: reference 0.5 against a DVOL of 55 +- 5 (regime 1.0-1.2 moving
    # by up to ~3 % a day) and a 1 % daily speed limit, which only holds if the scale is carried
    from pathlib import Path

    import pmargin.models
    from pmargin.models.portfolio_margin import PortfolioMarginModel

    src = Path(pmargin.models.__file__).parent / "presets" / "pmargin.toml"
    text = src.read_text(encoding="utf-8").replace('name = "pmargin"', 'name = "pmargin-dyn"', 1)
    text += ("\n[dynamic]\nreference_vol = 0.5\nfloor = 0.5\ncap = 3.0\n"
             "max_increase = 0.01\n")
    path = tmp_path / "pmargin-dyn.toml"
    path.write_text(text)
    seen: list[dict[str, float]] = []
    orig = PortfolioMarginModel.with_previous_scale

    def record(self, previous):
        seen.append(dict(previous or {}))
        return orig(self, previous)

    monkeypatch.setattr(PortfolioMarginModel, "with_previous_scale", record)
    r = run_backtest(replace(_spec(), models=(str(path),), horizons_days=(1,)),
                     series=gen_series, template=tpl)
    assert r.errors == {}
    s = [d["BTC"] for d in seen]
    assert len(s) == len(r.dates)
    assert all(b <= a * 1.01 * (1 + 1e-12) for a, b in itertools.pairwise(s))
    assert len(set(s)) > 1
