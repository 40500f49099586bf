"""The ``derive-pm2`` margin model: registry, account mapping, signs and hand calculations.

Expected figures are Derive's published worked example TV-07 (reference/methodologies.md) and
hand calculations written out below with the P0 parameters (``presets/derive-pm2.toml``).
"""

from __future__ import annotations

import ast
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pmargin
from pmargin.book import Book
from pmargin.errors import InvalidInput, ParamsError
from pmargin.market.loaders import load_market_json
from pmargin.models import list_models, load_model
from pmargin.models.derive import DerivePM2Model
from pmargin.models.derive.params import load_derive_pm2_params
from pmargin.models.derive.pm2 import (
    DeriveExpiryFeed,
    DeriveOption,
    DerivePM2Inputs,
    compute_derive_pm2,
)
from pmargin.portfolio import portfolio_from_dict
from tests.factories import expiry_code, make_market, pf

MODEL = load_model("derive-pm2")
MARKET = make_market()  # BTC 80,000, ETH 2,500, flat 60 % vol, no basis
P0 = load_derive_pm2_params()
TAILS_WORST = min((s.spot_shock - 1.0) * s.dampening for s in P0.scenarios if s.kind == "tail")


# ----------------------------------------------------------------------------- registry
def test_listed_and_loadable_like_every_model():
    # 9.11: list_models() left derive-pm2 out and load_model could not load it
    assert "derive-pm2" in list_models()
    assert isinstance(MODEL, DerivePM2Model)
    assert MODEL.name == "derive-pm2"
    assert len(MODEL.digest) == 64
    assert isinstance(load_model(Path(pmargin.__file__).parent / "models" / "presets"
                                 / "derive-pm2.toml"), DerivePM2Model)


def test_overrides_and_mode():
    m = load_model("derive-pm2", overrides={"margin.mm_loss_factor": 0.5})
    assert isinstance(m, DerivePM2Model)
    assert m.params.margin.mm_loss_factor == 0.5
    assert m.digest != MODEL.digest


def test_model_needs_the_account_table(tmp_path: Path):
    text = (Path(pmargin.__file__).parent / "models" / "presets" / "derive-pm2.toml").read_text()
    cut = tmp_path / "no-account.toml"
    cut.write_text(text.split("# -------------------------------------------------------------"
                              "---------------- account mapping")[0])
    assert load_derive_pm2_params(cut).account is None  # a case-file-like parameter set
    with pytest.raises(ParamsError, match="account"):
        load_model(cut)


