"""Liquidity-risk options of any model (issue 12.3): concentration add-on, liquidation period.

Hand-computed figures on a small market; off in every shipped preset (no component, same
numbers and digest); monotone in size; missing open interest or volume never lowers margin;
a book equals its accounts alone (also in tests/models/test_contract.py, which runs the two
example presets of docs/examples); unknown keys refused; the figure of
docs/models/liquidity-risk.md is the output of the command written there.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from pmargin.book import Book
from pmargin.errors import ParamsError
from pmargin.market import MarketSnapshot
from pmargin.market.loaders import load_market_json
from pmargin.models import PortfolioMarginModel, list_presets, load_model, load_params
from pmargin.models.liquidity import grid_scale, instrument_depth, period_multiple
from pmargin.models.params import ConcentrationParams, read_preset
from pmargin.models.portfolio_margin import RowsCSR
from pmargin.models.var_fhs import load_var_fhs_params
from pmargin.portfolio import portfolio_from_dict
from tests.conftest import REPO, shared_path
from tests.factories import VALUATION, expiry_code, pf

EXAMPLES = REPO / "docs" / "examples"
PUT = f"BTC-{expiry_code(30)}-70000-P"
CALL = f"BTC-{expiry_code(30)}-90000-C"

CONC: dict[str, Any] = {
    "impact_coefficient": 1.0, "oi_share": 0.02, "volume_share": 0.1,
    "min_depth_fraction": 0.02, "mm_fraction": 0.5,
    "kinds": {"option": {"depth_usd_per_pct": 250000.0, "min_half_spread_fraction": 0.025,
                         "min_half_spread_usd": 1.0}},
}
PERIOD: dict[str, Any] = {"participation": 0.1, "max_multiple": 4.0}


def _market(activity: bool = True, volume: bool = True) -> MarketSnapshot:
    """BTC at 80,000: a put marked 2,000 (quotes 1,950/2,050, OI 1,000, volume 200) and a call."""
    put: dict[str, Any] = {"mark_price": 2000.0, "underlying_price": 80000.0,
                           "bid_price": 1950.0, "ask_price": 2050.0}
    if activity:
        put["open_interest"] = 1000.0
        if volume:
            put["volume"] = 200.0
    return load_market_json({
        "valuation_time": VALUATION.isoformat(),
        "market": {"mark_unit": "USD", "index": {"BTC": 80000.0}, "instruments": {
            "BTC-PERPETUAL": {"mark_price": 80000.0},
            PUT: put,
            CALL: {"mark_iv": 0.6, "underlying_price": 80000.0},
        }},
    })


def _pm(**over: Any) -> PortfolioMarginModel:
    model = load_model("pmargin", over or None)
    assert isinstance(model, PortfolioMarginModel)
    return model


# ----------------------------------------------------------------------------- hand-computed
def test_hand_computed_add_on() -> None:
    # L = 0.02 * 1,000 + 0.1 * 200 = 40 contracts per 1 %; D = min(250,000, 40 * 2,000) = 80,000
    # USD per 1 %. Short 50: impact 50 * 2,000 / 80,000 * 1 % * 2,000 = 25 USD, half-spread 50,
    # cost 50 * 75 = 3,750 USD = 0.046875 BTC at 80,000.
    market = _market()
    book = Book.from_portfolios([pf("BTC", [(PUT, -50.0)])])
    off = _pm().compute(book, market)
    on = _pm(concentration=CONC).compute(book, market)
    assert on.components["concentration"][0] == pytest.approx(0.046875, rel=1e-12)
    assert on.initial_margin[0] - off.initial_margin[0] == pytest.approx(0.046875, rel=1e-9)
    assert on.maintenance_margin[0] - off.maintenance_margin[0] == pytest.approx(
        0.5 * 0.046875, rel=1e-9)
    explained = _pm(concentration=CONC).margin(pf("BTC", [(PUT, -50.0)]), market)
    assert explained.components["concentration"] == pytest.approx(0.046875, rel=1e-12)
    assert explained.by_position is not None
    assert float(explained.by_position["concentration"].iloc[0]) == pytest.approx(0.046875)


def test_depth_rule() -> None:
    p = ConcentrationParams.model_validate(CONC)
    d = instrument_depth(np.array([1000.0, 1e6, np.nan, 0.0]), np.array([200.0, 0.0, np.nan, 0.0]),
                         np.array([2000.0, 2000.0, 2000.0, 0.0]), np.full(4, 250000.0), p)
    # own depth; capped at the kind's; missing OI and volume: the floor 2 % x 250,000; mark 0
    np.testing.assert_allclose(d, [80000.0, 250000.0, 5000.0, 5000.0])


@pytest.mark.data
def test_var_fhs_add_on_is_the_same_rule() -> None:
    shared_path("data", "prices")
    market = _market()
    book = Book.from_portfolios([pf("BTC", [(PUT, -50.0)])])
    model = load_model("var-fhs", {"concentration": CONC})
    res = model.compute(book, market)
    assert res.components["concentration"][0] == pytest.approx(0.046875, rel=1e-12)
    base = load_model("var-fhs").compute(book, market)
    assert res.initial_margin[0] == pytest.approx(base.initial_margin[0] + 0.046875, rel=1e-12)
    explained = model.margin(pf("BTC", [(PUT, -50.0)]), market)
    assert explained.by_position is not None
    assert float(explained.by_position["concentration"].iloc[0]) == pytest.approx(0.046875)


# ----------------------------------------------------------------------------- off
@pytest.mark.parametrize("name", ["deribit-pm", "okx-pm", "paradex-pm", "span", "pmargin",
                                  "var-fhs"])
def test_off_in_the_presets(name: str) -> None:
    raw = read_preset(name)
    assert "concentration" not in raw
    assert "liquidation_period" not in raw
    params = (load_var_fhs_params(name) if name == "var-fhs" else load_params(name))
    dumped = params.model_dump(mode="json")  # the digest's input: unchanged when off
    assert "concentration" not in dumped
    assert "liquidation_period" not in dumped


def test_no_component_and_same_numbers_when_off() -> None:
    market = _market()
    book = Book.from_portfolios([pf("BTC", [(PUT, -50.0), (CALL, 3.0)]), pf("BTC", [])])
    res = _pm().compute(book, market)
    assert "concentration" not in res.components
    assert "liquidation_period" not in res.components
    zero = {**CONC, "kinds": {"future": CONC["kinds"]["option"]}}  # on, but no option charged
    res0 = _pm(concentration=zero).compute(book, market)
    np.testing.assert_array_equal(res0.initial_margin, res.initial_margin)
    np.testing.assert_array_equal(res0.components["concentration"], [0.0, 0.0])


def test_every_shipped_preset_is_off() -> None:
    for name in list_presets():
        raw = read_preset(name)
        assert "concentration" not in raw, name
        assert "liquidation_period" not in raw, name


# ----------------------------------------------------------------------------- size
def test_monotone_in_size() -> None:
    market = _market()
    sizes = [0.0, 1.0, 10.0, 50.0, 200.0, 1000.0, 5000.0]
    book = Book.from_portfolios([pf("BTC", [(PUT, -q)] if q else [], account_id=f"a{i}")
                                 for i, q in enumerate(sizes)])
    for over in ({"concentration": CONC}, {"liquidation_period": PERIOD},
                 {"concentration": CONC, "liquidation_period": PERIOD}):
        res = _pm(**over).compute(book, market)
        for arr in (res.initial_margin, res.maintenance_margin):
            assert np.all(np.diff(arr) >= 0.0), over
        key = "concentration" if "concentration" in over else "liquidation_period"
        assert np.all(np.diff(res.components[key]) >= 0.0)
        assert res.components[key][-1] > 0.0


def test_period_multiple_and_grid_scale() -> None:
    # daily = participation * volume = 0.1 * 200 = 20 contracts a day
    daily = np.array([20.0, np.inf, 0.0])
    indptr = np.array([0, 1, 2, 3, 5, 5])
    indices = np.array([0, 0, 1, 0, 2])
    data = np.array([-10.0, -50.0, 1e6, 30.0, 1e-3])
    m = period_multiple(daily, indptr, indices, data, 4.0)
    # 0.5 -> 1; 2.5; a kind not listed never lengthens; no volume -> the cap; empty row -> 1
    np.testing.assert_allclose(m, [1.0, 2.5, 1.0, 4.0, 1.0])
    np.testing.assert_allclose(grid_scale(m, 0.25), [1.0, 1.75, 1.0, 2.0, 1.0])


def test_grid_presets_widen_the_grid_of_large_accounts() -> None:
    market = _market()
    model = _pm(liquidation_period=PERIOD)
    small, large = pf("BTC", [(PUT, -10.0)]), pf("BTC", [(PUT, -50.0)], account_id="b")
    res = model.compute(Book.from_portfolios([small, large]), market)
    np.testing.assert_allclose(res.components["liquidation_period_multiple"], [1.0, 2.5])
    assert res.components["liquidation_period"][0] == 0.0
    # 50 contracts: the price range 0.18 and vol shocks of pmargin times ceil(sqrt 2.5 / 0.25)
    # * 0.25 = 1.75
    wide = load_model("pmargin", {"underlyings.BTC.grid.price_range": 0.18 * 1.75,
                                  "underlyings.BTC.vol_shock.up": 0.5 * 1.75,
                                  "underlyings.BTC.vol_shock.down": 0.3 * 1.75})
    ref = wide.compute(Book.from_portfolios([large]), market)
    assert res.initial_margin[1] == pytest.approx(ref.initial_margin[0], rel=1e-12)
    assert res.maintenance_margin[1] == pytest.approx(ref.maintenance_margin[0], rel=1e-12)
    explained = model.margin(large, market)
    assert explained.initial_margin == pytest.approx(res.initial_margin[1], rel=1e-12)
    assert explained.scenarios is not None


@pytest.mark.data
def test_var_fhs_scales_es_by_the_root_of_the_multiple() -> None:
    shared_path("data", "prices")
    market = _market()
    book = Book.from_portfolios([pf("BTC", [(PUT, -50.0)])])
    base = load_model("var-fhs").compute(book, market)
    res = load_model("var-fhs", {"liquidation_period": PERIOD}).compute(book, market)
    es = base.components["expected_shortfall"][0]
    assert res.components["liquidation_period_multiple"][0] == pytest.approx(2.5)
    assert res.components["expected_shortfall"][0] == pytest.approx(es, rel=1e-12)
    assert res.initial_margin[0] == pytest.approx(es * np.sqrt(2.5), rel=1e-12)
    assert res.components["liquidation_period"][0] == pytest.approx(
        es * (np.sqrt(2.5) - 1.0), rel=1e-9)


# ----------------------------------------------------------------------------- missing data
@pytest.mark.parametrize("over", [{"concentration": CONC}, {"liquidation_period": PERIOD},
                                  {"concentration": CONC, "liquidation_period": PERIOD}])
def test_missing_open_interest_or_volume_never_lowers_margin(over: dict[str, Any]) -> None:
    book = Book.from_portfolios([pf("BTC", [(PUT, -q)], account_id=f"a{q}")
                                 for q in (1.0, 10.0, 50.0, 400.0)])
    model = _pm(**over)
    full = model.compute(book, _market())
    no_volume = model.compute(book, _market(volume=False))
    none = model.compute(book, _market(activity=False))
    for a, b in ((full, no_volume), (no_volume, none)):
        assert np.all(b.initial_margin >= a.initial_margin)
        assert np.all(b.maintenance_margin >= a.maintenance_margin)
    if "liquidation_period" in over:  # no volume: the longest period
        np.testing.assert_array_equal(none.components["liquidation_period_multiple"], 4.0)


# ----------------------------------------------------------------------------- book
@pytest.mark.parametrize("over", [{"concentration": CONC}, {"liquidation_period": PERIOD},
                                  {"concentration": CONC, "liquidation_period": PERIOD}])
def test_book_equals_accounts_alone_and_fast_rows(over: dict[str, Any]) -> None:
    market = _market()
    pfs = [pf("BTC", [(PUT, -50.0), (CALL, 2.0)], {"BTC": 3.0}, account_id="a"),
           pf("BTC", [(PUT, 5.0)], account_id="b"),
           pf("BTC", [], {"BTC": 1.0}, account_id="c"),
           pf("BTC", [(PUT, -400.0), ("BTC-PERPETUAL", 2.0)], account_id="d")]
    model = _pm(**over)
    book = Book.from_portfolios(pfs)
    res = model.compute(book, market)
    for i, p in enumerate(pfs):
        alone = model.compute(Book.from_portfolios([p]), market)
        # the options' own figures are exactly the account's; the rest to rounding (the NumPy
        # path's sparse products may differ in the last bit between book shapes)
        for k in ("concentration", "liquidation_period_multiple"):
            if k in alone.components:
                assert res.components[k][i] == alone.components[k][0], k
        for k, v in alone.components.items():
            assert res.components[k][i] == pytest.approx(v[0], rel=1e-12, abs=1e-15), k
        assert res.initial_margin[i] == pytest.approx(alone.initial_margin[0], rel=1e-12)
        assert res.maintenance_margin[i] == pytest.approx(alone.maintenance_margin[0], rel=1e-12)
    prep = model.prepare(book, market)
    pos = sp.csr_matrix(book.positions)
    ent = sp.csr_matrix(book.entry_notional)
    rows = np.array([3, 0])
    sub, sub_e = pos[rows], ent[rows]
    fast = model.evaluate_rows(prep, RowsCSR(sub.indptr.astype(np.int64),
                                             sub.indices.astype(np.int64), sub.data),
                               np.asarray(sub_e.data, np.float64), book.collateral[rows])
    if fast is not None:  # Numba on: the what-if path carries the options too
        np.testing.assert_allclose(fast[0], res.initial_margin[rows], rtol=1e-12)
        np.testing.assert_allclose(fast[1], res.maintenance_margin[rows], rtol=1e-12)


def test_open_orders_carry_the_add_on() -> None:
    market = _market()
    acct = portfolio_from_dict({"margin_currency": "BTC",
                                "positions": [{"instrument": PUT, "quantity": -50.0}],
                                "orders": [{"instrument": PUT, "side": "sell", "quantity": 50.0,
                                            "price_unit": "USD", "price": 2000.0}]})
    model = _pm(concentration=CONC)
    res = model.compute(Book.from_portfolios([acct]), market)
    filled = model.compute(Book.from_portfolios([pf("BTC", [(PUT, -100.0)])]), market)
    # the order is margined as if filled: the add-on of 100 contracts, not 50
    assert res.initial_margin[0] >= filled.initial_margin[0] - 1e-12


# ----------------------------------------------------------------------------- loss bound
def test_add_on_never_takes_a_long_holding_above_its_value() -> None:
    _long_holding_capped("pmargin")


@pytest.mark.data
def test_var_fhs_add_on_never_takes_a_long_holding_above_its_value() -> None:
    shared_path("data", "prices")
    _long_holding_capped("var-fhs")


def _long_holding_capped(name: str) -> None:
    # long 2,000 puts worth 2,000 USD each: 4M USD = 50 BTC, the most the holding can lose.
    # Uncapped, the close-out (2,000 / 40 = 50 % impact + spread) would add 26.25 BTC on top.
    market = _market()
    book = Book.from_portfolios([pf("BTC", [(PUT, 2000.0)]),
                                 pf("BTC", [(PUT, -5.0)], account_id="s")])
    res = load_model(name, {"concentration": CONC}).compute(book, market)
    off = load_model(name).compute(book, market)
    assert res.initial_margin[0] == pytest.approx(50.0, rel=1e-12)
    cut = off.initial_margin[0] + 26.25 - 50.0
    assert res.components["loss_bound_relief"][0] == pytest.approx(
        off.components["loss_bound_relief"][0] + cut, rel=1e-9)
    # a short put's loss is not bounded (in coin): its add-on is whole
    assert res.components["concentration"][1] > 0.0
    assert res.initial_margin[1] == pytest.approx(
        off.initial_margin[1] + res.components["concentration"][1], rel=1e-12)


# ----------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(("table", "bad", "hint"), [
    ("concentration", {**CONC, "oi_shar": 0.1}, "oi_share"),
    ("concentration", {**CONC, "kinds": {"option": {**CONC["kinds"]["option"],
                                                    "depth_usd_per_pc": 1.0}}},
     "depth_usd_per_pct"),
    ("liquidation_period", {**PERIOD, "participaton": 0.2}, "participation"),
])
def test_unknown_keys_are_refused(table: str, bad: dict[str, Any], hint: str) -> None:
    with pytest.raises(ParamsError, match=hint):
        load_params("pmargin", {table: bad})
    with pytest.raises(ParamsError, match=hint):
        load_var_fhs_params("var-fhs", {table: bad})


@pytest.mark.parametrize("bad", [{"min_depth_fraction": 0.0}, {"mm_fraction": 1.5},
                                 {"kinds": {}}, {"kinds": {"swap": CONC["kinds"]["option"]}}])
def test_out_of_range_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ParamsError):
        load_params("pmargin", {"concentration": {**CONC, **bad}})


def test_example_presets_are_the_shipped_ones_plus_the_two_tables() -> None:
    for example, shipped in (("pmargin-liquidity", "pmargin"), ("var-fhs-liquidity", "var-fhs")):
        raw = read_preset(EXAMPLES / f"{example}.toml")
        assert raw.pop("name") == example
        assert raw.pop("concentration")["oi_share"] == 0.02
        assert raw.pop("liquidation_period")["participation"] == 0.1
        base = read_preset(shipped)
        base.pop("name")
        assert raw == base


# ----------------------------------------------------------------------------- the docs' figure
@pytest.mark.data
def test_the_docs_figure_is_the_commands_output() -> None:
    snapshot = shared_path("data", "deribit",
                           "deribit_options_snapshot_20260822T153351Z.csv.gz")
    shared_path("data", "prices")
    script = EXAMPLES / "liquidity_risk_figure.py"
    spec = importlib.util.spec_from_file_location("liquidity_risk_figure", script)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    doc = (REPO / "docs" / "models" / "liquidity-risk.md").read_text()
    assert "python docs/examples/liquidity_risk_figure.py" in doc
    assert mod.figure(str(snapshot)) in doc

