"""Instrument table: per-instrument market inputs and base values, shared by every model.

Built once per market update for the columns of a book; everything downstream is arrays.

Currency conversion rule: a value ``V`` in an instrument's settlement currency is worth
``V * P_settle / P_mc`` in the margin currency, where ``P`` are USD prices. A coin-margined book
may only hold instruments settled in its own coin (Deribit S:SM / S:PM); a stablecoin-margined
book may hold anything (inverse instruments are converted at the coin's index price).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from pmargin._typing import BoolArray, FloatArray, IntArray
from pmargin.errors import InvalidInput
from pmargin.instruments import LINEAR_QUOTES, Instrument, InstrumentKind
from pmargin.market import MarketSnapshot
from pmargin.pricing import black76

__all__ = ["KIND_FUTURE", "KIND_OPTION", "KIND_PERPETUAL", "InstrumentTable", "build_table",
           "is_stable"]

KIND_FUTURE, KIND_PERPETUAL, KIND_OPTION = 0, 1, 2


def is_stable(currency: str) -> bool:
    """Whether a currency is a USD stablecoin (or USD itself)."""
    return currency in LINEAR_QUOTES


@dataclass(frozen=True)
class InstrumentTable:
    """Struct of arrays describing the instruments of a book under one market snapshot.

    Attributes
    ----------
    instruments : list of Instrument
        Columns.
    underlying : ndarray of str
        Underlying coin per column.
    kind : ndarray of int
        ``KIND_FUTURE``, ``KIND_PERPETUAL`` or ``KIND_OPTION``.
    inverse : ndarray of bool
        Coin-settled.
    index : ndarray
        Index (spot) price of the underlying, USD.
    forward : ndarray
        Forward of the expiry (options, futures) or perpetual mark, USD.
    strike, tau, vol : ndarray
        Option strike (USD), time to expiry (years), implied vol (0 for non-options).
    is_call : ndarray of bool
        Option right.
    mark : ndarray
        Market mark in USD per unit of underlying (options: premium; futures: price).
    expiry_key : ndarray of int
        Expiry as Unix seconds; -1 for perpetuals.
    settle_price : ndarray
        USD price of the settlement currency.
    mc_price : float
        USD price of the margin currency.
    margin_currency : str
        Margin currency of the book.
    expired : ndarray of bool
        Instruments past expiry at the valuation time, present only when settlement was asked
        for (``market.policy.settle_expired``): valued at their settlement value against the
        market's settlement price (options at intrinsic, futures at the price) and carrying no
        scenario risk and no margin until the position is settled and removed.
    priced_by : ndarray of str
        How each column is valued (:meth:`MarketSnapshot.priced_by`): ``"market"``,
        ``"index"``, ``"model"`` (unlisted, priced from curve and surface: opt-in) or
        ``"settlement"`` (expired: opt-in).
    """

    instruments: list[Instrument]
    underlying: np.ndarray
    kind: IntArray
    inverse: BoolArray
    index: FloatArray
    forward: FloatArray
    strike: FloatArray
    tau: FloatArray
    vol: FloatArray
    is_call: BoolArray
    mark: FloatArray
    expiry_key: IntArray
    settle_price: FloatArray
    mc_price: float
    margin_currency: str
    expired: BoolArray
    priced_by: np.ndarray

    @property
    def n(self) -> int:
        """Number of instruments."""
        return len(self.instruments)

    def _memo(self, key: str, fn: Callable[[], Any]) -> Any:
        # Per-column arrays are computed once per table (a table is immutable).
        cache: dict[str, Any] = self.__dict__.setdefault("_cache", {})
        if key not in cache:
            cache[key] = fn()
        return cache[key]

    def settle_value(self) -> FloatArray:
        """Mark value per unit in the settlement currency (options only; 0 for futures).

        Returns
        -------
        ndarray
            Inverse options: coin price ``mark / F``; linear options: USD mark.
        """
        def calc() -> FloatArray:
            opt = self.kind == KIND_OPTION
            v = np.where(self.inverse, self.mark / self.forward, self.mark)
            return np.where(opt, v, 0.0)

        return self._memo("settle_value", calc)  # type: ignore[no-any-return]

    def to_mc(self) -> FloatArray:
        """Base conversion factor from settlement currency to margin currency."""
        return self._memo("to_mc", lambda: self.settle_price / self.mc_price)  # type: ignore[no-any-return]

    def coin_delta(self) -> FloatArray:
        """Delta in coin per unit held, the exposure the roll and delta shocks use.

        Futures and perpetuals: 1 (quantities are coin notional). Linear options: forward delta
        ``N(d1)`` (or ``N(d1) - 1``). Inverse options: Deribit's net transaction delta
        ``N(d1) - mark_coin``.
        """
        def calc() -> FloatArray:
            opt = self.kind == KIND_OPTION
            args = (self.forward, self.strike, self.tau, self.vol, self.is_call)
            d = np.where(self.inverse, black76.inverse_delta(*args), black76.delta(*args))
            live = np.where(opt, d, 1.0)
            return np.where(self.expired, 0.0, live)

        return self._memo("coin_delta", calc)  # type: ignore[no-any-return]

    def greeks(self) -> dict[str, FloatArray]:
        """Per-unit Greeks in USD terms (delta in coin, gamma per USD, vega per vol point).

        Returns
        -------
        dict
            ``delta`` (coin), ``gamma`` (coin per USD), ``vega`` (USD per 1 vol point),
            ``theta`` (USD per day).
        """
        def calc() -> dict[str, FloatArray]:
            opt = self.kind == KIND_OPTION
            args = (self.forward, self.strike, self.tau, self.vol, self.is_call)
            return {
                "delta": self.coin_delta(),
                "gamma": np.where(opt, black76.gamma(*args), 0.0),
                "vega": np.where(opt, black76.vega(*args) / 100.0, 0.0),
                "theta": np.where(opt, black76.theta(*args) / 365.0, 0.0),
            }

        return self._memo("greeks", calc)  # type: ignore[no-any-return]


def build_table(
    instruments: Sequence[Instrument], market: MarketSnapshot, margin_currency: str
) -> InstrumentTable:
    """Collect market inputs of every instrument.

    Parameters
    ----------
    instruments : sequence of Instrument
        Book columns.
    market : MarketSnapshot
        Market data.
    margin_currency : str
        Margin currency of the book.

    Returns
    -------
    InstrumentTable
        Arrays aligned with ``instruments``.

    Raises
    ------
    InvalidInput
        If an instrument is not allowed in a book of this margin currency.
    UnknownInstrument
        If the market does not list an instrument and ``market.policy.price_unlisted`` is off.
    StaleMarketData
        If an instrument is expired and settlement was not asked for (or has no settlement
        price in the market).
    """
    n = len(instruments)
    und = np.empty(n, dtype=object)
    kind = np.zeros(n, np.int64)
    inverse = np.zeros(n, bool)
    index = np.zeros(n)
    fwd = np.zeros(n)
    strike = np.ones(n)
    tau = np.zeros(n)
    vol = np.zeros(n)
    is_call = np.zeros(n, bool)
    mark = np.zeros(n)
    exp_key = np.full(n, -1, np.int64)
    settle_px = np.ones(n)
    expired = np.zeros(n, bool)
    priced_by = np.empty(n, dtype=object)
    mc_stable = is_stable(margin_currency)
    mc_price = market.collateral_price(margin_currency)
    # per-underlying and per-expiry inputs, asked of the market once per call (the same values:
    # the market does not change during the call)
    index_px, settle = cache(market.index_price), cache(market.collateral_price)
    tau_at, forward = cache(market.tau), cache(market.forward)

    for j, inst in enumerate(instruments):
        fld = f"positions[{inst.name}]"
        if inst.kind is InstrumentKind.SPOT:
            raise InvalidInput(fld, inst.name, "spot holdings belong in collateral")
        if not mc_stable and (not inst.is_inverse or inst.underlying != margin_currency):
            raise InvalidInput(
                fld, inst.name,
                f"a {margin_currency}-margined account holds only {margin_currency} inverse "
                "instruments; use a USDC-margined account for anything else",
            )
        how = priced_by[j] = market.priced_by(inst)
        und[j] = inst.underlying
        inverse[j] = inst.is_inverse
        index[j] = index_px(inst.underlying)
        settle_px[j] = settle(inst.settle_currency)
        if inst.kind is InstrumentKind.PERPETUAL:
            kind[j] = KIND_PERPETUAL
            fwd[j] = forward(inst.underlying, None)
            mark[j] = fwd[j]
            continue
        assert inst.expiry is not None
        exp_key[j] = int(inst.expiry.timestamp())
        t = tau_at(inst.expiry)
        if how == "settlement":
            expired[j] = True
            fwd[j] = market.settlement_price(inst.underlying, inst.expiry)
            mark[j] = market.mark_price(inst)
            kind[j] = KIND_OPTION if inst.is_option else KIND_FUTURE
            if inst.is_option:
                assert inst.strike is not None
                strike[j] = inst.strike
                is_call[j] = inst.is_call
            continue
        tau[j] = t
        fwd[j] = forward(inst.underlying, inst.expiry)
        mark[j] = market.mark_price(inst)
        if inst.kind is InstrumentKind.FUTURE:
            kind[j] = KIND_FUTURE
            fwd[j] = mark[j]
        else:
            kind[j] = KIND_OPTION
            assert inst.strike is not None
            strike[j] = inst.strike
            is_call[j] = inst.is_call
            vol[j] = market.implied_vol(inst.underlying, inst.expiry, inst.strike)
    return InstrumentTable(list(instruments), und, kind, inverse, index, fwd, strike, tau, vol,
                           is_call, mark, exp_key, settle_px, mc_price, margin_currency, expired,
                           priced_by)
