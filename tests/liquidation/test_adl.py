"""BitMEX ADL ranking and deleveraging at the bankruptcy price."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from pmargin.errors import InvalidInput
from pmargin.liquidation import (
    Ledger,
    adl_scores,
    auto_deleverage,
    effective_leverage,
    pnl_fraction,
    rank_adl,
)

D = Decimal

# Six candidates in one instrument, mark price 80 (values = quantity x price):
#   A short 10, entry 100: EV -1000, MV -800, PnL% = (-800 + 1000)/1000 = 0.2,
#                          equity 200 -> L = 800/200 = 4,   score = 0.2 x 4 = 0.8
#   B short 5,  entry 90:  EV -450,  MV -400, PnL% = 50/450 = 0.1111,
#                          equity 50  -> L = 400/50 = 8,    score = 0.1111 x 8 = 0.8889
#   C short 20, entry 85:  EV -1700, MV -1600, PnL% = 100/1700 = 0.05882,
#                          equity 1600 -> L = 1,            score = 0.05882
#   D short 4,  entry 75:  EV -300,  MV -320, PnL% = -20/300 = -0.06667,
#                          equity 160 -> L = 2,             score = -0.06667 / 2 = -0.03333
#   E long 3,   entry 90:  EV 270,   MV 240,  PnL% = -30/270 = -0.1111,
#                          equity 120 -> L = 2,             score = -0.05556
#   F long 2,   entry 50:  EV 100,   MV 160,  PnL% = 0.6,
#                          equity 40  -> L = 4,             score = 2.4
QTY = [-10, -5, -20, -4, 3, 2]
MARK_VALUE = [-800.0, -400.0, -1600.0, -320.0, 240.0, 160.0]
ENTRY_VALUE = [-1000.0, -450.0, -1700.0, -300.0, 270.0, 100.0]
EQUITY = [200.0, 50.0, 1600.0, 160.0, 120.0, 40.0]
ACCOUNTS = [f"account:{c}:USDC" for c in "ABCDEF"]


def test_hand_computed_scores() -> None:
    scores = adl_scores(MARK_VALUE, ENTRY_VALUE, EQUITY)
    expected = [0.8, 8 * 50 / 450, 100 / 1700, -(20 / 300) / 2, -(30 / 270) / 2, 2.4]
    np.testing.assert_allclose(scores, expected, rtol=1e-15)
    np.testing.assert_allclose(pnl_fraction(MARK_VALUE, ENTRY_VALUE)[:2], [0.2, 50 / 450])
    np.testing.assert_allclose(effective_leverage(MARK_VALUE, EQUITY)[:2], [4.0, 8.0])


def test_queues_rank_longs_and_shorts_separately() -> None:
    ranking = rank_adl(QTY, MARK_VALUE, ENTRY_VALUE, EQUITY)
    assert ranking.queue(-1).tolist() == [1, 0, 2]  # B, A, C (D is losing)
    assert ranking.queue(-1, profitable_only=False).tolist() == [1, 0, 2, 3]
    assert ranking.queue(1).tolist() == [5]  # F
    assert ranking.queue(1, profitable_only=False).tolist() == [5, 4]
    assert ranking.profitable.tolist() == [True, True, True, False, False, True]
    with pytest.raises(InvalidInput):
        ranking.queue(0)


def test_unrankable_candidates_get_nan() -> None:
    scores = adl_scores([100.0, 100.0, 0.0], [0.0, 80.0, 50.0], [10.0, -5.0, 10.0])
    assert np.isnan(scores[0])  # zero entry value
    assert np.isnan(scores[1])  # non-positive equity: bankrupt itself
    assert scores[2] == -np.inf  # worthless losing position ranks last
    with pytest.raises(InvalidInput, match="shape"):
        rank_adl([1, 2], [1.0], [1.0, 2.0], [1.0, 2.0])


def test_bankrupt_long_is_closed_against_top_shorts_at_bankruptcy_price() -> None:
    # A bankrupt long of 12 at bankruptcy price 82 (mark 80): B closes 5, A closes 7 of its 10.
    # Premium settlement: B pays 5 x 82 = 410, A pays 7 x 82 = 574 to the bankrupt account.
    ledger = Ledger()
    result = auto_deleverage(
        ledger,
        bankrupt_account="account:X:USDC",
        quantity=D(12),
        bankruptcy_price=D(82),
        currency="USDC",
        accounts=ACCOUNTS,
        positions=[D(q) for q in QTY],
        mark_value=MARK_VALUE,
        entry_value=ENTRY_VALUE,
        equity=EQUITY,
        ref="adl-1",
    )
    assert [(f.account, f.quantity, f.cash) for f in result.fills] == [
        ("account:B:USDC", D(5), D(-410)),
        ("account:A:USDC", D(7), D(-574)),
    ]
    assert (result.filled, result.unfilled) == (D(12), D(0))
    assert ledger.balance("account:X:USDC", "USDC") == D(984)
    assert ledger.conservation_error("USDC") == 0
    assert all(t.ref == "adl-1" for t in result.transfers)


def test_variation_settled_close_moves_only_the_price_difference() -> None:
    # Perpetual marked at 80: only (82 - 80) per contract changes hands: B 10, A 14.
    ledger = Ledger()
    result = auto_deleverage(
        ledger,
        bankrupt_account="account:X:USDC",
        quantity=D(12),
        bankruptcy_price=D(82),
        settled_price=D(80),
        currency="USDC",
        accounts=ACCOUNTS,
        positions=[D(q) for q in QTY],
        mark_value=MARK_VALUE,
        entry_value=ENTRY_VALUE,
        equity=EQUITY,
    )
    assert [f.cash for f in result.fills] == [D(-10), D(-14)]
    assert ledger.balance("account:X:USDC", "USDC") == D(24)


def test_bankrupt_short_and_exhausted_queue() -> None:
    # A bankrupt short of 5 at 78 closes against F (long 2) only: F sells 2 at 78 and
    # receives 156; 3 remain unfilled.
    ledger = Ledger()
    result = auto_deleverage(
        ledger,
        bankrupt_account="account:X:USDC",
        quantity=D(-5),
        bankruptcy_price=D(78),
        currency="USDC",
        accounts=ACCOUNTS,
        positions=[D(q) for q in QTY],
        mark_value=MARK_VALUE,
        entry_value=ENTRY_VALUE,
        equity=EQUITY,
    )
    assert [(f.account, f.quantity, f.cash) for f in result.fills] == [
        ("account:F:USDC", D(-2), D(156))
    ]
    assert (result.filled, result.unfilled) == (D(2), D(3))
    assert ledger.balance("account:X:USDC", "USDC") == D(-156)


def test_auto_deleverage_validation() -> None:
    kwargs: dict[str, Any] = {
        "bankrupt_account": "account:X:USDC",
        "quantity": D(1),
        "bankruptcy_price": D(1),
        "currency": "USDC",
        "mark_value": [1.0],
        "entry_value": [1.0],
        "equity": [1.0],
    }
    with pytest.raises(InvalidInput, match="one entry per account"):
        auto_deleverage(Ledger(), accounts=["a"], positions=[], **kwargs)
    with pytest.raises(InvalidInput, match="bankrupt"):
        auto_deleverage(Ledger(), accounts=["account:X:USDC"], positions=[D(-1)], **kwargs)
    with pytest.raises(InvalidInput, match=r"decimal\.Decimal"):
        auto_deleverage(
            Ledger(),
            accounts=["a"],
            positions=[-1.0],  # type: ignore[list-item]
            **kwargs,
        )
