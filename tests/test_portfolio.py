import json
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pmargin.errors import DuplicatePositionWarning, InvalidInput
from pmargin.portfolio import Side, load_portfolio, portfolio_from_dict


def test_conformance_portfolio_block_loads(tmp_path):
    data = {
        "margin_currency": "usdc",
        "collateral": {"USDC": 1000, "BTC": 0.5},
        "positions": [{"instrument": "ETH_USDC-17NOV23-1850-P", "quantity": -50}],
        "orders": [{"instrument": "BTC-PERPETUAL", "side": "sell", "quantity": 2, "price": 65000,
                    "price_unit": "USD"}],
    }
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"portfolio": data}))
    pf = load_portfolio(p)
    assert pf.margin_currency == "USDC"
    assert pf.collateral == {"USDC": 1000.0, "BTC": 0.5}
    assert pf.positions[0].quantity == -50
    assert pf.orders[0].side is Side.SELL
    assert pf.orders[0].signed_quantity == -2


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"positions": []}, "margin_currency"),
        ({"margin_currency": "BTC", "positions": [{"quantity": 1}]}, r"positions\[0\].instrument"),
        ({"margin_currency": "BTC", "positions": [{"instrument": "BTC-PERPETUAL",
                                                   "quantity": float("nan")}]},
         r"positions\[0\].quantity"),
        ({"margin_currency": "BTC", "positions": [{"instrument": "BTC-PERPETUAL",
                                                   "quantity": "x"}]}, r"positions\[0\].quantity"),
        ({"margin_currency": "BTC", "positions": [{"instrument": "BTC-FOO", "quantity": 1}]},
         r"positions\[0\].instrument"),
        ({"margin_currency": "BTC", "collateral": {"BTC": float("inf")}}, "collateral.BTC"),
        ({"margin_currency": "BTC", "orders": [{"instrument": "BTC-PERPETUAL", "side": "hold",
                                                "quantity": 1, "price": 1, "price_unit": "USD"}]},
         r"orders\[0\].side"),
        ({"margin_currency": "BTC", "orders": [{"instrument": "BTC-PERPETUAL", "side": "buy",
                                                "quantity": -1, "price": 1, "price_unit": "USD"}]},
         r"orders\[0\].quantity"),
        ({"margin_currency": "BTC", "orders": [{"instrument": "BTC-PERPETUAL", "side": "buy",
                                                "quantity": 1, "price": 0.05}]},
         r"orders\[0\].price_unit"),
        ({"margin_currency": "BTC", "orders": [{"instrument": "BTC-PERPETUAL", "side": "buy",
                                                "quantity": 1, "price": 0.05,
                                                "price_unit": "coin"}]},
         r"orders\[0\].price_unit"),
        ({"margin_currency": "BTC", "positions": [{"instrument": "BTC-PERPETUAL", "quantity": 1,
                                                   "avg_price": 0}]}, r"positions\[0\].avg_price"),
        ({"margin_currency": "USDC", "positions": [{"instrument": "BTC_USDC", "quantity": -1}]},
         r"positions\[0\].quantity"),
    ],
)
def test_bad_portfolio_fields_are_named(data, field):
    with pytest.raises(InvalidInput, match=field):
        portfolio_from_dict(data)


# ----------------------------------------------------------------------------- strict keys
@pytest.mark.parametrize(
    ("data", "field", "hint"),
    [
        ({"margin_currency": "BTC", "position": []}, "portfolio.position", "positions"),
        ({"margin_currency": "BTC", "positions": [{"instrument": "BTC-PERPETUAL", "quantity": 1,
                                                   "avg_px": 60000}]},
         "portfolio.positions[0].avg_px", "avg_price"),
        ({"margin_currency": "BTC", "positions": [{"instrument": "BTC-PERPETUAL", "qty": 1}]},
         "portfolio.positions[0].qty", None),
        ({"margin_currency": "BTC", "orders": [{"instrument": "BTC-PERPETUAL", "side": "buy",
                                                "quantity": 1, "price": 1, "prices": 2}]},
         "portfolio.orders[0].prices", "price"),
        ({"margin_currency": "BTC", "account": "a1"}, "portfolio.account", "account_id"),
    ],
)
def test_unknown_keys_are_named_with_the_nearest_valid_key(data, field, hint):
    with pytest.raises(InvalidInput) as err:
        portfolio_from_dict(data)
    assert err.value.field == field
    assert "unknown field" in err.value.reason
    if hint is not None:
        assert f"did you mean '{hint}'" in err.value.reason


