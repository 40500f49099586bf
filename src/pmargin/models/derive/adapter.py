"""A pmargin account (one book row under one market) as the inputs of one Derive subaccount.

Mapping (see ``docs/models/derive-pm2.md``):

* **Underlying.** A PMRM_2 subaccount has one underlying (one manager per asset). It is the
  underlying of the account's positions; an account without positions uses its margin currency
  when that is a coin, and otherwise has none (all collateral is then valued statically).
  Positions in two underlyings are an input error.
* **Options** (inverse or linear alike: Derive values options in USD) keep strike, right and
  quantity; their expiry becomes seconds to expiry; ``MarkVol`` is the vol that reproduces the
  option's mark at the expiry forward (:func:`pmargin.pricing.implied_vol.implied_vol`, discount
  ``exp(-max(rate, 0) tau)``), or the surface vol where no vol does. One feed per expiry: the
  market's forward, the ``account.rate`` and the ``account.oracle_confidence``.
* **Perpetuals** of the underlying become Derive's perp: amount = net quantity (coin), price =
  the quantity-weighted mark, unrealised P&L = the position value pmargin gives them (USD).
* **Dated futures** do not exist in Derive. A future of ``q`` coins is margined as the synthetic
  forward Derive would hold for it: ``q`` calls long and ``q`` puts short at the expiry's forward
  ``F`` (value ``q (F - K) = 0``, linear in the forward whatever the vol, no naked short since
  call and put net at the strike), so it takes part in the expiry's scenario P&L, static
  discount and basis contingency. Its unrealised P&L (value against entry) is counted as cash.
* **Collateral**: the balance of ``account.cash_currency`` is ``Cash`` (may be negative); any
  other currency is a Derive collateral with the haircuts of ``account.collateral`` (the
  ``risk_cancelling`` pair when it is the underlying, ``static`` otherwise). A negative balance of
  a non-cash asset, or a currency without haircuts, is an input error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pmargin._typing import FloatArray, IntArray
from pmargin.errors import InvalidInput
from pmargin.market import MarketSnapshot
from pmargin.models.derive.params import DeriveAccountParams
from pmargin.models.derive.pm2 import (
    SECONDS_PER_YEAR,
    DeriveCollateral,
    DeriveExpiryFeed,
    DeriveOption,
    DerivePerp,
    DerivePM2Inputs,
)
from pmargin.models.valuation import KIND_FUTURE, KIND_OPTION, KIND_PERPETUAL, InstrumentTable
from pmargin.pricing.implied_vol import implied_vol

__all__ = ["DeriveColumns", "account_inputs", "derive_columns"]


@dataclass(frozen=True)
class DeriveColumns:
    """Per-column Derive data of a book's instruments under one market (computed once per tick).

    Attributes
    ----------
    table : InstrumentTable
        The book's instrument table.
    expiry_seconds : ndarray, shape (columns,)
        Seconds to expiry of options (0 when expired; 0 for other instruments).
    mark_vol : ndarray, shape (columns,)
        Derive ``MarkVol`` of options (0 for other instruments and expired options).
    forward : ndarray, shape (columns,)
        Forward of each option's or future's expiry feed (the index when expired), USD.
    """

    table: InstrumentTable
    expiry_seconds: FloatArray
    mark_vol: FloatArray
    forward: FloatArray


def derive_columns(table: InstrumentTable, account: DeriveAccountParams) -> DeriveColumns:
    """Derive expiry seconds, forwards and mark vols of every option column.

    Parameters
    ----------
    table : InstrumentTable
        Instrument table of the book's columns.
    account : DeriveAccountParams
        Account mapping (the feed rate).

    Returns
    -------
    DeriveColumns
        Arrays over the columns.
    """
    opt = table.kind == KIND_OPTION
    live = opt & ~table.expired
    dated = (opt | (table.kind == KIND_FUTURE)) & ~table.expired
    seconds = np.where(dated, table.tau, 0.0) * SECONDS_PER_YEAR
    tau = np.where(live, table.tau, 0.0)
    vol = np.zeros(table.n)
    if live.any():
        j = np.flatnonzero(live)
        df = np.exp(-max(account.rate, 0.0) * tau[j])
        solved = implied_vol(table.mark[j], table.forward[j], table.strike[j], tau[j],
                             table.is_call[j], df)
        vol[j] = np.where(solved.ok, solved.vol, table.vol[j])
    forward = np.where(dated, table.forward, table.index)
    return DeriveColumns(table, seconds, vol, forward)


def _single_underlying(table: InstrumentTable, cols: IntArray, margin_currency: str,
                       where: str) -> str | None:
    held = sorted({str(u) for u in table.underlying[cols]})
    if len(held) > 1:
        raise InvalidInput(f"{where}positions", held,
                           "Derive PMRM_2 margins one underlying per account (one portfolio "
                           "manager per asset); split the account")
    if held:
        return held[0]
    from pmargin.models.valuation import is_stable

    return None if is_stable(margin_currency) else margin_currency


def account_inputs(
    columns: DeriveColumns,
    market: MarketSnapshot,
    account: DeriveAccountParams,
    cols: IntArray,
    quantity: FloatArray,
    value_usd: FloatArray,
    currencies: Sequence[str],
    balances: FloatArray,
    margin_currency: str,
    where: str = "",
) -> DerivePM2Inputs:
    """Derive inputs of one account.

    Parameters
    ----------
    columns : DeriveColumns
        Output of :func:`derive_columns`.
    market : MarketSnapshot
        Market data (index and collateral prices).
    account : DeriveAccountParams
        Account mapping parameters.
    cols : ndarray of int, shape (n,)
        Book columns held by the account.
    quantity : ndarray, shape (n,)
        Signed quantities of those columns.
    value_usd : ndarray, shape (n,)
        pmargin's value of each position in USD (used for the perpetual's unrealised P&L).
    currencies : sequence of str
        Collateral currencies of the book.
    balances : ndarray, shape (len(currencies),)
        The account's balances.
    margin_currency : str
        Margin currency of the book.
    where : str
        Prefix of field names in error messages (``"accounts[3]."``).

    Returns
    -------
    DerivePM2Inputs
        One Derive subaccount.

    Raises
    ------
    InvalidInput
        For positions in two underlyings, a negative balance of a non-cash asset, or a
        collateral currency without haircuts.
    """
    t = columns.table
    keep = quantity != 0.0
    cols, quantity, value_usd = cols[keep], quantity[keep], value_usd[keep]
    underlying = _single_underlying(t, cols, margin_currency, where)
    conf = account.oracle_confidence
    spot = market.index_price(underlying) if underlying is not None else 1.0
    dated = (t.kind[cols] == KIND_OPTION) | (t.kind[cols] == KIND_FUTURE)
    feeds: dict[float, DeriveExpiryFeed] = {}
    options = []
    for j, q in zip(cols[dated], quantity[dated], strict=True):
        s = float(columns.expiry_seconds[j])
        if s not in feeds:
            feeds[s] = DeriveExpiryFeed(expiry_seconds=s, forward=float(columns.forward[j]),
                                        rate=account.rate, forward_confidence=conf,
                                        rate_confidence=conf, vol_confidence=conf)
        if t.kind[j] == KIND_OPTION:
            options.append(DeriveOption(expiry_seconds=s, strike=float(t.strike[j]),
                                        is_call=bool(t.is_call[j]), amount=float(q),
                                        mark_vol=float(columns.mark_vol[j])))
        else:  # synthetic forward at the feed's forward: worth 0, linear in the forward
            k = feeds[s].forward
            options.append(DeriveOption(expiry_seconds=s, strike=k, is_call=True,
                                        amount=float(q), mark_vol=0.0))
            options.append(DeriveOption(expiry_seconds=s, strike=k, is_call=False,
                                        amount=-float(q), mark_vol=0.0))
    perp_cols = t.kind[cols] == KIND_PERPETUAL
    perp = None
    if perp_cols.any():
        q = quantity[perp_cols]
        net = float(q.sum())
        exposure = float(q @ t.mark[cols[perp_cols]])
        price = exposure / net if net != 0.0 else spot
        perp = DerivePerp(amount=net, price=price, confidence=conf,
                          unrealised_pnl=float(value_usd[perp_cols].sum()))
    stable_price = market.collateral_price(account.cash_currency)
    fut = t.kind[cols] == KIND_FUTURE
    cash = float(value_usd[fut].sum()) / stable_price  # unrealised P&L of futures
    collaterals = []
    for c, b in zip(currencies, balances, strict=True):
        c = c.upper()
        if b == 0.0:
            continue
        if c == account.cash_currency:
            cash += float(b)
            continue
        fld = f"{where}collateral.{c}"
        if b < 0.0:
            raise InvalidInput(fld, float(b), f"Derive PMRM_2 lends only its cash asset "
                                              f"{account.cash_currency}; other balances must "
                                              "not be negative")
        rc = c == underlying
        mode = "risk_cancelling" if rc else "static"
        entry = account.collateral.get(c)
        h = getattr(entry, mode) if entry is not None else None
        if h is None:
            raise InvalidInput(fld, c, f"derive-pm2 has no {mode.replace('_', '-')} haircut "
                                       f"for {c} (parameter account.collateral.{c}.{mode})")
        collaterals.append(DeriveCollateral(amount=float(b), price=market.collateral_price(c),
                                            im_haircut=h.im_haircut, mm_haircut=h.mm_haircut,
                                            is_risk_cancelling=rc, confidence=conf, name=c))
    return DerivePM2Inputs(
        spot=spot,
        options=tuple(options),
        feeds=tuple(feeds.values()),
        collaterals=tuple(collaterals),
        perp=perp,
        cash=cash,
        spot_confidence=conf,
        stable_price=stable_price,
        stable_confidence=conf,
    )
