"""Exact position accounting of fills: quantity, entry notional and realised cash.

A fill at price ``p`` never changes an account's value at ``p``: whatever the position loses in
value on a reduction or a flip is paid out as realised cash. Entry notionals follow the book
engine's rule (grow on adds, shrink in proportion on reductions, restart at the fill price on a
flip). Values at the fill price, per instrument kind:

* linear futures/perpetuals (USD settled): ``q p - e`` USD;
* inverse futures/perpetuals (coin settled): ``q - e / p`` coin;
* options: premium paid in the settlement currency (``quantity * price``), no entry notional.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from typing import NamedTuple

from pmargin.instruments import Instrument, InstrumentKind

__all__ = ["FillCash", "fill_effect"]


class FillCash(NamedTuple):
    """Result of a fill on one position."""

    quantity: Decimal
    """New signed quantity."""
    entry: Decimal
    """New entry notional ``sum q_k p_k`` (USD); 0 for options."""
    cash: Decimal
    """Cash to the account in ``inst.settlement_currency`` (negative = paid)."""


def _value(inst: Instrument, q: Decimal, e: Decimal, px: Decimal) -> Decimal:
    if inst.is_inverse:
        return q - e / px
    return q * px - e


def fill_effect(inst: Instrument, old_q: Decimal, old_e: Decimal, dq: Decimal, px: Decimal,
                quantum: Decimal) -> FillCash:
    """Apply a fill of ``dq`` at ``px`` to a position ``(old_q, old_e)``.

    Parameters
    ----------
    inst : Instrument
        The instrument.
    old_q, old_e : Decimal
        Current quantity and entry notional (USD).
    dq : Decimal
        Signed fill quantity (contracts of one coin for options, coin for futures).
    px : Decimal
        Fill price: per contract in the settlement currency for options (coin for inverse
        options, as Deribit quotes them; USDC for linear), USD per coin for futures.
    quantum : Decimal
        Minor unit of the settlement currency; inexact cash (inverse division) is floored to it,
        i.e. rounded against the account.

    Returns
    -------
    FillCash
        New quantity, entry notional and the account's cash flow.
    """
    new_q = old_q + dq
    if inst.kind is InstrumentKind.OPTION:
        cash = -(dq * px)
        return FillCash(new_q, Decimal(0), cash.quantize(quantum, rounding=ROUND_FLOOR))
    if old_q == 0 or (dq > 0) == (old_q > 0):
        new_e = old_e + dq * px
    elif abs(dq) <= abs(old_q):
        new_e = old_e * new_q / old_q
    else:
        new_e = new_q * px
    if new_q == 0:
        new_e = Decimal(0)
    cash = _value(inst, old_q, old_e, px) - _value(inst, new_q, new_e, px)
    return FillCash(new_q, new_e, cash.quantize(quantum, rounding=ROUND_FLOOR))
