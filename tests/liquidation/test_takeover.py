"""Liquidator takeover: price, reward, penalty (capped at what the account has)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pmargin.errors import InvalidInput
from pmargin.liquidation import InsuranceFund, Ledger, takeover

D = Decimal
ACC = "account:1:USDC"
LIQ1 = "liquidator:1:USDC"


def _setup(cash: Decimal, fund_balance: Decimal) -> tuple[Ledger, InsuranceFund]:
    ledger = Ledger()
    fund = InsuranceFund(ledger, "USDC")
    if fund_balance:
        fund.deposit(fund_balance)
    ledger.opening(ACC, "USDC", cash)
    return ledger, fund


# ----------------------------------------------------------------------------- takeover
def test_takeover_of_a_long_portfolio() -> None:
    # Value 1000: the liquidator pays 1000 - 2% x 1000 = 980; penalty 0.75% x 1000 = 7.5 to the fund
    ledger, fund = _setup(D(-900), D(0))
    result = takeover(
        ledger,
        account=ACC,
        liquidator=LIQ1,
        positions_value=D(1000),
        currency="USDC",
        fund=fund,
        ref="to-1",
    )
    assert (result.price, result.discount_amount, result.penalty) == (D(980), D(20), D("7.5"))
    assert ledger.balance(ACC, "USDC") == D(-900) + D(980) - D("7.5")
    assert fund.balance == D("7.5")
    assert ledger.conservation_error("USDC") == 0


def test_takeover_of_half_a_short_portfolio_without_fund() -> None:
    # Half of a -1000 short: value -500; the liquidator is paid 500 + 2% x 500 = 510;
    # the penalty 0.75% x 500 = 3.75 goes to fees:USDC. Cash 1100: the account keeps
    # 1100 - 510 - 500 = 90 >= 3.75, so the penalty is not capped.
    ledger, _ = _setup(D(1100), D(0))
    result = takeover(
        ledger,
        account=ACC,
        liquidator=LIQ1,
        positions_value=D(-1000),
        currency="USDC",
        fraction=D("0.5"),
    )
    assert (result.positions_value, result.price, result.penalty) == (D(-500), D(-510), D("3.75"))
    assert ledger.balance(LIQ1, "USDC") == D(510)
    assert ledger.balance("fees:USDC", "USDC") == D("3.75")
    with pytest.raises(InvalidInput):
        takeover(
            ledger,
            account=ACC,
            liquidator=LIQ1,
            positions_value=D(1),
            currency="USDC",
            fraction=D("1.5"),
        )
    with pytest.raises(InvalidInput):
        takeover(ledger, account=ACC, liquidator=ACC, positions_value=D(1), currency="USDC")


@pytest.mark.parametrize(
    ("cash", "penalty"),
    [
        # equity after the slice: cash - 510 (price) - 500 (the half kept) = cash - 1010
        (D(1012), D(2)),  # 2 left: the 3.75 penalty is capped at 2
        (D("1010.5"), D("0.5")),
        (D(1000), D(0)),  # bankrupt after the slice (-10 left): no penalty
        (D(900), D(0)),
    ],
)
def test_takeover_penalty_is_capped_at_what_the_account_has(
    cash: Decimal, penalty: Decimal
) -> None:
    ledger, fund = _setup(cash, D(0))
    result = takeover(
        ledger,
        account=ACC,
        liquidator=LIQ1,
        positions_value=D(-1000),
        currency="USDC",
        fraction=D("0.5"),
        fund=fund,
    )
    assert result.price == D(-510)
    assert result.penalty == penalty
    assert fund.balance == penalty
    assert ledger.balance(ACC, "USDC") == cash - 510 - penalty
    assert ledger.conservation_error("USDC") == 0