def test_generic_model_code_does_not_import_derive():
    # 9.10: models/params.py and models/grid.py imported the Derive model
    root = Path(pmargin.__file__).parent
    for rel in ("models/params.py", "models/grid.py", "models/portfolio_margin.py",
                "scenarios.py"):
        tree = ast.parse((root / rel).read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(m and "derive" in m for m in mods), rel


# ----------------------------------------------------------------------------- TV-07 end to end
def tv07_market():
    expiry = datetime(2026, 6, 5, 8, tzinfo=UTC)
    valuation = expiry - timedelta(seconds=1_399_652)
    return load_market_json({
        "valuation_time": valuation.isoformat(),
        "market": {"mark_unit": "USD", "index": {"BTC": 95_663.50604855}, "instruments": {
            "BTC-05JUN26": {"mark_price": 95_923.63240250274},
            # TV-07's option MtM per contract (Black-76 at vol 0.45476, rate 0.17), in USD
            "BTC_USDC-05JUN26-100000-P": {"mark_price": 6_082.239829372652,
                                          "underlying_price": 95_923.63240250274},
        }},
    })


def test_tv07_through_load_model_and_a_market():
    # Derive's worked example TV-07: requirement beyond MtM MM 12,769.60, IM 16,081.58 USD
    mdl = load_model("derive-pm2", overrides={"account.rate": 0.17})
    account = portfolio_from_dict({"margin_currency": "USDC", "collateral": {"USDC": 20_000.0},
                                   "positions": [{"instrument": "BTC_USDC-05JUN26-100000-P",
                                                  "quantity": -1}]})
    res = mdl.margin(account, tv07_market())
    assert res.initial_margin == pytest.approx(16_081.58, abs=5e-3)
    assert res.maintenance_margin == pytest.approx(12_769.60, abs=5e-3)
    assert res.equity == pytest.approx(20_000.0 - 6_082.239829, abs=1e-6)
    assert res.health == "margin_call"  # 13,917.76 of equity: above MM, below IM
    native = mdl.native(account, tv07_market())
    assert native.option_mtm == pytest.approx(-6_082.239829, abs=1e-6)
    assert native.vol_shock_up_multiplier[0] == pytest.approx(1.601526, abs=1e-6)
    # Derive's own sign: value after the requirement = 20,000 + TV-07's IM (-22,163.82)
    assert native.im == pytest.approx(20_000.0 - 22_163.820440, abs=1e-6)
    assert native.mm == pytest.approx(20_000.0 - 18_851.840812, abs=1e-6)
    assert res.components["worst_case"] == pytest.approx(15_603.263080, abs=1e-6)
    assert res.components["naked_short_mm"] == pytest.approx(286.9905, abs=1e-4)
    assert res.components["naked_short_im"] == pytest.approx(478.3175, abs=1e-4)


# ----------------------------------------------------------------------------- hand calculations
def test_empty_and_cash_only_accounts_need_nothing():
    assert MODEL.margin(pf("USDC", []), MARKET).initial_margin == 0.0
    res = MODEL.margin(pf("USDC", [], {"USDC": 1000.0}), MARKET)
    assert (res.initial_margin, res.maintenance_margin, res.equity) == (0.0, 0.0, 1000.0)


def test_linear_perpetual_hand_calculation():
    # long 2 BTC perp at 80,000: worst scenario x0.82 loses 0.18 x 2 x 80,000 = 28,800;
    # perp contingency on |2| x spot: MM 1.5 %, IM 1.5 % + 0.5 %
    res = MODEL.margin(pf("USDC", [("BTC_USDC-PERPETUAL", 2.0)], {"USDC": 50_000.0}), MARKET)
    notional = 2 * 80_000.0
    assert res.maintenance_margin == pytest.approx(0.8 * 28_800 + 0.015 * notional, rel=1e-12)
    assert res.initial_margin == pytest.approx(1.0 * 28_800 + 0.02 * notional, rel=1e-12)
    assert res.worst_scenario is not None
    assert res.worst_scenario["BTC"]["price_shock"] == pytest.approx(-0.18)


@pytest.mark.parametrize("q", [1.5, -1.5])
def test_dated_future_is_a_synthetic_forward(q):
    # a future of q coins = q calls long + q puts short at the forward F (value q (F' - F)):
    # worst scenario -0.18 |q| F (static discount of a negative MtM is min(1, ...) = 1 at
    # rate 0), no naked short; basis contingency -0.045 |q| F (0.5 + 2 tau) is smaller
    name = f"BTC-{expiry_code(30)}"
    res = MODEL.margin(pf("USDC", [(name, q)], {"USDC": 50_000.0}), MARKET)
    f = MARKET.forward("BTC", MARKET.valuation_time + timedelta(days=30))
    tau = 30 / 365
    assert res.components["forward_contingency"] == pytest.approx(
        0.045 * abs(q) * f * (0.5 + 2 * tau), rel=1e-9)
    assert res.components["naked_short_mm"] == 0.0
    assert res.initial_margin == pytest.approx(0.18 * abs(q) * f, rel=1e-9)
    assert res.maintenance_margin == pytest.approx(0.8 * 0.18 * abs(q) * f, rel=1e-9)


def test_coin_collateral_alone():
    # USDC account with 2 ETH and no position: ETH is static collateral (haircuts MM 0.15,
    # IM 0.15 + 0.05), no scenario risk
    res = MODEL.margin(pf("USDC", [], {"USDC": 100.0, "ETH": 2.0}), MARKET)
    assert res.maintenance_margin == pytest.approx(0.15 * 5000.0, rel=1e-12)
    assert res.initial_margin == pytest.approx(0.20 * 5000.0, rel=1e-12)
    # a BTC-margined account is refused: Derive margins USDC accounts, and in USD a coin
    # account holding only its coin would be charged the coin's own fall
    with pytest.raises(InvalidInput, match="margin_currency"):
        MODEL.margin(pf("BTC", [], {"BTC": 1.0}), MARKET)


def test_matches_derive_on_hand_built_inputs():
    # the adapter gives Derive the option as the market has it: spot, expiry forward, seconds
    # to expiry, strike, quantity, and the vol that reproduces the mark (here the mark IV)
    code = expiry_code(30)
    account = pf("USDC", [(f"BTC_USDC-{code}-88000-C", -3.0), (f"BTC_USDC-{code}-72000-P", 2.0)],
                 {"USDC": 30_000.0})
    res = MODEL.margin(account, MARKET)
    s = 30 * 86_400.0
    feed = DeriveExpiryFeed(expiry_seconds=s, forward=80_000.0)
    hand = compute_derive_pm2(DerivePM2Inputs(spot=80_000.0, feeds=(feed,), cash=30_000.0, options=(
        DeriveOption(expiry_seconds=s, strike=88_000.0, is_call=True, amount=-3.0, mark_vol=0.6),
        DeriveOption(expiry_seconds=s, strike=72_000.0, is_call=False, amount=2.0, mark_vol=0.6),
    )), P0)
    assert res.initial_margin == pytest.approx(hand.initial_margin, rel=1e-9)
    assert res.maintenance_margin == pytest.approx(hand.maintenance_margin, rel=1e-9)
    # equity at the marks equals Derive's own MtM when the vols reproduce the marks
    assert res.equity == pytest.approx(hand.portfolio_mtm, rel=1e-9)
    assert res.by_position["derive_mark_vol"].to_numpy() == pytest.approx([0.6, 0.6], rel=1e-9)


def test_open_order_is_margined_as_if_filled_at_the_mark():
    code = expiry_code(30)
    name = f"BTC_USDC-{code}-88000-C"
    mark = MARKET.mark_price(name)
    base = pf("USDC", [(f"BTC_USDC-{code}-72000-P", -1.0)], {"USDC": 30_000.0})
    with_order = pf("USDC", [(f"BTC_USDC-{code}-72000-P", -1.0)], {"USDC": 30_000.0},
                    orders=[{"instrument": name, "side": "sell", "quantity": 2, "price": mark,
                                    "price_unit": "USD"}])
    filled = pf("USDC", [(f"BTC_USDC-{code}-72000-P", -1.0), (name, -2.0)], {"USDC": 30_000.0})
    r0, r1, r2 = (MODEL.margin(p, MARKET) for p in (base, with_order, filled))
    assert r1.components["open_orders"] == pytest.approx(r2.initial_margin - r0.initial_margin,
                                                         rel=1e-9)
    assert r1.maintenance_margin == r0.maintenance_margin


# ----------------------------------------------------------------------------- input errors
def test_two_underlyings_are_refused():
    with pytest.raises(InvalidInput, match="one underlying"):
        MODEL.margin(pf("USDC", [("BTC_USDC-PERPETUAL", 1.0), ("ETH_USDC-PERPETUAL", 1.0)],
                        {"USDC": 1e6}), MARKET)


def test_negative_coin_balance_and_unknown_haircut_are_refused():
    with pytest.raises(InvalidInput, match=r"collateral\.ETH"):
        MODEL.margin(pf("USDC", [], {"USDC": 1e4, "ETH": -1.0}), MARKET)
    sol = make_market(index={"BTC": 80_000.0, "SOL": 150.0})
    with pytest.raises(InvalidInput, match=r"collateral\.SOL.*haircut"):
        MODEL.margin(pf("USDC", [], {"SOL": 10.0}), sol)


# ----------------------------------------------------------------------------- book and contract
def test_book_gives_each_account_its_own_figures():
    code = expiry_code(30)
    accounts = [
        pf("USDC", [(f"BTC_USDC-{code}-88000-C", -1.0)], {"USDC": 20_000.0}, account_id="a"),
        pf("USDC", [("BTC_USDC-PERPETUAL", -0.5)], {"USDC": 5_000.0, "BTC": 0.1},
           account_id="b"),
        pf("USDC", [], {"USDC": 10.0}, account_id="c"),
    ]
    book = MODEL.compute(Book.from_portfolios(accounts), MARKET)
    for i, a in enumerate(accounts):
        one = MODEL.margin_figures(a, MARKET)
        assert book.initial_margin[i] == pytest.approx(one.initial_margin[0], rel=1e-12)
        assert book.maintenance_margin[i] == pytest.approx(one.maintenance_margin[0], rel=1e-12)
        assert book.equity[i] == pytest.approx(one.equity[0], rel=1e-12)


STRIKES = [64_000.0, 72_000.0, 80_000.0, 88_000.0, 96_000.0]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([7, 30, 90]), st.sampled_from(STRIKES),
                          st.sampled_from("CP"), st.floats(-5, 5).filter(lambda q: abs(q) > 1e-3)),
                min_size=1, max_size=5),
       st.floats(0.1, 5.0))
def test_im_above_mm_above_zero_and_homogeneous(rows, c):
    def account(scale: float):
        return pf("USDC", [(f"BTC_USDC-{expiry_code(d)}-{int(k)}-{cp}", q * scale)
                           for d, k, cp, q in rows], {"USDC": 1e5 * scale})

    a = MODEL.margin_figures(account(1.0), MARKET)
    b = MODEL.margin_figures(account(c), MARKET)
    im, mm = a.initial_margin[0], a.maintenance_margin[0]
    assert math.isfinite(im)
    assert math.isfinite(mm)
    assert im >= mm - 1e-9 * (1 + im) >= -1e-9
    assert b.initial_margin[0] == pytest.approx(c * im, rel=1e-9, abs=1e-6)
    assert b.maintenance_margin[0] == pytest.approx(c * mm, rel=1e-9, abs=1e-6)
    assert np.all(np.isfinite(list(a.components.values())))
