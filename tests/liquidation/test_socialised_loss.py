"""Socialised loss pro rata to profits: hand examples, cap and residue rule."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pmargin.errors import InvalidInput
from pmargin.liquidation import Ledger, socialise_loss, socialised_loss_shares

D = Decimal
Q = D("1E-8")  # USDC quantum


def test_pro_rata_to_positive_profits() -> None:
    # L = 100 over profits 300, 100, 0, -50, 600: sum of positive profits 1000,
    # shares 100 x 300/1000 = 30, 10, 0, 0, 60
    shares, unallocated = socialised_loss_shares(D(100), [D(300), D(100), D(0), D(-50), D(600)], Q)
    assert shares == [D(30), D(10), D(0), D(0), D(60)]
    assert unallocated == 0


def test_residue_goes_to_largest_remainders() -> None:
    # L = 10 quanta, profits 1 : 2 : 4 -> exact 10/7, 20/7, 40/7 = 1.43, 2.86, 5.71 quanta;
    # floors 1 + 2 + 5 = 8, the 2 residual quanta go to remainders 0.86 and 0.71 -> 1, 3, 6
    shares, unallocated = socialised_loss_shares(D("0.00000010"), [D(1), D(2), D(4)], Q)
    assert shares == [D("0.00000001"), D("0.00000003"), D("0.00000006")]
    assert sum(shares) == D("0.00000010")
    assert unallocated == 0


def test_loss_above_total_profit_is_capped_and_reported() -> None:
    # L = 1500 > 300 + 100 + 600 = 1000: every profit is taken, 500 is unallocated bad debt
    shares, unallocated = socialised_loss_shares(D(1500), [D(300), D(100), D(600)], Q)
    assert shares == [D(300), D(100), D(600)]
    assert unallocated == D(500)


def test_profits_are_floored_to_the_grid() -> None:
    # 0.123456789 USDC of profit can give at most 0.12345678
    shares, unallocated = socialised_loss_shares(D(1), [D("0.123456789")], Q)
    assert shares == [D("0.12345678")]
    assert unallocated == D("0.87654322")


def test_socialise_loss_posts_to_the_beneficiary() -> None:
    ledger = Ledger()
    winners = ["account:1:USDC", "account:2:USDC", "account:3:USDC"]
    for a in winners:
        ledger.opening(a, "USDC", D(1000))
    ledger.opening("account:9:USDC", "USDC", D(-100))  # bankrupt, uncovered
    result = socialise_loss(
        ledger,
        loss=D(100),
        currency="USDC",
        accounts=winners,
        profits=[D(300), D(100), D(600)],
        beneficiary="account:9:USDC",
        ref="sl-1",
    )
    assert result.shares == dict(zip(winners, [D(30), D(10), D(60)], strict=True))
    assert result.allocated == D(100)
    assert result.unallocated == 0
    assert ledger.balance("account:9:USDC", "USDC") == 0
    assert ledger.balance("account:1:USDC", "USDC") == D(970)
    assert ledger.conservation_error("USDC") == 0


def test_default_beneficiary_is_the_socialised_clearing_account() -> None:
    ledger = Ledger()
    ledger.opening("a", "BTC", D(1))
    result = socialise_loss(
        ledger, loss=D("0.5"), currency="BTC", accounts=["a"], profits=[D("0.2")]
    )
    assert result.beneficiary == "socialised:BTC"
    assert ledger.balance("socialised:BTC", "BTC") == D("0.2")
    assert result.unallocated == D("0.3")


def test_validation() -> None:
    with pytest.raises(InvalidInput, match="non-negative"):
        socialised_loss_shares(D(-1), [D(1)], Q)
    with pytest.raises(InvalidInput, match="multiple"):
        socialised_loss_shares(D("0.000000001"), [D(1)], Q)
    with pytest.raises(InvalidInput, match="repeat"):
        socialise_loss(
            Ledger(), loss=D(1), currency="USDC", accounts=["a", "a"], profits=[D(1), D(1)]
        )
    with pytest.raises(InvalidInput, match="beneficiary"):
        socialise_loss(
            Ledger(), loss=D(1), currency="USDC", accounts=["a"], profits=[D(1)], beneficiary="a"
        )
