"""Crash replays: a hand-built book through hand-built hours against a hand calculation; money
conserves; the shipped episodes parse and (with the shared data) replay."""

import pytest

from pmargin.analytics.crash_replay import (
    RegimeOutcome,
    fund_book,
    load_replay_params,
    replay_episode,
    replay_markets,
)
from pmargin.book import Book
from pmargin.errors import InvalidInput
from pmargin.instruments import parse_instrument
from pmargin.liquidation.cascade import load_cascade_params
from pmargin.liquidation.planner import load_planner_params
from pmargin.models import load_model
from pmargin.portfolio import Portfolio, Position
from tests.factories import make_market

MARKET = make_market(linear=False)
S0 = MARKET.index_price("BTC")
PERP = parse_instrument("BTC-PERPETUAL")


def two_accounts():
    return Book.from_portfolios([
        Portfolio("BTC", (Position(PERP, 1.0, avg_price=S0),), {"BTC": 0.3}, account_id="long"),
        Portfolio("BTC", (Position(PERP, -1.0, avg_price=S0),), {"BTC": 2.0},
                  account_id="short"),
    ])


def test_replay_matches_hand_calculation():
    # hour 0: unchanged; hour 1: index -25 % (60,000). No price impact, no penalty, a fund of
    # USD 1,000, ADL after it.
    fund = 1000.0
    cp = load_cascade_params().model_copy(update={"impact_k": 0.0, "insurance_fund_usd": fund,
                                                  "loss_mode": "adl"})
    pp = load_planner_params().model_copy(update={"penalty_rate": 0.0})
    markets = [MARKET, MARKET, MARKET.bumped({"BTC": -0.25})]
    o = RegimeOutcome("hand", "BTC", "deribit-sm", 2, 0.0)
    replay_markets(two_accounts(), markets, load_model("deribit-sm"), "BTC", o, cp, pp)
    p1 = 0.75 * S0
    # long: equity 0.3 + 1 (1 - S0 / p1) = -1/30 BTC: bankrupt; closing 1 coin of perpetual
    # costs the half-spread max(0.02 % x p1, 0.5) = 12 USD plus impact
    # p1 x (1 x p1 / 20e6 USD per 1 %) x 1 % = 1.8 USD (liquidity.toml), paid in coin at p1
    deficit_coin = (1 / 30) + (12.0 + 1.8) / p1
    bad = deficit_coin * p1
    assert o.bad_debt_usd == pytest.approx(bad, rel=2e-3)
    # the fund is held in the margin currency: USD 1,000 at S0 is 0.0125 BTC, worth 750 at p1
    fund_at_p1 = fund / S0 * p1
    assert o.insurance_fund_used_usd == pytest.approx(fund_at_p1, abs=0.01)
    assert o.adl_usd == pytest.approx(bad - fund_at_p1, rel=5e-3)
    assert o.uncovered_usd == 0.0
    assert o.socialised_usd == 0.0
    assert o.accounts_liquidated == 1
    assert o.margin_calls == 0
    assert o.cascades == 1
    assert o.liquidated_notional_usd == pytest.approx(p1, rel=1e-9)
    assert o.conservation_error == "0"
    assert o.insurance_fund_end_usd == pytest.approx(0.0, abs=0.01)


def test_funding_sets_equity_to_a_multiple_of_im():
    model = load_model("deribit-pm")
    funded, capital = fund_book(two_accounts(), model, MARKET, 1.5)
    res = model.compute(funded, MARKET)
    assert res.equity == pytest.approx(1.5 * res.initial_margin, rel=1e-12)
    assert capital == pytest.approx(res.initial_margin.sum() * S0)
    with pytest.raises(InvalidInput, match="funding_multiple"):
        fund_book(two_accounts(), model, MARKET, 0.5)


def test_shipped_episodes_are_the_four_named_crashes():
    p = load_replay_params()
    assert [e.name for e in p.episodes] == ["covid-2020", "may-2021", "june-2022", "ftx-2022"]
    assert len(p.episode("ftx-2022").hours()) == 4 * 24
    with pytest.raises(InvalidInput, match="EPISODE"):
        p.episode("luna")


@pytest.mark.data
@pytest.mark.slow
def test_replay_of_a_real_episode_conserves_money():
    from pmargin.demo import find_shared

    if find_shared() is None:
        pytest.skip("../shared/data not found")
    p = load_replay_params()
    out = replay_episode(p.episode("ftx-2022"), "BTC", p,
                         regimes=["deribit-sm-isolated", "deribit-sm", "deribit-pm"], accounts=120)
    assert [o.regime for o in out] == ["deribit-sm-isolated", "deribit-sm", "deribit-pm"]
    for o in out:
        assert o.conservation_error == "0"
        assert o.ledger_equity_max_error < 1e-9
        assert o.hours == 95
        assert o.insurance_fund_used_usd + o.adl_usd + o.socialised_usd + o.uncovered_usd == \
            pytest.approx(o.bad_debt_usd, rel=1e-6, abs=1e-6)
    # standard margin is additive per position: isolated and cross demand the same capital
    assert out[0].capital_demanded_usd == pytest.approx(out[1].capital_demanded_usd, rel=1e-9)


