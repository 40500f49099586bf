"""Ledger: postings, atomicity, quantisation, exact conservation."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pmargin.errors import InvalidInput, ParamsError
from pmargin.liquidation import (
    EXTERNAL_DEPOSITS,
    Ledger,
    Transfer,
    account_id,
    allocate_pro_rata,
    exact_sum,
    fees_account,
    floor_to_quantum,
    insurance_fund_account,
    liquidator_account,
    load_ledger_params,
    socialised_account,
)

D = Decimal


def test_account_names() -> None:
    assert account_id(42, "BTC") == "account:42:BTC"
    assert insurance_fund_account("BTC") == "insurance_fund:BTC"
    assert fees_account("BTC") == "fees:BTC"
    assert liquidator_account(7, "BTC") == "liquidator:7:BTC"
    assert socialised_account("BTC") == "socialised:BTC"


def test_post_moves_money_from_debit_to_credit() -> None:
    ledger = Ledger()
    ledger.opening("account:1:BTC", "BTC", D("2"))
    ledger.post(Transfer("account:1:BTC", "fees:BTC", D("0.25"), "BTC", "fee"))
    assert ledger.balance("account:1:BTC", "BTC") == D("1.75")
    assert ledger.balance("fees:BTC", "BTC") == D("0.25")
    assert ledger.balance(EXTERNAL_DEPOSITS, "BTC") == D("-2")
    assert ledger.total("BTC") == 0
    assert ledger.conservation_error("BTC") == D(0)
    assert len(ledger) == 2
    assert ledger.accounts("BTC") == ("account:1:BTC", EXTERNAL_DEPOSITS, "fees:BTC")
    assert ledger.currencies() == ("BTC",)


def test_negative_opening_is_a_debt() -> None:
    ledger = Ledger()
    t = ledger.opening("account:1:USDC", "USDC", D("-5"))
    assert (t.debit, t.credit, t.amount) == ("account:1:USDC", EXTERNAL_DEPOSITS, D("5"))
    assert ledger.balance("account:1:USDC", "USDC") == D("-5")
    with pytest.raises(InvalidInput, match="non-zero"):
        ledger.opening("account:1:USDC", "USDC", D(0))


@pytest.mark.parametrize("amount", [0.1, 1, "1", True])
def test_non_decimal_amounts_are_rejected(amount: object) -> None:
    with pytest.raises(InvalidInput, match=r"decimal\.Decimal") as info:
        Transfer("a", "b", amount, "BTC", "x")  # type: ignore[arg-type]
    assert info.value.field == "transfer.amount"


@pytest.mark.parametrize("amount", [D(0), D(-1), D("NaN"), D("Infinity")])
def test_non_positive_or_non_finite_amounts_are_rejected(amount: Decimal) -> None:
    with pytest.raises(InvalidInput):
        Transfer("a", "b", amount, "BTC", "x")


def test_transfer_validation_of_names() -> None:
    with pytest.raises(InvalidInput, match="differ"):
        Transfer("a", "a", D(1), "BTC", "x")
    with pytest.raises(InvalidInput, match="non-empty"):
        Transfer("", "b", D(1), "BTC", "x")
    with pytest.raises(InvalidInput, match="non-empty"):
        Transfer("a", "b", D(1), "", "x")


def test_off_grid_amount_is_rejected_not_rounded() -> None:
    ledger = Ledger()
    # USDC quantum is 1e-8: 1e-9 is off the grid
    with pytest.raises(InvalidInput, match="quantum"):
        ledger.post(Transfer("a", "b", D("0.000000001"), "USDC", "x"))
    # BTC quantum is 1e-18
    ledger.post(Transfer("a", "b", D("1E-18"), "BTC", "x"))
    with pytest.raises(InvalidInput, match="quantum"):
        ledger.post(Transfer("a", "b", D("1E-19"), "BTC", "x"))
    assert ledger.quantize(D("0.000000015"), "USDC") == D("0.00000002")  # half-even up
    assert ledger.quantize(D("0.000000025"), "USDC") == D("0.00000002")  # half-even down
    assert ledger.quantum("USDC") == D("1E-8")
    assert ledger.quantum("ETH") == D("1E-18")


def test_post_many_is_atomic() -> None:
    ledger = Ledger()
    ledger.opening("a", "USDC", D(10))
    before = ledger.balances()
    good = Transfer("a", "b", D(3), "USDC", "x")
    bad = Transfer("a", "b", D("0.000000001"), "USDC", "x")  # off grid
    with pytest.raises(InvalidInput):
        ledger.post_many([good, bad])
    assert ledger.balances() == before
    assert len(ledger) == 1
    ledger.post_many([good, Transfer("b", "c", D(1), "USDC", "x")])
    assert ledger.balance("c", "USDC") == D(1)


def test_large_and_tiny_amounts_stay_exact() -> None:
    ledger = Ledger()
    ledger.opening("whale", "BTC", D("1000000000000"))  # 1e12 BTC
    ledger.move("whale", "dust", D("1E-18"), "BTC", "x")
    assert ledger.balance("whale", "BTC") == D("999999999999.999999999999999999")
    assert ledger.conservation_error("BTC") == 0


def test_precision_overflow_is_rejected_atomically() -> None:
    ledger = Ledger(load_ledger_params().model_copy(update={"decimal_precision": 28}))
    with pytest.raises(InvalidInput, match="precision"):  # 1e12 at 1e-18 needs 31 digits
        ledger.opening("a", "BTC", D("1000000000000"))
    ledger.opening("a", "BTC", D("9000000000"))
    ledger.opening("a", "BTC", D("9000000000"))  # 1.8e10: still exact (2 significant digits)
    # 17999999999.999999999999999999 would need 29 digits: the addition is refused, not rounded
    with pytest.raises(InvalidInput, match="precision"):
        ledger.post_many(
            [Transfer("a", "c", D(1), "BTC", "x"), Transfer("a", "b", D("1E-18"), "BTC", "x")]
        )
    assert ledger.balance("a", "BTC") == D("18000000000")
    assert ledger.balance("c", "BTC") == 0
    assert ledger.conservation_error("BTC") == 0


def test_balances_and_replay_agree() -> None:
    ledger = Ledger()
    ledger.opening("a", "BTC", D(3))
    ledger.opening("a", "USDC", D(3))
    ledger.move("a", "b", D(1), "BTC", "x")
    assert ledger.balances("BTC") == {
        ("a", "BTC"): D(2),
        ("b", "BTC"): D(1),
        (EXTERNAL_DEPOSITS, "BTC"): D(-3),
    }
    assert ledger.replay("BTC") == {"a": D(2), "b": D(1), EXTERNAL_DEPOSITS: D(-3)}
    assert ledger.summary() == {"BTC": D(0), "USDC": D(0)}


def test_conservation_error_detects_a_corrupted_cache() -> None:
    ledger = Ledger()
    ledger.opening("a", "BTC", D(1))
    ledger._balances[("a", "BTC")] = D(2)  # simulate a bug
    assert ledger.conservation_error("BTC") == D(2)  # |sum| = 1, drift = 1


def test_bad_params_file_fails_loudly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "ledger.toml"
    path.write_text('name = "x"\nsource = "y"\ndecimal_precision = 60\ndefault_quantum = 3e-8\n')
    with pytest.raises(ParamsError, match="power of ten"):
        load_ledger_params(path)
    path.write_text(
        'name = "x"\nsource = "y"\ndecimal_precision = 60\ndefault_quantum = 1e-8\ntypo = 1\n'
    )
    with pytest.raises(ParamsError, match="typo"):
        load_ledger_params(path)


# ----------------------------------------------------------------------------- pro-rata split
def test_allocate_pro_rata_largest_remainder() -> None:
    q = D("1E-8")
    # 10 quanta over weights 1:2:4 -> exact 1.43, 2.86, 5.71 quanta; floors 1, 2, 5 (sum 8);
    # the 2 residual quanta go to the largest remainders (0.86 then 0.71) -> 1, 3, 6
    assert allocate_pro_rata(D("0.00000010"), [D(1), D(2), D(4)], q) == [
        D("0.00000001"),
        D("0.00000003"),
        D("0.00000006"),
    ]
    # equal remainders: the lowest index wins -> 4, 3, 3 quanta
    assert allocate_pro_rata(D("0.00000010"), [D(1), D(1), D(1)], q) == [
        D("0.00000004"),
        D("0.00000003"),
        D("0.00000003"),
    ]
    assert allocate_pro_rata(D(0), [D(0), D(0)], q) == [D(0), D(0)]
    with pytest.raises(InvalidInput, match="all be zero"):
        allocate_pro_rata(D(1), [D(0)], q)
    with pytest.raises(InvalidInput, match="multiple"):
        allocate_pro_rata(D("0.000000001"), [D(1)], q)
    with pytest.raises(InvalidInput, match="non-negative"):
        allocate_pro_rata(D(1), [D(-1), D(2)], q)


def test_exact_sum_ignores_context_precision() -> None:
    values = [D("1000000000000"), D("1E-18"), D("-0.5"), D("2.50")]
    assert exact_sum(values) == D("1000000000002.000000000000000001")
    assert exact_sum([]) == 0
    assert exact_sum([D("1.5"), D("-1.5")]) == 0


def test_floor_to_quantum() -> None:
    assert floor_to_quantum(D("0.123456789"), D("1E-8")) == D("0.12345678")
    assert floor_to_quantum(D("-0.123456781"), D("1E-8")) == D("-0.12345679")
    assert floor_to_quantum(D("12345678901234567890.123456789"), D("1E-18")) == D(
        "12345678901234567890.123456789"
    )


@example(total_units=10**28 + 1, weights=[0, 1], exponent=-18)  # 47 digits: exactness matters
@given(
    total_units=st.integers(min_value=0, max_value=10**30),
    weights=st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=12),
    exponent=st.sampled_from([-18, -8, 0]),
)
def test_allocate_pro_rata_properties(total_units: int, weights: list[int], exponent: int) -> None:
    if sum(weights) == 0:
        weights[0] = 1
    q = D(f"1E{exponent}")
    total = D(f"{total_units}E{exponent}")
    shares = allocate_pro_rata(total, [D(w) for w in weights], q)
    assert sum((Fraction(s) for s in shares), Fraction(0)) == Fraction(total)  # exact
    w_sum = sum(weights)
    for s, w in zip(shares, weights, strict=True):
        assert s >= 0
        assert floor_to_quantum(s, q) == s
        exact = Fraction(total) * w / w_sum
        assert abs(Fraction(s) - exact) < Fraction(q)  # within one quantum of the exact share