# ----------------------------------------------------------------------------- consistency
def test_negative_collateral_balance_is_refused_because_no_model_lends():
    with pytest.raises(InvalidInput) as err:
        portfolio_from_dict({"margin_currency": "USDC", "collateral": {"USDC": 100, "BTC": -0.1}})
    assert err.value.field == "portfolio.collateral.BTC"


def test_collateral_currency_given_twice_is_refused():
    with pytest.raises(InvalidInput, match="repeats the currency BTC"):
        portfolio_from_dict({"margin_currency": "BTC", "collateral": {"BTC": 1, "btc": 2}})


def test_rows_of_one_instrument_merge_with_a_notice_size_weighted():
    data = {"margin_currency": "BTC", "collateral": {"BTC": 1.0}, "positions": [
        {"instrument": "BTC-PERPETUAL", "quantity": 1, "avg_price": 60000,
         "isolated_collateral": 0.25},
        {"instrument": "BTC-25SEP26-100000-C", "quantity": -1},
        {"instrument": "btc-perpetual", "quantity": 3, "avg_price": 64000,
         "isolated_collateral": 0.5}]}
    with pytest.warns(DuplicatePositionWarning, match=r"positions\[2\].*BTC-PERPETUAL"):
        pf = portfolio_from_dict(data)
    assert [p.instrument.name for p in pf.positions] == ["BTC-PERPETUAL", "BTC-25SEP26-100000-C"]
    perp = pf.positions[0]
    assert perp.quantity == 4
    # hand calculation: (1 x 60000 + 3 x 64000) / 4 = 252000 / 4 = 63000
    assert perp.avg_price == pytest.approx(63000.0, rel=1e-15)
    assert perp.isolated_collateral == pytest.approx(0.75)


def test_merged_rows_keep_the_unrealised_pnl_of_the_rows():
    rows = [(-2.0, 3000.0), (-0.5, 2900.0), (-1.5, 3100.0)]
    data = {"margin_currency": "USDC", "positions": [
        {"instrument": "ETH_USDC-PERPETUAL", "quantity": q, "avg_price": a} for q, a in rows]}
    with pytest.warns(DuplicatePositionWarning):
        (pos,) = portfolio_from_dict(data).positions
    for mark in (2500.0, 3050.0, 4000.0):
        assert pos.quantity * (mark - pos.avg_price) == pytest.approx(
            sum(q * (mark - a) for q, a in rows), rel=1e-12)


def test_rows_of_one_instrument_that_cannot_merge_are_refused():
    opposite = {"margin_currency": "BTC", "positions": [
        {"instrument": "BTC-PERPETUAL", "quantity": 2, "avg_price": 60000},
        {"instrument": "BTC-PERPETUAL", "quantity": -1, "avg_price": 65000}]}
    with pytest.raises(InvalidInput) as err:
        portfolio_from_dict(opposite)
    assert err.value.field == "portfolio.positions[1].quantity"
    partial = {"margin_currency": "BTC", "positions": [
        {"instrument": "BTC-PERPETUAL", "quantity": 2, "avg_price": 60000},
        {"instrument": "BTC-PERPETUAL", "quantity": 1}]}
    with pytest.raises(InvalidInput) as err:
        portfolio_from_dict(partial)
    assert err.value.field == "portfolio.positions[1].avg_price"


def test_rows_without_prices_net_whatever_their_signs():
    data = {"margin_currency": "BTC", "positions": [
        {"instrument": "BTC-25SEP26-100000-C", "quantity": 2},
        {"instrument": "BTC-25SEP26-100000-C", "quantity": -2.5}]}
    with pytest.warns(DuplicatePositionWarning):
        (pos,) = portfolio_from_dict(data).positions
    assert pos.quantity == -0.5
    assert pos.avg_price is None


def test_isolated_collateral_above_the_balance_is_refused():
    rows = [{"instrument": "BTC-PERPETUAL", "quantity": 1, "isolated_collateral": 0.6},
            {"instrument": "BTC-25SEP26", "quantity": 1, "isolated_collateral": 0.5}]
    with pytest.raises(InvalidInput) as err:
        portfolio_from_dict({"margin_currency": "BTC", "collateral": {"BTC": 1.0},
                             "positions": rows})
    assert err.value.field == "portfolio.positions.isolated_collateral"
    assert err.value.value == pytest.approx(1.1)
    # exactly the balance is allowed (0.6 + 0.4 = 1.0)
    rows[1]["isolated_collateral"] = 0.4
    pf = portfolio_from_dict({"margin_currency": "BTC", "collateral": {"BTC": 1.0},
                              "positions": rows})
    assert sum(p.isolated_collateral or 0 for p in pf.positions) == pytest.approx(1.0)


