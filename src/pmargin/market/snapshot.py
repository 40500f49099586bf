"""Market snapshot: index prices, forward curves, vol surfaces, marks, quotes and collateral prices.

A :class:`MarketSnapshot` is immutable and fully validated at construction: every error names
the offending field (``market.index['BTC']``, ``market.instruments['BTC-28JUN24-65000-C'].mark_iv``)
and the value. Prices are in USD per unit of underlying throughout (option premiums, strikes,
forwards, futures marks, bids and asks); implied vols are decimals (0.55 = 55 %); times to expiry
are ACT/365 years measured in seconds (:func:`pmargin.conventions.year_fraction`).

See ``docs/market-data.md`` for the input formats and every interpolation and fallback rule.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import brentq

from pmargin._typing import FloatArray
from pmargin.conventions import year_fraction
from pmargin.errors import InvalidInput, MarketDataError, StaleMarketData, UnknownInstrument
from pmargin.instruments import LINEAR_QUOTES, Instrument, InstrumentKind, parse_instrument
from pmargin.market.curves import ForwardCurve
from pmargin.market.surface import MAX_VOL, Smile, VolSurface, check_vol
from pmargin.pricing import black76

__all__ = ["STABLECOINS", "MarketSnapshot", "Quote", "solve_implied_vol"]

STABLECOINS: frozenset[str] = frozenset(LINEAR_QUOTES)
"""Currencies worth 1 USD unless an explicit collateral price is given."""

_MIN_SOLVE_VOL = 1e-6


@dataclass(frozen=True, slots=True)
class Quote:
    """Market data of one instrument as supplied (every price in USD per unit of underlying).

    Parameters
    ----------
    mark_price : float, optional
        Mark: futures/perpetual price, or option premium (USD per option on one unit).
    mark_iv : float, optional
        Option mark implied vol (decimal).
    underlying_price : float, optional
        Option only: forward of the option's expiry that the mark and IV refer to.
    bid_price, ask_price : float, optional
        Best bid and ask (same units as ``mark_price``).
    open_interest, volume : float, optional
        Open interest and 24-hour volume in contracts (informative, for liquidity models).
    """

    mark_price: float | None = None
    mark_iv: float | None = None
    underlying_price: float | None = None
    bid_price: float | None = None
    ask_price: float | None = None
    open_interest: float | None = None
    volume: float | None = None


QUOTE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Quote))


@dataclass(frozen=True, slots=True)
class _OptionRow:
    name: str
    instrument: Instrument
    tau: float
    mark_price: float | None
    iv: float
    iv_solved: bool
    underlying_price: float | None
    forward: float
    bid: float | None
    ask: float | None
    open_interest: float | None
    volume: float | None


def _number(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise MarketDataError(field, value, "must be a number")
    v = float(value)
    if not math.isfinite(v):
        raise MarketDataError(field, value, "must be finite")
    return v


def _positive(field: str, value: Any) -> float:
    v = _number(field, value)
    if v <= 0.0:
        raise MarketDataError(field, value, "must be positive")
    return v


def _non_negative(field: str, value: Any) -> float:
    v = _number(field, value)
    if v < 0.0:
        raise MarketDataError(field, value, "must not be negative")
    return v


def check_time(value: Any, field: str = "market.valuation_time") -> datetime:
    """Parse and validate a UTC timestamp (ISO-8601 text or aware datetime).

    Parameters
    ----------
    value : str or datetime
        ``"2024-06-17T10:22:20.501Z"``, ``"...+00:00"`` or a datetime with a zero UTC offset.
    field : str
        Field named in errors.

    Returns
    -------
    datetime
        Aware datetime with ``tzinfo=UTC``.

    Raises
    ------
    MarketDataError
        If the value is not a timestamp, is naive, or has a non-zero UTC offset.
    """
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise MarketDataError(field, value, "is not an ISO-8601 timestamp") from exc
    elif isinstance(value, datetime):
        ts = value
    else:
        raise MarketDataError(field, value, "must be an ISO-8601 string or a datetime")
    offset = ts.utcoffset() if ts.tzinfo is not None else None
    if offset is None:
        raise MarketDataError(field, value,
                              "must be timezone-aware UTC (e.g. 2024-06-17T10:22:20Z); "
                              "a naive timestamp is ambiguous")
    if offset != timedelta(0):
        raise MarketDataError(field, value,
                              f"must be in UTC (offset +00:00 or Z), not UTC{ts.isoformat()[-6:]}; "
                              "convert it to UTC first")
    return ts.astimezone(UTC)


def solve_implied_vol(
    price: float, forward: float, strike: float, tau: float, is_call: bool,
    field: str = "mark_price",
) -> float:
    """Black-76 implied vol of an undiscounted USD option price (bracketed Brent solver).

    Parameters
    ----------
    price : float
        Option premium in USD per option on one unit of underlying.
    forward, strike : float
        Forward and strike in USD.
    tau : float
        Time to expiry in years (positive).
    is_call : bool
        Call or put.
    field : str
        Field named in errors.

    Returns
    -------
    float
        Implied vol in ``[1e-6, MAX_VOL]``, solved to about 1e-12.

    Raises
    ------
    MarketDataError
        If the price violates the no-arbitrage bounds ``intrinsic < price < F`` (call) or
        ``intrinsic < price < K`` (put), or implies a vol outside ``[1e-6, MAX_VOL]``.
    """
    intrinsic = max(forward - strike, 0.0) if is_call else max(strike - forward, 0.0)
    upper = forward if is_call else strike
    what = "call" if is_call else "put"
    if price < intrinsic:
        raise MarketDataError(
            field, price,
            f"is below the {what}'s intrinsic value {intrinsic:.10g} (forward {forward:.10g}, "
            f"strike {strike:.10g}): an arbitrage price, no implied volatility exists",
        )
    if price >= upper:
        raise MarketDataError(
            field, price,
            f"is at or above the {what}'s upper bound {upper:.10g} "
            f"({'forward' if is_call else 'strike'}): an arbitrage price",
        )

    def excess(vol: float) -> float:
        return float(black76.price(forward, strike, tau, vol, is_call)) - price

    if excess(MAX_VOL) < 0.0:
        raise MarketDataError(field, price,
                              f"implies a volatility above {MAX_VOL:g} ({MAX_VOL:.0%}); "
                              "is the price in USD per unit of underlying?")
    if excess(_MIN_SOLVE_VOL) > 0.0 or price <= intrinsic:
        raise MarketDataError(
            field, price,
            f"equals the intrinsic value {intrinsic:.10g}, so the implied volatility is zero; "
            "give mark_iv instead",
        )
    return float(brentq(excess, _MIN_SOLVE_VOL, MAX_VOL, xtol=1e-14, rtol=1e-13, maxiter=300))


def _median(values: list[float]) -> float:
    return values[0] if len(values) == 1 else float(statistics.median(values))


class MarketSnapshot:
    """Validated, immutable market data at one valuation time.

    Parameters
    ----------
    valuation_time : datetime or str
        Aware UTC datetime or ISO-8601 text with a ``Z``/``+00:00`` offset.
    index : mapping of str to float
        Index (spot) price in USD by currency, e.g. ``{"BTC": 65666.19}``. A stablecoin key
        (``USDC``) is read as that coin's USD price, like ``collateral_prices``.
    instruments : mapping of str to Quote or mapping, optional
        Market data by instrument name; a mapping may hold the keys of :class:`Quote`.
    collateral_prices : mapping of str to float, optional
        Explicit USD prices of collateral currencies (e.g. a de-pegged ``{"USDC": 0.98}``).
    vol_surfaces : mapping of str to VolSurface, optional
        Surfaces by underlying that replace the one built from option marks (e.g.
        ``VolSurface.flat(0.6)`` for an underlying without listed options).
    source : str, optional
        Where the data came from (informative).

    Raises
    ------
    MarketDataError
        On any non-finite or non-positive price, an absurd vol, an expired instrument, an option
        with neither ``mark_iv`` nor ``mark_price``, an instrument whose underlying has no index,
        an option price outside the no-arbitrage bounds, or a non-UTC valuation time.
        :class:`~pmargin.errors.StaleMarketData` (a subclass) for expired instruments.

    Notes
    -----
    * Forward curves: see :mod:`pmargin.market.curves`. The perpetual mark is the inverse
      ``{U}-PERPETUAL`` mark if given, else the linear ``{U}_USDC-PERPETUAL`` (or USDT) mark,
      else the index.
    * Vol surfaces: see :mod:`pmargin.market.surface`. A smile pillar is each option's
      ``mark_iv`` (or the IV solved from its ``mark_price``); when several options share an
      expiry and strike (call and put, inverse and linear) the out-of-the-money one (call if
      ``K >= F``) is used, then inverse before linear.
    """

    _frozen: bool

    def __init__(
        self,
        valuation_time: datetime | str,
        index: Mapping[str, float],
        instruments: Mapping[str, Quote | Mapping[str, Any]] | None = None,
        collateral_prices: Mapping[str, float] | None = None,
        *,
        vol_surfaces: Mapping[str, VolSurface] | None = None,
        source: str = "",
    ) -> None:
        vt = check_time(valuation_time)
        if not isinstance(index, Mapping):
            raise MarketDataError("market.index", index, "must be a mapping {currency: USD price}")
        if instruments is not None and not isinstance(instruments, Mapping):
            raise MarketDataError("market.instruments", instruments,
                                  "must be a mapping {instrument name: quote}")
        if collateral_prices is not None and not isinstance(collateral_prices, Mapping):
            raise MarketDataError("market.collateral_prices", collateral_prices,
                                  "must be a mapping {currency: USD price}")
        coll: dict[str, float] = {}
        idx: dict[str, float] = {}
        for ccy, px in index.items():
            c = str(ccy).strip().upper()
            field = f"market.index[{ccy!r}]"
            if c in STABLECOINS:
                coll[c] = _positive(field, px)
            else:
                idx[c] = _positive(field, px)
        for ccy, px in (collateral_prices or {}).items():
            coll[str(ccy).strip().upper()] = _positive(f"market.collateral_prices[{ccy!r}]", px)

        quotes: dict[str, Quote] = {}
        insts: dict[str, Instrument] = {}
        for raw_name, raw_quote in (instruments or {}).items():
            inst, q = self._check_instrument(raw_name, raw_quote, vt, idx)
            if inst.name in quotes:
                raise MarketDataError(f"market.instruments[{raw_name!r}]", raw_name,
                                      f"duplicates instrument {inst.name}")
            quotes[inst.name] = q
            insts[inst.name] = inst

        # Forward curves.
        futs: dict[str, dict[datetime, list[float]]] = {u: {} for u in idx}
        opt_fwds: dict[str, dict[datetime, list[float]]] = {u: {} for u in idx}
        perps: dict[str, dict[bool, float]] = {u: {} for u in idx}
        marks: dict[str, float] = {}
        for name, inst in insts.items():
            q = quotes[name]
            u = inst.underlying
            if inst.kind is InstrumentKind.OPTION:
                if q.underlying_price is not None:
                    assert inst.expiry is not None
                    opt_fwds[u].setdefault(inst.expiry, []).append(q.underlying_price)
                continue
            assert q.mark_price is not None
            marks[name] = q.mark_price
            if inst.kind is InstrumentKind.FUTURE:
                assert inst.expiry is not None
                futs[u].setdefault(inst.expiry, []).append(q.mark_price)
            elif inst.kind is InstrumentKind.PERPETUAL:
                perps[u].setdefault(inst.is_inverse, q.mark_price)
        curves: dict[str, ForwardCurve] = {}
        for u, s in idx.items():
            p = perps[u]
            perp = p.get(True, p.get(False))
            curves[u] = ForwardCurve(
                u, s, vt,
                futures={e: _median(v) for e, v in futs[u].items()},
                perpetual=perp,
                option_forwards={e: _median(v) for e, v in opt_fwds[u].items()},
            )

        # Option rows: forward, implied vol (given or solved).
        rows: dict[str, _OptionRow] = {}
        for name, inst in insts.items():
            if inst.kind is not InstrumentKind.OPTION:
                continue
            assert inst.expiry is not None
            assert inst.strike is not None
            q = quotes[name]
            tau = year_fraction(vt, inst.expiry)
            fwd = (q.underlying_price if q.underlying_price is not None
                   else curves[inst.underlying].forward(inst.expiry))
            if q.mark_iv is not None:
                iv, solved = q.mark_iv, False
            else:
                assert q.mark_price is not None
                iv = solve_implied_vol(q.mark_price, fwd, inst.strike, tau, inst.is_call,
                                       f"market.instruments[{name!r}].mark_price")
                solved = True
            rows[name] = _OptionRow(name, inst, tau, q.mark_price, iv, solved, q.underlying_price,
                                    fwd, q.bid_price, q.ask_price, q.open_interest, q.volume)

        # Vol surfaces from the option rows.
        by_exp: dict[str, dict[datetime, list[_OptionRow]]] = {u: {} for u in idx}
        for r in rows.values():
            assert r.instrument.expiry is not None
            by_exp[r.instrument.underlying].setdefault(r.instrument.expiry, []).append(r)
        surfaces: dict[str, VolSurface] = {}
        for u, exps in by_exp.items():
            smiles = [self._smile(exp, rs, curves[u].forward(exp)) for exp, rs in exps.items()]
            surfaces[u] = VolSurface(u, vt, smiles, curves[u])
        for u, surf in (vol_surfaces or {}).items():
            uu = str(u).upper()
            if uu not in idx:
                raise MarketDataError(f"market.index[{uu!r}]", None,
                                      f"is missing: vol_surfaces[{u!r}] needs the {uu} index")
            if not isinstance(surf, VolSurface):
                raise MarketDataError(f"market.vol_surfaces[{u!r}]", surf,
                                      "must be a VolSurface")
            surfaces[uu] = surf

        self._valuation_time = vt
        self._index = idx
        self._collateral = coll
        self._quotes = quotes
        self._instruments = insts
        self._marks = marks
        self._curves = curves
        self._rows = rows
        self._surfaces = surfaces
        self._explicit_surfaces = dict(vol_surfaces or {})
        self._source = source
        self._frozen = True

    # ------------------------------------------------------------------ construction helpers

    @staticmethod
    def _check_instrument(
        raw_name: str, raw_quote: Quote | Mapping[str, Any], vt: datetime, idx: Mapping[str, float]
    ) -> tuple[Instrument, Quote]:
        base = f"market.instruments[{raw_name!r}]"
        try:
            inst = parse_instrument(raw_name)
        except UnknownInstrument as exc:
            raise MarketDataError(base, raw_name,
                                  f"is not a valid instrument name: {exc.reason}") from exc
        if isinstance(raw_quote, Quote):
            given = {k: getattr(raw_quote, k) for k in QUOTE_FIELDS}
        elif isinstance(raw_quote, Mapping):
            unknown = sorted(set(map(str, raw_quote)) - set(QUOTE_FIELDS))
            if unknown:
                raise MarketDataError(f"{base}.{unknown[0]}", raw_quote[unknown[0]],
                                      f"unknown field; expected some of {', '.join(QUOTE_FIELDS)}")
            given = {k: raw_quote.get(k) for k in QUOTE_FIELDS}
        else:
            raise MarketDataError(base, raw_quote, "must be a mapping of mark_price, mark_iv, ...")
        u = inst.underlying
        if u not in idx:
            raise MarketDataError(f"market.index[{u!r}]", None,
                                  f"is missing: {base} needs the {u} index price")
        if inst.expiry is not None and inst.expiry <= vt:
            raise StaleMarketData(base, inst.expiry.isoformat(),
                                  f"expired at or before the valuation time {vt.isoformat()}")
        is_opt = inst.kind is InstrumentKind.OPTION
        vals: dict[str, float | None] = {}
        for key, v in given.items():
            if v is None:
                vals[key] = None
                continue
            fld = f"{base}.{key}"
            if key == "mark_iv":
                if not is_opt:
                    raise MarketDataError(fld, v, "applies to options only")
                vals[key] = check_vol(fld, _number(fld, v))
            elif key == "underlying_price":
                if not is_opt:
                    raise MarketDataError(fld, v, "applies to options only")
                vals[key] = _positive(fld, v)
            elif key == "mark_price" and not is_opt:
                vals[key] = _positive(fld, v)
            else:
                vals[key] = _non_negative(fld, v)
        bid, ask = vals["bid_price"], vals["ask_price"]
        if bid is not None and ask is not None and bid > ask:
            raise MarketDataError(f"{base}.bid_price", bid, f"is above the ask {ask!r}")
        if is_opt:
            if vals["mark_iv"] is None and vals["mark_price"] is None:
                raise MarketDataError(f"{base}.mark_iv", None,
                                      "option has neither mark_iv nor mark_price")
        elif vals["mark_price"] is None:
            raise MarketDataError(f"{base}.mark_price", None,
                                  f"is required for a {inst.kind.value}")
        return inst, Quote(**vals)

    @staticmethod
    def _smile(expiry: datetime, rows: list[_OptionRow], forward: float) -> Smile:
        best: dict[float, _OptionRow] = {}
        for r in sorted(rows, key=lambda r: (not _is_otm(r, forward), not r.instrument.is_inverse,
                                             r.name)):
            assert r.instrument.strike is not None
            best.setdefault(r.instrument.strike, r)
        strikes = sorted(best)
        return Smile(expiry, rows[0].tau, forward, np.array(strikes),
                     np.array([best[k].iv for k in strikes]))

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_frozen", False):
            raise AttributeError("MarketSnapshot is immutable; use bumped() for a changed copy")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return (f"MarketSnapshot({self._valuation_time.isoformat()}, "
                f"underlyings={list(self.underlyings)}, instruments={len(self._quotes)}, "
                f"options={len(self._rows)})")

    # ------------------------------------------------------------------ basic accessors

    @property
    def valuation_time(self) -> datetime:
        """Valuation time (aware UTC)."""
        return self._valuation_time

    @property
    def underlyings(self) -> tuple[str, ...]:
        """Underlyings with an index price, sorted."""
        return tuple(sorted(self._index))

    @property
    def source(self) -> str:
        """Where the data came from (file name or free text)."""
        return self._source

    @property
    def instrument_names(self) -> tuple[str, ...]:
        """Names of every instrument with market data, sorted."""
        return tuple(sorted(self._quotes))

    def _u(self, underlying: str) -> str:
        u = str(underlying).upper()
        if u not in self._index:
            raise MarketDataError(
                f"market.index[{u!r}]", None,
                f"no index price for underlying {u} (market has {', '.join(self.underlyings)})",
            )
        return u

    def index_price(self, underlying: str) -> float:
        """Index (spot) price in USD.

        Parameters
        ----------
        underlying : str
            Underlying coin.

        Returns
        -------
        float
            Index price.

        Raises
        ------
        MarketDataError
            If the market has no index for ``underlying``.
        """
        return self._index[self._u(underlying)]

    def forward_curve(self, underlying: str) -> ForwardCurve:
        """The :class:`ForwardCurve` of an underlying."""
        return self._curves[self._u(underlying)]

    def vol_surface(self, underlying: str) -> VolSurface:
        """The :class:`VolSurface` of an underlying (possibly empty: queries then fail)."""
        return self._surfaces[self._u(underlying)]

    def tau(self, expiry: datetime) -> float:
        """ACT/365 years from the valuation time to ``expiry``, floored at 0.

        Parameters
        ----------
        expiry : datetime
            Aware datetime.

        Returns
        -------
        float
            Time to expiry; 0 for an expiry at or before the valuation time.
        """
        return max(year_fraction(self._valuation_time, expiry), 0.0)

    def forward(self, underlying: str, expiry: datetime | None) -> float:
        """Forward price in USD of an expiry (``None``: the perpetual mark).

        Parameters
        ----------
        underlying : str
            Underlying coin.
        expiry : datetime or None
            Expiry; ``None`` for the perpetual.

        Returns
        -------
        float
            Forward from the curve (exact at pillars; the index at or before the valuation time).
        """
        return self._curves[self._u(underlying)].forward(expiry)

    def forwards(self, underlying: str, taus: ArrayLike) -> FloatArray:
        """Vectorised forwards by time to expiry (see :meth:`ForwardCurve.forwards`)."""
        return self._curves[self._u(underlying)].forwards(taus)

    def perpetual_mark(self, underlying: str) -> float:
        """Perpetual mark in USD (inverse, else linear perpetual, else the index)."""
        return self._curves[self._u(underlying)].perpetual_mark

    def implied_vol(self, underlying: str, expiry: datetime, strike: float) -> float:
        """Implied vol from the surface.

        Parameters
        ----------
        underlying : str
            Underlying coin.
        expiry : datetime
            Expiry.
        strike : float
            Strike in USD.

        Returns
        -------
        float
            Implied vol (decimal); exactly the pillar vol at a marked expiry and strike.

        Raises
        ------
        MarketDataError
            If the underlying is unknown or has no option marks.
        """
        k = float(strike)
        if not (math.isfinite(k) and k > 0.0):
            raise InvalidInput("strike", strike, "must be positive and finite")
        return self._surfaces[self._u(underlying)].vol_at(expiry, k)

    def implied_vols(self, underlying: str, expiries_tau: ArrayLike, strikes: ArrayLike
                     ) -> FloatArray:
        """Vectorised implied vols at the forward curve's forwards.

        Parameters
        ----------
        underlying : str
            Underlying coin.
        expiries_tau : array_like
            Times to expiry in years.
        strikes : array_like
            Strikes in USD (broadcast against ``expiries_tau``).

        Returns
        -------
        ndarray
            Implied vols with the broadcast shape.
        """
        u = self._u(underlying)
        t = np.asarray(expiries_tau, dtype=np.float64)
        return self._surfaces[u].vol(t, strikes, self._curves[u].forwards(t))

    # ------------------------------------------------------------------ instruments

    @staticmethod
    def _inst(instrument: Instrument | str) -> Instrument:
        return instrument if isinstance(instrument, Instrument) else parse_instrument(instrument)

    def has_mark(self, name: str | Instrument) -> bool:
        """Whether the market data holds an explicit mark for an instrument.

        Parameters
        ----------
        name : str or Instrument
            Instrument (names are canonicalised, so ``btc-perpetual`` works).

        Returns
        -------
        bool
            True for a future/perpetual/spot with ``mark_price``, or an option with
            ``mark_price`` or ``mark_iv``.
        """
        try:
            key = self._inst(name).name
        except UnknownInstrument:
            return False
        return key in self._quotes

    def instrument_vol(self, instrument: Instrument | str) -> float:
        """Implied vol of one option: its own mark IV, else the surface vol.

        An option with market data returns its ``mark_iv`` (given, or solved from its mark);
        any other option the surface vol at its expiry and strike.

        Parameters
        ----------
        instrument : Instrument or str
            An option.

        Returns
        -------
        float
            Implied vol (decimal).
        """
        inst = self._inst(instrument)
        row = self._rows.get(inst.name)
        if row is not None:
            return row.iv
        if not inst.is_option or inst.expiry is None or inst.strike is None:
            raise InvalidInput("instrument", inst.name, "is not an option")
        return self.implied_vol(inst.underlying, inst.expiry, inst.strike)

    def _check_live(self, inst: Instrument) -> None:
        if inst.expiry is not None and inst.expiry <= self._valuation_time:
            raise StaleMarketData(
                "instrument", inst.name,
                f"expired at {inst.expiry.isoformat()}, at or before the valuation time "
                f"{self._valuation_time.isoformat()}",
            )

    def model_price(self, instrument: Instrument | str) -> float:
        """Model value in USD per unit, ignoring explicit marks.

        Options: Black-76 (discount 1) at the forward curve's forward and the surface vol;
        futures: the forward curve; perpetuals: the perpetual mark; spot: the index.

        Parameters
        ----------
        instrument : Instrument or str
            Any live instrument.

        Returns
        -------
        float
            USD per unit of underlying.
        """
        inst = self._inst(instrument)
        u = self._u(inst.underlying)
        self._check_live(inst)
        if inst.kind is InstrumentKind.SPOT:
            return self._index[u]
        if inst.kind is InstrumentKind.PERPETUAL:
            return self._curves[u].perpetual_mark
        assert inst.expiry is not None
        fwd = self._curves[u].forward(inst.expiry)
        if inst.kind is InstrumentKind.FUTURE:
            return fwd
        assert inst.strike is not None
        vol = self._surfaces[u].vol_at(inst.expiry, inst.strike)
        return float(black76.price(fwd, inst.strike, self.tau(inst.expiry), vol, inst.is_call))

    def mark_price(self, instrument: Instrument | str) -> float:
        """Mark in USD per unit of underlying.

        Parameters
        ----------
        instrument : Instrument or str
            Any live instrument.

        Returns
        -------
        float
            Futures/perpetuals/spot: the explicit mark, else the forward curve (futures), the
            perpetual mark (perpetuals) or the index (spot). Options: the explicit
            ``mark_price``; else Black-76 at the option's own forward and mark IV when it has
            market data (``mark_iv`` only); else Black-76 at the curve forward and surface vol.

        Raises
        ------
        StaleMarketData
            If the instrument is expired at the valuation time.
        MarketDataError
            If its underlying has no index (or, for an unmarked option, no vol surface).
        """
        inst = self._inst(instrument)
        self._u(inst.underlying)
        self._check_live(inst)
        if inst.kind is not InstrumentKind.OPTION:
            m = self._marks.get(inst.name)
            return self.model_price(inst) if m is None else m
        row = self._rows.get(inst.name)
        if row is None:
            return self.model_price(inst)
        if row.mark_price is not None:
            return row.mark_price
        assert inst.strike is not None
        return float(black76.price(row.forward, inst.strike, row.tau, row.iv, inst.is_call))

    def quote(self, instrument: Instrument | str) -> tuple[float | None, float | None]:
        """Best bid and ask in USD per unit of underlying.

        Parameters
        ----------
        instrument : Instrument or str
            Any instrument.

        Returns
        -------
        tuple of (float or None, float or None)
            ``(bid, ask)``; None where the side is unknown (or the instrument has no data).
        """
        q = self._quotes.get(self._inst(instrument).name)
        return (None, None) if q is None else (q.bid_price, q.ask_price)

    @cached_property
    def option_marks(self) -> pd.DataFrame:
        """Loaded option rows, indexed by instrument name.

        Columns: ``underlying``, ``settlement`` (inverse/linear), ``expiry`` (UTC), ``tau``,
        ``strike``, ``is_call``, ``mark_price`` (USD, NaN if not given), ``mark_iv`` (given or
        solved), ``iv_solved``, ``underlying_price`` (NaN if not given), ``forward`` (forward the
        mark refers to), ``bid_price``/``ask_price`` (USD, NaN if absent), ``open_interest``,
        ``volume``. A fresh copy is not made on each access: do not modify it.
        """
        def f(x: float | None) -> float:
            return math.nan if x is None else x

        rs = sorted(self._rows.values(), key=lambda r: r.name)
        frame = pd.DataFrame({
            "underlying": [r.instrument.underlying for r in rs],
            "settlement": [r.instrument.settlement.value for r in rs],
            "expiry": pd.to_datetime([_expiry(r) for r in rs], utc=True),
            "tau": np.array([r.tau for r in rs], dtype=np.float64),
            "strike": np.array([r.instrument.strike for r in rs], dtype=np.float64),
            "is_call": np.array([r.instrument.is_call for r in rs], dtype=bool),
            "mark_price": np.array([f(r.mark_price) for r in rs], dtype=np.float64),
            "mark_iv": np.array([r.iv for r in rs], dtype=np.float64),
            "iv_solved": np.array([r.iv_solved for r in rs], dtype=bool),
            "underlying_price": np.array([f(r.underlying_price) for r in rs], dtype=np.float64),
            "forward": np.array([r.forward for r in rs], dtype=np.float64),
            "bid_price": np.array([f(r.bid) for r in rs], dtype=np.float64),
            "ask_price": np.array([f(r.ask) for r in rs], dtype=np.float64),
            "open_interest": np.array([f(r.open_interest) for r in rs], dtype=np.float64),
            "volume": np.array([f(r.volume) for r in rs], dtype=np.float64),
        }, index=pd.Index([r.name for r in rs], name="instrument"))
        return frame

    # ------------------------------------------------------------------ collateral

    def collateral_price(self, currency: str) -> float:
        """USD price of one unit of a collateral currency.

        Parameters
        ----------
        currency : str
            ``BTC``, ``ETH``, ``USDC``, ...

        Returns
        -------
        float
            An explicit collateral price if given; else the index of a coin; else 1.0 for
            ``USD``, ``USDC`` and ``USDT``.

        Raises
        ------
        MarketDataError
            For a currency with no price.
        """
        c = str(currency).strip().upper()
        if c in self._collateral:
            return self._collateral[c]
        if c in self._index:
            return self._index[c]
        if c in STABLECOINS:
            return 1.0
        known = sorted({*self._index, *self._collateral, *STABLECOINS})
        raise MarketDataError(f"market.collateral_prices[{c!r}]", currency,
                              f"unknown collateral currency: no index or explicit price "
                              f"(known: {', '.join(known)})")

    # ------------------------------------------------------------------ derived snapshots

    def bumped(self, spot_move: Mapping[str, float]) -> MarketSnapshot:
        """Snapshot with spot moves applied (for stress tests and P&L profiles).

        For each underlying ``U`` with move ``m``: the index, explicit collateral price of ``U``,
        every future and perpetual mark, every forward pillar and every option's
        ``underlying_price`` are multiplied by ``1 + m`` (basis rates unchanged). Implied vols
        are unchanged and sticky to strike: every option keeps its mark IV (given or solved)
        and the smiles are rebuilt from them at their strikes against the moved forwards.
        Option marks are recomputed with Black-76 from each option's mark IV and moved forward.
        Bids and asks of moved instruments are dropped (they would be stale). A move of exactly
        0 leaves the underlying untouched.

        Parameters
        ----------
        spot_move : mapping of str to float
            Relative move by underlying, e.g. ``{"BTC": -0.2}``; each ``> -1``.

        Returns
        -------
        MarketSnapshot
            A new snapshot at the same valuation time.

        Raises
        ------
        MarketDataError
            For an unknown underlying or a move that is not finite and above -1.
        """
        moves: dict[str, float] = {}
        for u, m in spot_move.items():
            uu = self._u(u)
            mv = _number(f"spot_move[{u!r}]", m)
            if mv <= -1.0:
                raise MarketDataError(f"spot_move[{u!r}]", m, "must be above -1 (-100 %)")
            if mv != 0.0:
                moves[uu] = 1.0 + mv
        if not moves:
            return self
        index = {u: s * moves.get(u, 1.0) for u, s in self._index.items()}
        coll = {c: p * moves.get(c, 1.0) for c, p in self._collateral.items()}
        quotes: dict[str, Quote] = {}
        for name, q in self._quotes.items():
            inst = self._instruments[name]
            fac = moves.get(inst.underlying)
            if fac is None:
                quotes[name] = q
            elif inst.kind is InstrumentKind.OPTION:
                quotes[name] = replace(
                    q, mark_price=None, mark_iv=self._rows[name].iv, bid_price=None,
                    ask_price=None,
                    underlying_price=None if q.underlying_price is None
                    else q.underlying_price * fac,
                )
            else:
                assert q.mark_price is not None
                quotes[name] = replace(q, mark_price=q.mark_price * fac, bid_price=None,
                                       ask_price=None)
        return MarketSnapshot(self._valuation_time, index, quotes, coll,
                              vol_surfaces=self._explicit_surfaces,
                              source=f"{self._source} bumped {dict(spot_move)}".strip())

    def to_dict(self) -> dict[str, Any]:
        """The market data in the JSON ``market`` format (explicit inputs only).

        Returns
        -------
        dict
            ``valuation_time``, ``index``, ``instruments`` and, if any, ``collateral_prices``;
            solved IVs and explicit ``vol_surfaces`` are not included.
        """
        out: dict[str, Any] = {
            "valuation_time": self._valuation_time.isoformat().replace("+00:00", "Z"),
            "index": dict(self._index),
            "instruments": {
                name: {k: getattr(q, k) for k in QUOTE_FIELDS if getattr(q, k) is not None}
                for name, q in self._quotes.items()
            },
        }
        if self._collateral:
            out["collateral_prices"] = dict(self._collateral)
        return out


def _expiry(row: _OptionRow) -> datetime:
    assert row.instrument.expiry is not None
    return row.instrument.expiry


def _is_otm(row: _OptionRow, forward: float) -> bool:
    assert row.instrument.strike is not None
    return row.instrument.is_call == (row.instrument.strike >= forward)
