"""Exact fill accounting against hand calculations; value at the fill price is conserved."""

from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from pmargin.instruments import parse_instrument
from pmargin.service.money import from_units, parse_decimal, to_units
from pmargin.service.positions import fill_effect

Q = D("0.00000001")
LINEAR = parse_instrument("BTC_USDC-PERPETUAL")
INVERSE = parse_instrument("BTC-PERPETUAL")
OPTION = parse_instrument("BTC-25SEP26-80000-C")


def test_linear_round_trip_realises_the_price_difference():
    # buy 2 at 100, sell 2 at 110: +20 USD realised, flat, no entry left
    a = fill_effect(LINEAR, D(0), D(0), D(2), D(100), Q)
    assert (a.quantity, a.entry, a.cash) == (D(2), D(200), D(0))
    b = fill_effect(LINEAR, a.quantity, a.entry, D(-2), D(110), Q)
    assert (b.quantity, b.entry, b.cash) == (D(0), D(0), D(20))


def test_linear_partial_reduce_and_flip():
    # long 4 at avg 100 (entry 400); sell 1 at 90: realised -10, entry 300 for 3 left
    r = fill_effect(LINEAR, D(4), D(400), D(-1), D(90), Q)
    assert (r.quantity, r.entry, r.cash) == (D(3), D(300), D(-10))
    # sell 5 at 120 from long 3 (entry 300): realise 3 x 20 = 60, new short 2 at 120
    f = fill_effect(LINEAR, D(3), D(300), D(-5), D(120), Q)
    assert (f.quantity, f.entry, f.cash) == (D(-2), D(-240), D(60))


def test_inverse_close_pays_coin_and_rounds_against_the_account():
    # long 1 BTC-notional of the inverse perpetual at 50,000, closed at 60,000:
    # coin P&L = q - e/p at exit: 1 - 50000/60000 = 1/6 BTC, floored to the satoshi
    a = fill_effect(INVERSE, D(0), D(0), D(1), D(50000), Q)
    b = fill_effect(INVERSE, a.quantity, a.entry, D(-1), D(60000), Q)
    assert b.quantity == 0
    assert b.cash == D("0.16666666")


def test_option_premium():
    r = fill_effect(OPTION, D(0), D(0), D("-0.5"), D("0.0425"), Q)
    assert (r.quantity, r.cash) == (D("-0.5"), D("0.02125"))


@given(q0=st.integers(-50, 50), dq=st.integers(-50, 50).filter(bool),
       p0=st.integers(1, 10_000), p=st.integers(1, 10_000))
def test_linear_fill_never_changes_value_at_the_fill_price(q0, dq, p0, p):
    q0, dq, p0, p = D(q0), D(dq), D(p0), D(p)
    e0 = q0 * p0
    r = fill_effect(LINEAR, q0, e0, dq, p, Q)
    before = q0 * p - e0
    after = r.quantity * p - r.entry + r.cash
    assert before == after


def test_money_grid():
    assert to_units(parse_decimal("1.5", "a"), Q, "a") == 150_000_000
    assert from_units(150_000_000, Q) == D("1.5")
    assert parse_decimal(0.1, "a") == D("0.1")
