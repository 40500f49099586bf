"""Full revaluation of a book's columns under scenarios, and the loss-bound terms of columns.

The one place instruments are repriced for risk arrays (grid presets and the VaR/FHS model
alike), and the inputs of the loss bound that caps what any scenario model may charge.

A scenario moves the index, forwards and futures of one underlying by a relative ``move``, gives
every option a scenario vol and shifts time by the horizon. P&L is measured from the value equity
uses (the mark), so that a scenario with no move and no vol change shows only time decay.
"""

from __future__ import annotations

import numpy as np

from pmargin._typing import FloatArray, IntArray
from pmargin.market import MarketSnapshot
from pmargin.models.loss_bound import BoundTerms
from pmargin.models.valuation import KIND_OPTION, InstrumentTable, is_stable
from pmargin.pricing import black76

__all__ = ["bound_terms", "option_columns", "revalue"]


def option_columns(t: InstrumentTable, cols: IntArray) -> IntArray:
    """The option columns among ``cols`` (in order): the rows of a scenario-vol matrix."""
    return np.asarray(cols[t.kind[cols] == KIND_OPTION])


def revalue(t: InstrumentTable, cols: IntArray, move: FloatArray, sig_s: FloatArray,
            horizon_days: float, p_mc: FloatArray, p_mc0: float, unit: str,
            market: MarketSnapshot) -> FloatArray:
    """P&L per unit held, in the margin currency, of columns of one underlying under scenarios.

    Parameters
    ----------
    t : InstrumentTable
        Market inputs of the book's columns.
    cols : ndarray of int, shape (n,)
        Columns to revalue (all of underlying ``unit``).
    move : ndarray, shape (s,)
        Relative move of the index, forwards and futures in each scenario.
    sig_s : ndarray, shape (n_options, s)
        Scenario vol (decimal) of each option column (rows in the order of
        :func:`option_columns`).
    horizon_days : float
        Time shift of every scenario (days): options are repriced with ``tau - horizon``.
    p_mc : ndarray, shape (s,)
        USD price of the margin currency in each scenario.
    p_mc0 : float
        USD price of the margin currency now.
    unit : str
        The underlying.
    market : MarketSnapshot
        Market data (index price of ``unit``).

    Returns
    -------
    ndarray, shape (n, s)
        Unweighted P&L per unit held (margin currency); expired columns are zero (their
        settled value is fixed).
    """
    if cols.size == 0:
        return np.zeros((0, move.size))
    m = move[None, :]
    f = t.forward[cols][:, None]
    f_s = f * (1.0 + m)
    inv = t.inverse[cols][:, None]
    opt = t.kind[cols] == KIND_OPTION
    v_s = np.where(inv, 1.0 - f / f_s, f_s)          # futures and perpetuals
    v_0 = np.where(inv, 0.0, f)
    if opt.any():
        o = cols[opt]
        tau_s = np.maximum(t.tau[o] - horizon_days / 365.0, 0.0)[:, None]
        args = (f_s[opt], t.strike[o][:, None], tau_s, sig_s, t.is_call[o][:, None])
        inv_o = t.inverse[o][:, None]
        v_s[opt] = np.where(inv_o, black76.inverse_price(*args), black76.price(*args))
        # P&L from the mark, the value equity uses (not from Black-76 at the mark's vol)
        v_0 = np.broadcast_to(v_0, v_s.shape).copy()
        v_0[opt] = t.settle_value()[o][:, None]
    # conversion settlement currency -> margin currency under each scenario
    settle_s = np.where(inv, market.index_price(unit) * (1.0 + m), 1.0)
    settle_0 = np.where(inv, market.index_price(unit), 1.0)
    stable_px = t.settle_price[cols][:, None]
    settle_s = np.where(inv, settle_s, stable_px)
    settle_0 = np.where(inv, settle_0, stable_px)
    out = v_s * settle_s / p_mc[None, :] - v_0 * settle_0 / p_mc0
    out[t.expired[cols]] = 0.0
    return np.asarray(out)


def bound_terms(t: InstrumentTable, cols: IntArray, unit: str, mc: str, p_mc0: float
                ) -> BoundTerms:
    """Per-column inputs of the largest-possible-loss cap of one underlying's columns.

    The value at the mark (margin currency) and the payoff terms of each option column, from
    which :func:`pmargin.models.loss_bound.loss_bound` gives an account's largest possible loss
    (the cap every scenario model applies, issue 9.3).
    """
    opt = t.kind[cols] == KIND_OPTION
    keys, inv = np.unique(t.expiry_key[cols][opt], return_inverse=True)
    expiry = np.full(cols.size, -1, np.int64)
    expiry[opt] = inv.ravel()
    coin = mc == unit
    value = t.settle_value()[cols] * t.to_mc()[cols]
    return BoundTerms(expiry, int(keys.size), t.strike[cols], t.is_call[cols], value,
                      t.expired[cols], coin, p_mc0, coin or is_stable(mc))
