"""Forward curve of one underlying: index, dated-future and option-implied forward pillars.

Interpolation
-------------
Pillars are ``(tau_i, F_i)`` with ``tau_i`` the ACT/365 time from the valuation time to expiry
``i``; the index ``S`` is the ``tau = 0`` pillar.

* Between pillars (and between the index and the first pillar): ``ln F`` is linear in ``tau``.
  This is the same as a piecewise-constant basis rate: on ``[tau_i, tau_{i+1}]`` the forward grows
  at the constant rate ``ln(F_{i+1}/F_i) / (tau_{i+1} - tau_i)``.
* Beyond the last pillar: the basis rate of the last pillar measured from the index,
  ``r_n = ln(F_n/S) / tau_n``, is held flat, so ``F(tau) = S exp(r_n tau)``.
* ``tau <= 0`` (and a curve with no pillar at all): ``F = S``.
* At a pillar expiry the pillar forward is returned exactly (no round trip through ``log``).

Pillar priority for one expiry: the mark of a listed dated future first (the median if both an
inverse and a linear future of that expiry are marked), otherwise the median of the
``underlying_price`` of the options of that expiry (Deribit quotes each option against the
forward of its expiry: a listed future, a synthetic forward ``SYN.*`` or the index).

The perpetual is not a point of the dated curve: :meth:`ForwardCurve.forward` with
``expiry=None`` returns the perpetual mark, or the index when no perpetual mark is known.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import ArrayLike

from pmargin._typing import FloatArray
from pmargin.conventions import ensure_utc, year_fraction
from pmargin.errors import MarketDataError
from pmargin.validation import positive_number

__all__ = ["ForwardCurve", "ForwardPillar"]


@dataclass(frozen=True, slots=True)
class ForwardPillar:
    """One forward pillar of a curve.

    Attributes
    ----------
    expiry : datetime
        Expiry (aware UTC).
    tau : float
        ACT/365 years from the curve's valuation time to ``expiry`` (positive).
    forward : float
        Forward price in USD per unit of underlying.
    source : str
        ``"future"`` (mark of a listed dated future) or ``"option"`` (options' underlying price).
    """

    expiry: datetime
    tau: float
    forward: float
    source: str


class ForwardCurve:
    """Forward prices of one underlying by expiry (see the module docstring for interpolation).

    Parameters
    ----------
    underlying : str
        Underlying coin, e.g. ``"BTC"``.
    index : float
        Index (spot) price in USD, the ``tau = 0`` pillar.
    valuation_time : datetime
        Aware UTC datetime from which times to expiry are measured.
    futures : mapping of datetime to float, optional
        Marks of listed dated futures by expiry (USD). Highest-priority pillars.
    perpetual : float, optional
        Perpetual mark (USD). Defaults to the index.
    option_forwards : mapping of datetime to float, optional
        Forwards implied by options (Deribit ``underlying_price``) by expiry (USD); used for the
        expiries that have no future mark.

    Raises
    ------
    MarketDataError
        If a price is non-finite or non-positive, or a pillar expiry is not after the valuation
        time.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> t0 = datetime(2024, 6, 17, 8, tzinfo=UTC)
    >>> t1 = datetime(2025, 6, 17, 8, tzinfo=UTC)
    >>> c = ForwardCurve("BTC", 60000.0, t0, futures={t1: 66000.0})
    >>> c.forward(t1)
    66000.0
    """

    __slots__ = ("_exact", "_last_rate", "_logs", "_pillars", "_taus", "index", "perpetual",
                 "underlying", "valuation_time")

    underlying: str
    index: float
    valuation_time: datetime
    perpetual: float | None
    _pillars: tuple[ForwardPillar, ...]
    _taus: FloatArray
    _logs: FloatArray
    _exact: FloatArray
    _last_rate: float

    def __init__(
        self,
        underlying: str,
        index: float,
        valuation_time: datetime,
        futures: Mapping[datetime, float] | None = None,
        perpetual: float | None = None,
        option_forwards: Mapping[datetime, float] | None = None,
    ) -> None:
        self.underlying = underlying
        self.index = positive_number(index, f"forward_curve[{underlying!r}].index",
                                     error=MarketDataError)
        self.valuation_time = ensure_utc(valuation_time, "forward_curve.valuation_time")
        self.perpetual = (
            None if perpetual is None
            else positive_number(perpetual, f"forward_curve[{underlying!r}].perpetual",
                                 error=MarketDataError)
        )
        merged: dict[datetime, ForwardPillar] = {}
        for source, table in (("option", option_forwards), ("future", futures)):
            for expiry, fwd in (table or {}).items():
                exp = ensure_utc(expiry, f"forward_curve[{underlying!r}].{source}_expiry")
                field = f"forward_curve[{underlying!r}].{source}s[{exp.isoformat()!r}]"
                f = positive_number(fwd, field, error=MarketDataError)
                tau = year_fraction(self.valuation_time, exp)
                if tau <= 0.0:
                    raise MarketDataError(
                        field, exp.isoformat(),
                        f"expiry is not after the valuation time {self.valuation_time.isoformat()}",
                    )
                merged[exp] = ForwardPillar(exp, tau, f, source)  # futures overwrite options
        self._pillars = tuple(sorted(merged.values(), key=lambda p: p.tau))
        self._exact = np.array([p.forward for p in self._pillars], dtype=np.float64)
        self._taus = np.array([0.0, *(p.tau for p in self._pillars)], dtype=np.float64)
        self._logs = np.log(np.array([self.index, *self._exact], dtype=np.float64))
        if self._pillars:
            last = self._pillars[-1]
            self._last_rate = math.log(last.forward / self.index) / last.tau
        else:
            self._last_rate = 0.0

    @property
    def pillars(self) -> tuple[ForwardPillar, ...]:
        """Forward pillars sorted by time to expiry (the index pillar excluded)."""
        return self._pillars

    @property
    def perpetual_mark(self) -> float:
        """Perpetual mark, or the index when no perpetual mark was given."""
        return self.index if self.perpetual is None else self.perpetual

    @property
    def long_end_rate(self) -> float:
        """Continuously compounded basis rate used beyond the last pillar (0 with no pillar)."""
        return self._last_rate

    def forward(self, expiry: datetime | None, valuation_time: datetime | None = None) -> float:
        """Forward for one expiry.

        Parameters
        ----------
        expiry : datetime or None
            Expiry (aware). ``None`` means the perpetual: its mark, or the index.
        valuation_time : datetime, optional
            Time from which ``tau`` is measured; defaults to the curve's own valuation time.

        Returns
        -------
        float
            Forward price in USD per unit of underlying. A pillar expiry returns its pillar
            exactly; an expiry at or before the valuation time returns the index.
        """
        if expiry is None:
            return self.perpetual_mark
        vt = self.valuation_time if valuation_time is None else valuation_time
        if vt == self.valuation_time:
            for p in self._pillars:
                if p.expiry == expiry:
                    return p.forward
        return float(self.forwards(np.array([year_fraction(vt, expiry)]))[0])

    def forwards(self, taus: ArrayLike) -> FloatArray:
        """Vectorised forwards by time to expiry.

        Parameters
        ----------
        taus : array_like
            Times to expiry in ACT/365 years (any shape).

        Returns
        -------
        ndarray
            Forwards in USD, same shape as ``taus``; ``tau <= 0`` gives the index and a NaN tau
            gives NaN.
        """
        t = np.asarray(taus, dtype=np.float64)
        if not self._pillars:
            return np.where(np.isnan(t), np.nan, self.index)
        tmax = self._taus[-1]
        inside = np.interp(np.minimum(t, tmax), self._taus, self._logs)
        beyond = self._logs[0] + self._last_rate * t
        out = np.exp(np.where(t > tmax, beyond, inside))
        # Exact pillar values (no exp/log round trip) and the exact index at or before tau = 0.
        pos = np.clip(np.searchsorted(self._taus, t), 0, len(self._taus) - 1)
        hit = (self._taus[pos] == t) & (pos > 0)
        out = np.where(hit, self._exact[np.maximum(pos - 1, 0)], out)
        out = np.where(t <= 0.0, self.index, out)
        return np.asarray(np.where(np.isnan(t), np.nan, out), dtype=np.float64)

    def scaled(self, factor: float) -> ForwardCurve:
        """Return a curve with index, perpetual and every pillar multiplied by ``factor``.

        Parameters
        ----------
        factor : float
            Positive multiplier, e.g. ``1.1`` for a +10 % spot move at unchanged basis rates.

        Returns
        -------
        ForwardCurve
            The scaled curve (same valuation time and pillar sources).
        """
        fac = positive_number(factor, "factor", error=MarketDataError)
        fut = {p.expiry: p.forward * fac for p in self._pillars if p.source == "future"}
        opt = {p.expiry: p.forward * fac for p in self._pillars if p.source == "option"}
        perp = None if self.perpetual is None else self.perpetual * fac
        return ForwardCurve(self.underlying, self.index * fac, self.valuation_time, fut, perp, opt)

    def __repr__(self) -> str:
        return (f"ForwardCurve({self.underlying!r}, index={self.index!r}, "
                f"pillars={len(self._pillars)}, perpetual={self.perpetual!r})")
