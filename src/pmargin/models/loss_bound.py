"""Largest possible loss of an option portfolio: the cap on any portfolio-margin requirement.

A portfolio whose loss is bounded (long options, debit spreads, butterflies, any structure whose
payoff at expiry is bounded below) can never lose more than its current value minus its lowest
possible payoff. No margin model may ask for more than that (issue 9.3): scenario P&L, roll and
delta add-ons and naked-short charges are estimates of a loss that here is known exactly.

Currently implemented
---------------------
* Per risk unit and account, per expiry: the payoff at expiry is piecewise linear in the
  underlying's price ``S`` in USD with kinks at the strikes held, so its minimum over
  ``S in (0, inf)`` is at a strike held or at one of the two ends:

  - ``S -> inf``: USD slope ``sum(q calls)``; negative means unbounded loss. In a coin-margined
    book the payoff is ``usd(S) / S``, whose limit is ``sum(q calls)`` coin.
  - ``S -> 0``: USD payoff ``sum(q_put K)``. In a coin-margined book ``usd(S) / S`` tends to
    ``-inf`` when that is negative (short puts lose unboundedly in coin), to ``+inf`` when
    positive, and to ``-sum(q puts)`` when it is exactly 0.

  ``loss = value at the mark - min payoff`` (margin currency, never below 0). The account's bound
  is the sum over its expiries (an upper bound of the loss of the whole, exact for one expiry).
* Any future or perpetual of the unit in the account, or an option on another coin in a
  coin-margined book, makes the bound infinite (no cap). Expired options are settled: no loss.

The bound is evaluated over the pairs of cells of each (account, expiry) block, i.e. ``O(sum of
block sizes squared)`` work, and only for accounts that hold options and no linear instrument of
the unit. This function is the specification (the NumPy path); with Numba the fused book pass
(:func:`pmargin.models._pm_kernels.book_pass`) computes the same bound, with the same sums in the
same order, while it traverses each account row for the scenario P&L (no second pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pmargin._typing import BoolArray, FloatArray, IntArray

__all__ = ["BoundTerms", "loss_bound"]


@dataclass(frozen=True)
class BoundTerms:
    """Per-column inputs of :func:`loss_bound` for the columns of one risk unit.

    Attributes
    ----------
    expiry : ndarray of int, shape (unit columns,)
        Expiry index of each option column within the unit; -1 for futures and perpetuals.
    n_expiries : int
        Number of expiries.
    strike : ndarray, shape (unit columns,)
        Strike, USD.
    is_call : ndarray of bool
        Option right.
    value : ndarray
        Value per unit held at the mark, margin currency.
    settled : ndarray of bool
        Expired columns (their value is fixed: no loss).
    coin_margin : bool
        True when the book is margined in the unit's coin (payoffs are ``usd(S) / S``).
    usd_per_mc : float
        USD per unit of margin currency for stablecoin margin (payoffs are ``usd(S) / usd_per_mc``);
        ``inf`` when the book is margined in another coin (no bound: ``bounded`` is False).
    bounded : bool
        Whether a finite bound exists at all for this unit's options in this book.
    """

    expiry: IntArray
    n_expiries: int
    strike: FloatArray
    is_call: BoolArray
    value: FloatArray
    settled: BoolArray
    coin_margin: bool
    usd_per_mc: float
    bounded: bool


def loss_bound(indptr: IntArray, indices: IntArray, data: FloatArray, colmap: IntArray,
               terms: BoundTerms, rows: IntArray) -> FloatArray:
    """Largest possible loss of the unit's positions of the given account rows.

    Parameters
    ----------
    indptr, indices, data : ndarray
        CSR arrays of the accounts' positions (book columns).
    colmap : ndarray of int
        Book column to unit column (-1 for other units).
    terms : BoundTerms
        Column inputs of the unit.
    rows : ndarray of int
        Rows to evaluate.

    Returns
    -------
    ndarray, shape (len(rows),)
        Bound in the margin currency, ``>= 0``; ``inf`` where the loss is not bounded.
    """
    n = rows.size
    out = np.zeros(n)
    if n == 0:
        return out
    if not terms.bounded:
        return np.full(n, np.inf)
    starts = indptr[rows]
    counts = indptr[rows + 1] - starts
    cell = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
    owner = np.repeat(np.arange(n), counts)
    k = colmap[indices[cell]]
    q = data[cell]
    mine = (k >= 0) & (q != 0.0)
    owner, k, q = owner[mine], k[mine], q[mine]
    live = ~terms.settled[k]
    linear = live & (terms.expiry[k] < 0)
    if linear.any():
        out[np.unique(owner[linear])] = np.inf
    keep = live & (terms.expiry[k] >= 0)
    owner, k, q = owner[keep], k[keep], q[keep]
    if owner.size == 0:
        return out
    # blocks: (account, expiry), cells sorted by block
    key = owner * terms.n_expiries + terms.expiry[k]
    order = np.argsort(key, kind="stable")
    key, owner, k, q = key[order], owner[order], k[order], q[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    size = np.diff(np.r_[first, key.size])
    block = np.repeat(np.arange(first.size), size)
    strike, call = terms.strike[k], terms.is_call[k]
    # payoff of every cell at every strike of its block (pairs i, j)
    rep = size[block]
    i = np.repeat(np.arange(key.size), rep)
    j = first[block][i] + (np.arange(int(rep.sum())) - np.repeat(np.cumsum(rep) - rep, rep))
    s = strike[j]
    usd = q[i] * np.where(call[i], np.maximum(s - strike[i], 0.0), np.maximum(strike[i] - s, 0.0))
    at_strikes = np.bincount(j, weights=usd, minlength=key.size)
    slope_inf = np.bincount(block, weights=np.where(call, q, 0.0), minlength=first.size)
    at_zero = np.bincount(block, weights=np.where(call, 0.0, q * strike), minlength=first.size)
    if terms.coin_margin:
        at_strikes = at_strikes / strike
        lowest = np.minimum.reduceat(at_strikes, first)
        lowest = np.minimum(lowest, slope_inf)  # limit S -> inf, coin
        scale = np.bincount(block, weights=np.abs(q) * strike, minlength=first.size)
        tol = 1e-12 * np.maximum(scale, 1.0)
        near0 = np.bincount(block, weights=np.where(call, 0.0, -q), minlength=first.size)
        lim0 = np.where(at_zero < -tol, -np.inf, np.where(at_zero > tol, np.inf, near0))
        lowest = np.minimum(lowest, lim0)
    else:
        lowest = np.minimum(np.minimum.reduceat(at_strikes, first), at_zero)
        calls = np.bincount(block, weights=np.where(call, np.abs(q), 0.0), minlength=first.size)
        # a slope below 0 beyond rounding (1e-12 of the calls held) is an unbounded loss
        lowest = np.where(slope_inf < -1e-12 * calls, -np.inf, lowest) / terms.usd_per_mc
    value = np.bincount(block, weights=q * terms.value[k], minlength=first.size)
    loss = np.maximum(value - lowest, 0.0)
    np.add.at(out, owner[first], loss)
    return out