def test_dynamic_regime_is_the_example_model_file():
    from pathlib import Path

    from pmargin.analytics.crash_replay import load_regime

    ex = load_model(Path(__file__).parents[2] / "docs" / "examples" / "pmargin-dynamic.toml")
    dyn = load_regime("pmargin-dynamic")
    assert dyn.name == "pmargin-dynamic"
    assert dyn.params.model_dump() == ex.params.model_dump()
    # a venue grid preset takes the same overlay; a model without a grid refuses it
    assert load_regime("deribit-pm-dynamic").params.dynamic == ex.params.dynamic
    with pytest.raises(InvalidInput, match="grid"):
        load_regime("deribit-sm-dynamic")
    # an unknown name names the regime and says what a regime can be
    with pytest.raises(InvalidInput, match=r"regime: unknown model .*-dynamic") as err:
        load_regime("bogus")
    assert err.value.value == "bogus"


def test_a_regime_that_did_not_run_has_a_reason_and_no_figures():
    o = RegimeOutcome("covid-2020", "BTC", "var-fhs", 0, 0.0, reason="no DVOL history")
    d = o.to_dict()
    assert d["reason"] == "no DVOL history"
    assert d["capital_demanded_usd"] is None
    assert d["bad_debt_usd"] is None
    assert d["losses_not_covered_usd"] is None
    assert d["conservation_error"] is None


def _shared_or_skip():
    from pmargin.demo import find_shared

    if find_shared() is None:
        pytest.skip("../shared/data not found")


@pytest.mark.data
def test_var_fhs_on_covid_is_a_row_with_its_reason():
    _shared_or_skip()
    p = load_replay_params()
    out = replay_episode(p.episode("covid-2020"), "BTC", p, regimes=["var-fhs", "deribit-sm"],
                         accounts=10)
    assert [o.regime for o in out] == ["var-fhs", "deribit-sm"]
    assert not out[0].ran
    assert "DVOL" in out[0].reason
    assert out[0].to_dict()["capital_demanded_usd"] is None
    assert out[1].ran
    assert out[1].hours == 95
    assert out[1].capital_demanded_usd > 0


@pytest.mark.data
def test_dynamic_scale_rises_at_most_ten_percent_a_day():
    from datetime import timedelta

    from pmargin.analytics import crash_replay as cr

    _shared_or_skip()
    p = load_replay_params()
    e = p.episode("covid-2020")
    short = cr.Episode(name="covid-36h", title="", start=e.start + timedelta(hours=12),
                       end=e.start + timedelta(hours=48))
    t = cr._Task(short, "BTC", "pmargin-dynamic", p, 10, None, None)
    inputs = cr._inputs(t)
    model = cr.load_regime("pmargin-dynamic", p)
    scales = cr._scales_before(t, inputs, model)
    first = model.with_previous_scale(scales[0])
    scales.append(first.dynamic_scales(["BTC"], inputs.markets[0]))
    funded, _ = fund_book(inputs.book, first, inputs.markets[0], p.funding_multiple)
    o = RegimeOutcome("covid-36h", "BTC", "pmargin-dynamic", funded.n_accounts, 0.0)
    replay_markets(funded, inputs.markets, model, "BTC", o, scales=scales)
    s = [x["BTC"] for x in scales]  # hours -24 .. 36
    assert len(s) == 24 + len(inputs.markets)
    for h in range(24, len(s)):
        assert s[h] <= s[h - 24] * 1.1 + 1e-12
    assert max(s[24:]) > s[24] * 1.05  # the vol spike of 12 March lifted the scale (capped)
    assert o.conservation_error == "0"


@pytest.mark.data
@pytest.mark.slow
def test_jobs_do_not_change_the_results():
    from pmargin.analytics.crash_replay import replay_all

    _shared_or_skip()
    p = load_replay_params()
    eps = [p.episode("ftx-2022")]
    regs = ["deribit-sm-isolated", "pmargin-dynamic", "var-fhs"]
    one = [o.to_dict() for o in replay_all(eps, ["BTC", "ETH"], p, regs, 40, jobs=1)]
    two = [o.to_dict() for o in replay_all(eps, ["BTC", "ETH"], p, regs, 40, jobs=2)]
    for a, b in zip(one, two, strict=True):
        a.pop("seconds")
        b.pop("seconds")
        assert a == b
    for r in one:
        assert r["conservation_error"] == "0"
        assert r["ledger_equity_max_error"] < 1e-12
