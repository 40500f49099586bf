"""Market snapshot: index prices, forward curves, vol surfaces, marks, quotes and collateral prices.

A :class:`MarketSnapshot` is immutable and fully validated at construction: every error names
the offending field (``market.index['BTC']``, ``market.instruments['BTC-28JUN24-65000-C'].mark_iv``)
and the value. Prices are in USD per unit of underlying throughout (option premiums, strikes,
forwards, futures marks, bids and asks); implied vols are decimals (0.55 = 55 %); times to expiry
are ACT/365 years measured in seconds (:func:`pmargin.conventions.year_fraction`).

The pieces live in their own modules: timestamps (:mod:`~pmargin.market.timestamps`), one
instrument's quote and its validation (:mod:`~pmargin.market.quotes`), implied vols of prices
(:mod:`~pmargin.market.implied_vols`), curve, option-row and surface building
(:mod:`~pmargin.market.building`) and the valuation policy (:mod:`~pmargin.market.policy`).
This module holds the snapshot and its accessors.

See ``docs/market-data.md`` for the input formats and every interpolation and fallback rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from pmargin._typing import FloatArray

if TYPE_CHECKING:
    import pandas as pd
from pmargin.conventions import year_fraction
from pmargin.errors import InvalidInput, MarketDataError, StaleMarketData, UnknownInstrument
from pmargin.instruments import Instrument, InstrumentKind, format_expiry, parse_instrument
from pmargin.market.building import (
    build_curves,
    build_option_rows,
    build_surfaces,
    explicit_marks,
)
from pmargin.market.curves import ForwardCurve
from pmargin.market.implied_vols import solve_implied_vol
from pmargin.market.policy import (
    PricedBy,
    ValuationPolicy,
    check_age,
    parse_settlement_prices,
    to_max_age,
)
from pmargin.market.quotes import QUOTE_FIELDS, STABLECOINS, Quote, check_instrument
from pmargin.market.surface import VolSurface
from pmargin.market.timestamps import check_time
from pmargin.pricing import black76
from pmargin.validation import finite_number, nearest, positive_number

__all__ = ["STABLECOINS", "MarketSnapshot", "Quote", "check_time", "solve_implied_vol"]


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
        Market data by instrument name, prices in USD; a mapping may hold the keys of
        :class:`Quote`. These are the listed instruments.
    collateral_prices : mapping of str to float, optional
        Explicit USD prices of collateral currencies (e.g. a de-pegged ``{"USDC": 0.98}``).
    vol_surfaces : mapping of str to VolSurface, optional
        Surfaces by underlying that replace the one built from option marks (e.g.
        ``VolSurface.flat(0.6)`` for an underlying without listed options).
    source : str, optional
        Where the data came from (informative).
    settlement_prices : mapping of str to float, optional
        USD settlement prices of past expiries, ``{"BTC-14JUN24": 66012.5}`` (used only with
        ``policy.settle_expired``).
    index_perpetuals : iterable of str, optional
        Underlyings whose inverse perpetual ``{U}-PERPETUAL`` is listed by construction with
        mark = index (a Deribit chain CSV has no perpetual row); reported as
        ``priced_by = "index"``.
    data_time : datetime or str, optional
        When the data was observed (default: ``valuation_time``); at most ``max_age`` before
        ``valuation_time`` and not after it.
    max_age : timedelta or float, optional
        Largest age of the data in seconds (default: ``market_data.toml``).
    policy : ValuationPolicy, optional
        Opt-ins for unlisted and expired instruments (default: neither).
    mark_unit : str, optional
        Must be ``"USD"``: the constructor takes USD prices (loaders convert coin prices).

    Raises
    ------
    MarketDataError
        On any non-finite or non-positive price, an absurd vol, an expired instrument, an option
        with neither ``mark_iv`` nor ``mark_price``, an instrument whose underlying has no index,
        an option price outside the no-arbitrage bounds, or a non-UTC valuation time.
        :class:`~pmargin.errors.StaleMarketData` (a subclass) for expired instruments and data
        older than ``max_age``.

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
        settlement_prices: Mapping[str, float] | None = None,
        index_perpetuals: Iterable[str] = (),
        data_time: datetime | str | None = None,
        max_age: timedelta | float | None = None,
        policy: ValuationPolicy | None = None,
        mark_unit: str = "USD",
    ) -> None:
        vt = check_time(valuation_time)
        if mark_unit != "USD":
            raise MarketDataError("market.mark_unit", mark_unit,
                                  "MarketSnapshot takes USD prices; load coin prices with "
                                  "load_market_json, which converts them")
        dt = vt if data_time is None else check_time(data_time, "market.data_time")
        age = to_max_age(max_age)
        check_age(dt, vt, age)
        if not isinstance(index, Mapping):
            raise MarketDataError("market.index", index, "must be a mapping {currency: USD price}")
        if instruments is not None and not isinstance(instruments, Mapping):
            raise MarketDataError("market.instruments", instruments,
                                  "must be a mapping {instrument name: quote}")
        if collateral_prices is not None and not isinstance(collateral_prices, Mapping):
            raise MarketDataError("market.collateral_prices", collateral_prices,
                                  "must be a mapping {currency: USD price}")
        if settlement_prices is not None and not isinstance(settlement_prices, Mapping):
            raise MarketDataError("market.settlement_prices", settlement_prices,
                                  "must be a mapping {expiry like 'BTC-14JUN24': USD price}")
        if policy is not None and not isinstance(policy, ValuationPolicy):
            raise InvalidInput("policy", policy, "must be a ValuationPolicy")
        coll: dict[str, float] = {}
        idx: dict[str, float] = {}
        for ccy, px in index.items():
            c = str(ccy).strip().upper()
            field = f"market.index[{ccy!r}]"
            if c in STABLECOINS:
                coll[c] = positive_number(px, field, error=MarketDataError)
            else:
                idx[c] = positive_number(px, field, error=MarketDataError)
        for ccy, px in (collateral_prices or {}).items():
            coll[str(ccy).strip().upper()] = positive_number(
                px, f"market.collateral_prices[{ccy!r}]", error=MarketDataError)
        perps: set[str] = set()
        for u in index_perpetuals:
            uu = str(u).upper()
            if uu not in idx:
                raise MarketDataError(f"market.index[{uu!r}]", None,
                                      f"is missing: index_perpetuals lists {uu}")
            perps.add(uu)

        quotes: dict[str, Quote] = {}
        insts: dict[str, Instrument] = {}
        for raw_name, raw_quote in (instruments or {}).items():
            inst, q = check_instrument(raw_name, raw_quote, vt, idx)
            nm = inst.name
            if nm in quotes:
                raise MarketDataError(f"market.instruments[{raw_name!r}]", raw_name,
                                      f"duplicates instrument {nm}")
            quotes[nm] = q
            insts[nm] = inst

        curves = build_curves(vt, idx, quotes, insts)
        rows = build_option_rows(vt, quotes, insts, curves)
        surfaces = build_surfaces(vt, rows, curves)
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
        self._data_time = dt
        self._max_age = age
        self._index = idx
        self._collateral = coll
        self._quotes = quotes
        self._instruments = insts
        self._marks = explicit_marks(quotes, insts)
        self._curves = curves
        self._rows = rows
        self._surfaces = surfaces
        self._explicit_surfaces = dict(vol_surfaces or {})
        self._settlement = parse_settlement_prices(settlement_prices, vt, idx)
        self._index_perpetuals = frozenset(perps)
        self._policy = policy or ValuationPolicy()
        self._source = source
        self._frozen = True

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
    def data_time(self) -> datetime:
        """When the data was observed (aware UTC; the valuation time unless given)."""
        return self._data_time

    @property
    def max_age(self) -> timedelta:
        """Largest age of the data at the valuation time that was accepted."""
        return self._max_age

    @property
    def policy(self) -> ValuationPolicy:
        """Opt-ins for unlisted and expired instruments (see :class:`ValuationPolicy`)."""
        return self._policy

    def with_policy(self, *, price_unlisted: bool | None = None,
                    settle_expired: bool | None = None) -> MarketSnapshot:
        """The same market data with other opt-ins (arguments left ``None`` are kept).

        Parameters
        ----------
        price_unlisted : bool, optional
            Price instruments the market does not list from the curve and surface.
        settle_expired : bool, optional
            Value expired instruments at the market's settlement prices.

        Returns
        -------
        MarketSnapshot
            A copy sharing the validated data.
        """
        pol = ValuationPolicy(
            self._policy.price_unlisted if price_unlisted is None else bool(price_unlisted),
            self._policy.settle_expired if settle_expired is None else bool(settle_expired),
        )
        if pol == self._policy:
            return self
        new = object.__new__(MarketSnapshot)
        for k, v in self.__dict__.items():
            if k not in ("_frozen", "option_marks"):
                object.__setattr__(new, k, v)
        object.__setattr__(new, "_policy", pol)
        object.__setattr__(new, "_frozen", True)
        return new

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

    def is_listed(self, instrument: Instrument | str) -> bool:
        """Whether the market lists an instrument (has its data, or lists it by construction).

        Parameters
        ----------
        instrument : Instrument or str
            Any instrument (names are canonicalised).

        Returns
        -------
        bool
            True for an instrument with market data, and for ``{U}-PERPETUAL`` of an underlying
            in ``index_perpetuals`` (mark = index).
        """
        inst = self._inst(instrument)
        return inst.name in self._quotes or (
            inst.kind is InstrumentKind.PERPETUAL and inst.is_inverse
            and inst.underlying in self._index_perpetuals)

    def priced_by(self, instrument: Instrument | str) -> PricedBy:
        """How an instrument is valued under this snapshot's policy, or why it cannot be.

        Parameters
        ----------
        instrument : Instrument or str
            Any instrument.

        Returns
        -------
        str
            ``"market"`` (a listed mark), ``"index"`` (listed by construction with mark =
            index), ``"model"`` (unlisted, priced from curve and surface: needs
            ``policy.price_unlisted``) or ``"settlement"`` (expired, at the settlement price:
            needs ``policy.settle_expired``).

        Raises
        ------
        StaleMarketData
            For an instrument expired at the valuation time, naming it and its expiry, unless
            settlement is asked for and the market has its settlement price.
        UnknownInstrument
            For an instrument the market does not list, unless ``policy.price_unlisted``.
        MarketDataError
            If the underlying has no index.
        """
        inst = self._inst(instrument)
        u = self._u(inst.underlying)
        if inst.expiry is not None and inst.expiry <= self._valuation_time:
            exp = inst.expiry.isoformat()
            if not self._policy.settle_expired:
                raise StaleMarketData(
                    "instrument", inst.name,
                    f"{inst.name} expired at {exp}, at or before the valuation time "
                    f"{self._valuation_time.isoformat()}; close the position, or ask for "
                    "settlement (settle_expired=True, --settle-expired) with a settlement price "
                    "in the market")
            if (u, inst.expiry) not in self._settlement:
                raise StaleMarketData(
                    f"market.settlement_prices[{u + '-' + format_expiry(inst.expiry)!r}]",
                    inst.name,
                    f"is missing: {inst.name} expired at {exp} and settlement was asked for, "
                    "but the market has no settlement price for that expiry")
            return "settlement"
        if inst.name in self._quotes:
            return "market"
        if self.is_listed(inst):
            return "index"
        if not self._policy.price_unlisted:
            hint = nearest(inst.name, [n for n, i in self._instruments.items()
                                       if i.underlying == u and i.kind is inst.kind])
            near = f" (nearest listed: {hint})" if hint else ""
            src = f" {self._source}" if self._source else ""
            raise UnknownInstrument(
                "instrument", inst.name,
                f"{inst.name} is not listed in the market{src}{near}; pricing it from the "
                "surface is an opt-in (price_unlisted=True, --price-unlisted)")
        return "model"

    def settlement_price(self, underlying: str, expiry: datetime) -> float:
        """USD settlement price of an underlying at a past expiry.

        Raises
        ------
        StaleMarketData
            If the market has no settlement price for that expiry.
        """
        u = self._u(underlying)
        px = self._settlement.get((u, expiry))
        if px is None:
            raise StaleMarketData(
                f"market.settlement_prices[{u + '-' + format_expiry(expiry)!r}]", None,
                "is missing: no settlement price for that expiry")
        return px

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
            market data (``mark_iv`` only); else (unlisted, with ``policy.price_unlisted``)
            Black-76 at the curve forward and surface vol. Expired, with
            ``policy.settle_expired``: the settlement value (futures: the settlement price;
            options: intrinsic value against it).

        Raises
        ------
        StaleMarketData
            If the instrument is expired at the valuation time (see :meth:`priced_by`).
        UnknownInstrument
            If the market does not list it and ``policy.price_unlisted`` is off.
        MarketDataError
            If its underlying has no index (or, for an unmarked option, no vol surface).
        """
        inst = self._inst(instrument)
        how = self.priced_by(inst)
        if how == "settlement":
            assert inst.expiry is not None
            px = self.settlement_price(inst.underlying, inst.expiry)
            if inst.kind is not InstrumentKind.OPTION:
                return px
            assert inst.strike is not None
            return max(px - inst.strike, 0.0) if inst.is_call else max(inst.strike - px, 0.0)
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

    def activity(self, instrument: Instrument | str) -> tuple[float | None, float | None]:
        """Open interest and 24-hour traded volume, in contracts, as the market supplied them.

        Parameters
        ----------
        instrument : Instrument or str
            Any instrument.

        Returns
        -------
        tuple of (float or None, float or None)
            ``(open_interest, volume)``; None where the market does not carry the figure (the
            Deribit CSV carries both for options only; a JSON market may give them for any
            instrument).
        """
        q = self._quotes.get(self._inst(instrument).name)
        return (None, None) if q is None else (q.open_interest, q.volume)

    @cached_property
    def option_marks(self) -> pd.DataFrame:
        """Loaded option rows, indexed by instrument name.

        Columns: ``underlying``, ``settlement`` (inverse/linear), ``expiry`` (UTC), ``tau``,
        ``strike``, ``is_call``, ``mark_price`` (USD, NaN if not given), ``mark_iv`` (given or
        solved), ``iv_solved``, ``underlying_price`` (NaN if not given), ``forward`` (forward the
        mark refers to), ``bid_price``/``ask_price`` (USD, NaN if absent), ``open_interest``,
        ``volume``. A fresh copy is not made on each access: do not modify it.
        """
        import pandas as pd  # here only: loading a market does not need pandas

        def f(x: float | None) -> float:
            return math.nan if x is None else x

        rs = sorted(self._rows.values(), key=lambda r: r.name)
        frame = pd.DataFrame({
            "underlying": [r.instrument.underlying for r in rs],
            "settlement": [r.instrument.settlement.value for r in rs],
            "expiry": pd.to_datetime([r.expiry for r in rs], utc=True),
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
            mv = finite_number(m, f"spot_move[{u!r}]", error=MarketDataError)
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
                              source=f"{self._source} bumped {dict(spot_move)}".strip(),
                              settlement_prices=self._settlement_keys(),
                              index_perpetuals=self._index_perpetuals,
                              data_time=self._data_time, max_age=self._max_age,
                              policy=self._policy)

    def restricted_to(self, instruments: Iterable[Instrument | str]) -> MarketSnapshot:
        """A smaller snapshot that values ``instruments`` exactly as this one does.

        Kept: every index and collateral price, every future and perpetual (the forward
        curves' futures pillars are unchanged), and every option (call and put, inverse and
        linear) at the underlying, expiry and strike of an option in ``instruments``: a marked
        option's vol is its smile's pillar at its strike, and the pillar is chosen among the
        options at that strike, so it is unchanged. Settlement prices, explicit vol surfaces,
        ages and the policy are kept as they are. Used to re-price one account under many spot
        moves (:func:`pmargin.engine.distance.liquidation_distance`) without rebuilding every
        smile. Not exact when an expiry's forward is the median of its options'
        ``underlying_price`` and those differ, nor for an unlisted option (priced from the
        surface under ``policy.price_unlisted``): callers check the result on their
        instruments (the distance search compares margins on both markets first).

        Parameters
        ----------
        instruments : iterable of Instrument or str
            Instruments to keep valuing.

        Returns
        -------
        MarketSnapshot
            The restricted snapshot (same valuation time).
        """
        cells = {(i.underlying, i.expiry, i.strike) for i in map(self._inst, instruments)
                 if i.kind is InstrumentKind.OPTION}
        quotes = {name: q for name, q in self._quotes.items()
                  if self._instruments[name].kind is not InstrumentKind.OPTION
                  or (self._instruments[name].underlying, self._instruments[name].expiry,
                      self._instruments[name].strike) in cells}
        return MarketSnapshot(self._valuation_time, self._index, quotes,
                              self._collateral, vol_surfaces=self._explicit_surfaces,
                              source=self._source, settlement_prices=self._settlement_keys(),
                              index_perpetuals=self._index_perpetuals,
                              data_time=self._data_time, max_age=self._max_age,
                              policy=self._policy)

    def to_dict(self) -> dict[str, Any]:
        """The market data in the JSON ``market`` format (explicit inputs only).

        Returns
        -------
        dict
            ``valuation_time``, ``mark_unit`` (always ``"USD"``), ``index``, ``instruments``
            and, if any, ``data_time``, ``collateral_prices`` and ``settlement_prices``; solved
            IVs, explicit ``vol_surfaces`` and the valuation policy are not included. A
            perpetual listed by construction (``index_perpetuals``) is written with its mark.
        """
        instruments = {
            name: {k: getattr(q, k) for k in QUOTE_FIELDS if getattr(q, k) is not None}
            for name, q in self._quotes.items()
        }
        for u in sorted(self._index_perpetuals):
            instruments.setdefault(f"{u}-PERPETUAL", {"mark_price": self._index[u]})
        out: dict[str, Any] = {
            "valuation_time": _iso(self._valuation_time),
            "mark_unit": "USD",
            "index": dict(self._index),
            "instruments": instruments,
        }
        if self._data_time != self._valuation_time:
            out["data_time"] = _iso(self._data_time)
        if self._collateral:
            out["collateral_prices"] = dict(self._collateral)
        if self._settlement:
            out["settlement_prices"] = self._settlement_keys()
        return out

    def _settlement_keys(self) -> dict[str, float]:
        return {f"{u}-{format_expiry(e)}": px for (u, e), px in self._settlement.items()}


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")