def test_isolated_collateral_without_a_margin_currency_balance_is_refused():
    rows = [{"instrument": "BTC-PERPETUAL", "quantity": 1, "isolated_collateral": 0.1}]
    with pytest.raises(InvalidInput, match="more than the BTC balance"):
        portfolio_from_dict({"margin_currency": "BTC", "collateral": {"USDC": 1e6},
                             "positions": rows})


@pytest.mark.parametrize("payload", [b"\xff\xfe{}", bytes(range(256)), b"", b"[1, 2]", b"3",
                                     b'"BTC"', b"null", b"[" * 100_000])
def test_unreadable_or_wrongly_shaped_files_are_invalid_input(tmp_path, payload):
    f = tmp_path / "p.json"
    f.write_bytes(payload)
    with pytest.raises(InvalidInput) as err:
        load_portfolio(f)
    assert err.value.field == "portfolio"


def test_missing_file_and_directory_are_invalid_input(tmp_path):
    with pytest.raises(InvalidInput):
        load_portfolio(tmp_path / "none.json")
    with pytest.raises(InvalidInput):
        load_portfolio(tmp_path)


# ----------------------------------------------------------------------------- property
_INSTRUMENTS = ["BTC-PERPETUAL", "BTC-25SEP26", "BTC-25SEP26-100000-C", "ETH_USDC-17NOV23-1850-P",
                "BTC_USDC", "BTC-25SEP26-85001-X", ""]
_scalar = (st.none() | st.booleans() | st.integers() | st.just(10**400)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6)
           | st.sampled_from([*_INSTRUMENTS, "buy", "sell", "BTC", "usdc"]))
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
_row = st.fixed_dictionaries(
    {}, optional={"instrument": st.sampled_from(_INSTRUMENTS) | _scalar, "quantity": _scalar,
                  "avg_price": _scalar, "isolated_collateral": _scalar, "side": _scalar,
                  "price": _scalar, "price_unit": st.sampled_from(["USD", "coin"]) | _scalar,
                  "avg_px": _scalar})
_portfolio = st.fixed_dictionaries(
    {}, optional={"margin_currency": st.sampled_from(["BTC", "USDC", "eth", ""]) | _scalar,
                  "collateral": st.dictionaries(st.sampled_from(["BTC", "USDC", "btc", "$"]),
                                                _scalar, max_size=3) | _json,
                  "positions": st.lists(_row | _json, max_size=4) | _json,
                  "orders": st.lists(_row | _json, max_size=3) | _json,
                  "account_id": _scalar, "qty": _scalar})


def _outcome(load):
    """(portfolio, None) or (None, the InvalidInput raised); any other exception propagates."""
    try:
        return load(), None
    except InvalidInput as exc:
        return None, exc


def _all_numbers_finite(pf):
    nums = list(pf.collateral.values())
    for p in pf.positions:
        nums += [p.quantity, p.avg_price or 1.0, p.isolated_collateral or 0.0]
    for o in pf.orders:
        nums += [o.quantity, o.price]
    return all(math.isfinite(x) for x in nums)


@given(data=_portfolio | _json)
@example(data={"margin_currency": "BTC", "collateral": {"BTC": 10**400}})  # float overflow
@example(data={"margin_currency": "BTC", "positions": [{"instrument": "BTC-PERPETUAL",
                                                        "quantity": -(10**400)}]})
def test_any_portfolio_loads_or_raises_invalid_input_naming_a_field(data):
    pf, error = _outcome(lambda: portfolio_from_dict(data))
    if error is not None:
        assert error.field.startswith("portfolio")
        return
    assert _all_numbers_finite(pf)
    assert all(v >= 0 for v in pf.collateral.values())


@given(payload=st.binary(max_size=100) | _json.map(lambda d: json.dumps(d).encode()))
def test_any_portfolio_file_loads_or_raises_invalid_input(tmp_path_factory, payload):
    f = tmp_path_factory.mktemp("pf") / "p.json"
    f.write_bytes(payload)
    pf, error = _outcome(lambda: load_portfolio(f))
    if error is not None:
        assert error.field.startswith("portfolio")
        return
    assert _all_numbers_finite(pf)


def test_an_absurd_quantity_is_refused_naming_it():
    from pmargin.errors import InvalidInput
    from pmargin.portfolio import portfolio_from_dict

    with pytest.raises(InvalidInput) as err:
        portfolio_from_dict({"margin_currency": "BTC", "collateral": {},
                             "positions": [{"instrument": "BTC-PERPETUAL", "quantity": 1e300}]})
    assert err.value.field == "portfolio.positions[0].quantity"
