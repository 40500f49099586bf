"""Insurance fund: penalties in, bankruptcy cover out up to the balance, history."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pmargin.errors import InvalidInput
from pmargin.liquidation import FundEventKind, InsuranceFund, Ledger

D = Decimal


def test_penalties_then_partial_bankruptcy_cover() -> None:
    ledger = Ledger()
    fund = InsuranceFund(ledger, "BTC")
    assert fund.account == "insurance_fund:BTC"
    fund.deposit(D("100"))  # Deribit seeded its fund with 100 BTC
    ledger.opening("account:1:BTC", "BTC", D("5"))
    fund.receive_penalty("account:1:BTC", D("0.75"), ref="liq-1")
    assert fund.balance == D("100.75")
    assert ledger.balance("account:1:BTC", "BTC") == D("4.25")

    ledger.opening("account:2:BTC", "BTC", D("-30"))
    cover = fund.cover_bankruptcy("account:2:BTC", ref="bk-2")  # deficit read from the ledger
    assert (cover.requested, cover.covered, cover.uncovered) == (D(30), D(30), D(0))
    assert ledger.balance("account:2:BTC", "BTC") == 0

    # a deficit larger than the fund: 70.75 covered, 29.25 reported
    cover = fund.cover_bankruptcy("account:3:BTC", D("100"), ref="bk-3")
    assert (cover.covered, cover.uncovered) == (D("70.75"), D("29.25"))
    assert fund.balance == 0
    assert fund.total_uncovered == D("29.25")

    # an empty fund pays nothing and posts nothing
    cover = fund.cover_bankruptcy("account:4:BTC", D("1"))
    assert cover.transfer is None
    assert cover.uncovered == D(1)

    kinds = [e.kind for e in fund.history]
    assert kinds == [
        FundEventKind.DEPOSIT,
        FundEventKind.PENALTY,
        FundEventKind.BANKRUPTCY,
        FundEventKind.BANKRUPTCY,
        FundEventKind.BANKRUPTCY,
    ]
    assert [e.sequence for e in fund.history] == [0, 1, 2, 3, 4]
    assert fund.history[3].balance_after == 0
    assert fund.history[1].ref == "liq-1"
    assert ledger.conservation_error("BTC") == 0


def test_cover_of_a_solvent_account_is_zero() -> None:
    ledger = Ledger()
    fund = InsuranceFund(ledger, "USDC")
    fund.deposit(D(10))
    ledger.opening("a", "USDC", D(5))
    cover = fund.cover_bankruptcy("a")
    assert cover.requested == 0
    assert cover.covered == 0
    assert fund.balance == D(10)


def test_pay_and_withdraw() -> None:
    ledger = Ledger()
    fund = InsuranceFund(ledger, "USDC")
    fund.deposit(D(10))
    cover = fund.pay("liquidator:1:USDC", D(4))
    assert cover.covered == D(4)
    assert fund.balance == D(6)
    fund.withdraw(D(6))
    assert fund.balance == 0
    with pytest.raises(InvalidInput, match="exceeds"):
        fund.withdraw(D(1))
    assert ledger.conservation_error("USDC") == 0


def test_invalid_amounts() -> None:
    fund = InsuranceFund(Ledger(), "USDC")
    with pytest.raises(InvalidInput, match="non-negative"):
        fund.deposit(D(-1))
    with pytest.raises(InvalidInput, match=r"decimal\.Decimal"):
        fund.receive_penalty("a", 1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="quantum"):
        fund.pay("a", D("0.000000001"))
