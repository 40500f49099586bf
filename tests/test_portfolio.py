import json

import pytest

from pmargin.errors import InvalidInput
from pmargin.portfolio import Side, load_portfolio, portfolio_from_dict


def test_conformance_portfolio_block_loads(tmp_path):
    data = {
        "margin_currency": "usdc",
        "collateral": {"USDC": 1000, "BTC": 0.5},
        "positions": [{"instrument": "ETH_USDC-17NOV23-1850-P", "quantity": -50}],
        "orders": [{"instrument": "BTC-PERPETUAL", "side": "sell", "quantity": 2, "price": 65000}],
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
                                                "quantity": 1, "price": 1}]}, r"orders\[0\].side"),
        ({"margin_currency": "BTC", "orders": [{"instrument": "BTC-PERPETUAL", "side": "buy",
                                                "quantity": -1, "price": 1}]},
         r"orders\[0\].quantity"),
        ({"margin_currency": "BTC", "positions": [{"instrument": "BTC-PERPETUAL", "quantity": 1,
                                                   "avg_price": 0}]}, r"positions\[0\].avg_price"),
        ({"margin_currency": "USDC", "positions": [{"instrument": "BTC_USDC", "quantity": -1}]},
         r"positions\[0\].quantity"),
    ],
)
def test_bad_portfolio_fields_are_named(data, field):
    with pytest.raises(InvalidInput, match=field):
        portfolio_from_dict(data)
