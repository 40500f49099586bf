"""Implied-volatility surface of one underlying, built from per-expiry smiles of mark IVs.

Interpolation
-------------
Coordinates are the time to expiry ``tau`` (ACT/365 years) and the log-moneyness
``k = ln(K / F(tau))``, where ``F`` is the forward of the query's expiry.

* **Within an expiry** (a :class:`Smile`): implied vol is linear in ``k`` between strikes and
  flat beyond the lowest and highest strikes.
* **Across expiries**, at the same ``k``: total variance ``w = sigma^2 tau`` is linear in
  ``tau`` between the two neighbouring smiles and ``sigma = sqrt(w / tau)``.
* **Before the first expiry** the first smile's vol at ``k`` is used (flat vol, so ``w`` goes to
  0 with ``tau``); **beyond the last expiry** the last smile's vol at ``k`` is used (constant
  ``sigma``, so ``w`` grows linearly with ``tau``).
* **At a smile expiry** the smile is returned exactly; at one of its strikes (queried with the
  smile's own forward) the pillar vol is returned bit for bit, so a surface built from marks
  reproduces each mark IV at its own strike.

Calendar arbitrage in the inputs (total variance falling with ``tau`` at fixed ``k``) is not
repaired: the surface interpolates the marks as given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from numpy.typing import ArrayLike

from pmargin._typing import FloatArray
from pmargin.conventions import ensure_utc, year_fraction
from pmargin.errors import InvalidInput, MarketDataError
from pmargin.market.curves import ForwardCurve
from pmargin.validation import finite_number

__all__ = ["MAX_VOL", "Smile", "VolSurface"]

MAX_VOL: float = 10.0
"""Largest implied volatility accepted anywhere (1000 %); larger values are rejected as absurd."""


def check_vol(field_name: str, value: float) -> float:
    """Validate one implied volatility (finite, positive, at most :data:`MAX_VOL`).

    Parameters
    ----------
    field_name : str
        Field named in the error.
    value : float
        Volatility as a decimal.

    Returns
    -------
    float
        The value as a float.

    Raises
    ------
    MarketDataError
        If the value is not a finite number in ``(0, MAX_VOL]``.
    """
    v = finite_number(value, field_name, error=MarketDataError)
    if v <= 0.0:
        raise MarketDataError(field_name, value, "implied volatility must be positive")
    if v > MAX_VOL:
        raise MarketDataError(
            field_name, value,
            f"implied volatility above {MAX_VOL:g} ({MAX_VOL:.0%}) is absurd; "
            "volatilities are decimals (0.55 = 55%)",
        )
    return v


@dataclass(frozen=True, eq=False)
class Smile:
    """Implied vols of one expiry by strike.

    Parameters
    ----------
    expiry : datetime
        Expiry (aware UTC).
    tau : float
        Time to expiry in ACT/365 years (positive).
    forward : float
        Forward of the expiry in USD, defining ``k = ln(K / forward)``.
    strikes : array_like
        Strictly increasing positive strikes in USD.
    vols : array_like
        Implied vols (decimals) at ``strikes``.

    Raises
    ------
    MarketDataError
        On a non-positive tau or forward, unsorted or non-positive strikes, mismatched lengths,
        or a vol outside ``(0, MAX_VOL]``.
    """

    expiry: datetime
    tau: float
    forward: float
    strikes: FloatArray
    vols: FloatArray
    log_moneyness: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        name = f"smile[{self.expiry.isoformat()!r}]"
        k = np.array(self.strikes, dtype=np.float64).ravel()
        v = np.array(self.vols, dtype=np.float64).ravel()
        if not (math.isfinite(self.tau) and self.tau > 0.0):
            raise MarketDataError(f"{name}.tau", self.tau, "must be positive and finite")
        if not (math.isfinite(self.forward) and self.forward > 0.0):
            raise MarketDataError(f"{name}.forward", self.forward, "must be positive and finite")
        if k.size == 0 or k.size != v.size:
            raise MarketDataError(f"{name}.strikes", k.size,
                                  f"need one or more strikes and as many vols (got {v.size})")
        if not (np.all(np.isfinite(k)) and np.all(k > 0.0)):
            bad = float(k[~(np.isfinite(k) & (k > 0.0))][0])
            raise MarketDataError(f"{name}.strikes", bad, "strikes must be positive and finite")
        if np.any(np.diff(k) <= 0.0):
            raise MarketDataError(f"{name}.strikes", k.tolist()[:5],
                                  "strikes must be strictly increasing")
        for i, vi in enumerate(v.tolist()):
            check_vol(f"{name}.vols[{k[i]:g}]", vi)
        lm = np.log(k / self.forward)
        for arr in (k, v, lm):
            arr.setflags(write=False)
        object.__setattr__(self, "strikes", k)
        object.__setattr__(self, "vols", v)
        object.__setattr__(self, "log_moneyness", lm)

    def vol(self, k: ArrayLike) -> FloatArray:
        """Implied vol at log-moneyness ``k`` (linear in ``k``, flat beyond the end strikes).

        Parameters
        ----------
        k : array_like
            Log-moneyness ``ln(K / F)``.

        Returns
        -------
        ndarray
            Implied vols, same shape as ``k``.
        """
        kk = np.asarray(k, dtype=np.float64)
        return np.asarray(np.interp(kk, self.log_moneyness, self.vols), dtype=np.float64)

    def vol_at_strike(self, strike: float) -> float:
        """Implied vol at a strike, measured against the smile's own forward.

        Parameters
        ----------
        strike : float
            Strike in USD.

        Returns
        -------
        float
            The pillar vol exactly when ``strike`` is one of the smile's strikes.
        """
        i = int(np.searchsorted(self.strikes, strike))
        if i < self.strikes.size and self.strikes[i] == strike:
            return float(self.vols[i])
        return float(self.vol(math.log(strike / self.forward)))


class VolSurface:
    """Implied-volatility surface of one underlying (see the module docstring).

    Parameters
    ----------
    underlying : str
        Underlying coin.
    valuation_time : datetime
        Aware UTC datetime from which times to expiry are measured.
    smiles : iterable of Smile
        One smile per expiry (distinct expiries).
    forward_curve : ForwardCurve, optional
        Forward curve used by :meth:`vol_at` for expiries that have no smile.

    Raises
    ------
    MarketDataError
        If two smiles share an expiry.
    """

    __slots__ = ("_flat", "_smiles", "_taus", "forward_curve", "underlying", "valuation_time")

    underlying: str
    valuation_time: datetime | None
    forward_curve: ForwardCurve | None
    _smiles: tuple[Smile, ...]
    _taus: FloatArray
    _flat: float | None

    def __init__(
        self,
        underlying: str,
        valuation_time: datetime | None,
        smiles: Iterable[Smile],
        forward_curve: ForwardCurve | None = None,
    ) -> None:
        self.underlying = underlying
        self.valuation_time = (
            None if valuation_time is None
            else ensure_utc(valuation_time, "vol_surface.valuation_time")
        )
        self.forward_curve = forward_curve
        ordered = tuple(sorted(smiles, key=lambda s: s.tau))
        taus = np.array([s.tau for s in ordered], dtype=np.float64)
        if np.any(np.diff(taus) <= 0.0):
            dup = ordered[int(np.argmin(np.diff(taus)))].expiry.isoformat()
            raise MarketDataError(f"vol_surface[{underlying!r}].smiles", dup,
                                  "two smiles share an expiry")
        self._smiles = ordered
        self._taus = taus
        self._flat = None

    @classmethod
    def flat(cls, vol: float, underlying: str = "", valuation_time: datetime | None = None,
             ) -> VolSurface:
        """Surface with the same vol at every expiry and strike.

        Parameters
        ----------
        vol : float
            Implied vol (decimal) in ``(0, MAX_VOL]``.
        underlying : str, optional
            Underlying coin (informative).
        valuation_time : datetime, optional
            Valuation time (informative).

        Returns
        -------
        VolSurface
            A surface whose every query returns ``vol``.
        """
        v = check_vol(f"vol_surface[{underlying!r}].flat_vol", vol)
        surf = cls(underlying, valuation_time, ())
        surf._flat = v
        return surf

    @property
    def smiles(self) -> tuple[Smile, ...]:
        """Smiles sorted by time to expiry (empty for a flat surface)."""
        return self._smiles

    @property
    def is_flat(self) -> bool:
        """Whether the surface was built with :meth:`flat`."""
        return self._flat is not None

    @property
    def is_empty(self) -> bool:
        """Whether the surface has neither smiles nor a flat vol (every query fails)."""
        return self._flat is None and not self._smiles

    def smile(self, expiry: datetime) -> Smile | None:
        """The smile of ``expiry``, or None if that expiry has none."""
        for s in self._smiles:
            if s.expiry == expiry:
                return s
        return None

    def _require(self) -> None:
        if self.is_empty:
            raise MarketDataError(
                f"market.vol_surface[{self.underlying!r}]", self.underlying,
                "no option has a mark_iv or mark_price for this underlying, so there is no "
                "implied volatility",
            )

    def vol(self, taus: ArrayLike, strikes: ArrayLike, forwards: ArrayLike) -> FloatArray:
        """Vectorised implied vols (arguments broadcast NumPy-style).

        Parameters
        ----------
        taus : array_like
            Times to expiry in ACT/365 years.
        strikes : array_like
            Strikes in USD.
        forwards : array_like
            Forwards of the same expiries in USD (defines ``k = ln(K/F)``).

        Returns
        -------
        ndarray
            Implied vols (decimals) with the broadcast shape.

        Raises
        ------
        MarketDataError
            If the surface is empty.
        """
        self._require()
        t, kk, ff = np.broadcast_arrays(
            np.asarray(taus, dtype=np.float64),
            np.asarray(strikes, dtype=np.float64),
            np.asarray(forwards, dtype=np.float64),
        )
        shape = t.shape
        if self._flat is not None:
            return np.full(shape, self._flat)
        t, kk, ff = t.ravel(), kk.ravel(), ff.ravel()
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.log(kk / ff)
        n = len(self._smiles)
        hi = np.searchsorted(self._taus, t, side="left")
        exact = (hi < n) & (self._taus[np.minimum(hi, n - 1)] == t)
        a = np.where(exact | (hi == 0), np.minimum(hi, n - 1), hi - 1)
        b = np.where(exact | (hi == 0) | (hi >= n), a, hi)
        sig_a = np.empty_like(t)
        sig_b = np.empty_like(t)
        for j, s in enumerate(self._smiles):
            ma = a == j
            if ma.any():
                sig_a[ma] = s.vol(k[ma])
            mb = b == j
            if mb.any():
                sig_b[mb] = s.vol(k[mb])
        ta = self._taus[a]
        tb = self._taus[b]
        same = a == b
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(same, 0.0, (t - ta) / np.where(same, 1.0, tb - ta))
            w = sig_a * sig_a * ta + (sig_b * sig_b * tb - sig_a * sig_a * ta) * x
            between = np.sqrt(np.maximum(w, 0.0) / np.where(same, 1.0, t))
        out = np.where(same, sig_a, between)
        out = np.where(np.isnan(t) | np.isnan(k), np.nan, out)
        return np.asarray(out.reshape(shape), dtype=np.float64)

    def vol_at(self, expiry: datetime, strike: float) -> float:
        """Implied vol of one expiry and strike.

        Parameters
        ----------
        expiry : datetime
            Expiry (aware).
        strike : float
            Strike in USD.

        Returns
        -------
        float
            The smile's value (exact at its strikes) for an expiry with a smile, otherwise the
            interpolated vol at the forward curve's forward of ``expiry``.

        Raises
        ------
        MarketDataError
            If the surface is empty.
        InvalidInput
            If the expiry has no smile and the surface has no forward curve or valuation time.
        """
        self._require()
        if self._flat is not None:
            return self._flat
        s = self.smile(expiry)
        if s is not None:
            return s.vol_at_strike(strike)
        if self.forward_curve is None or self.valuation_time is None:
            raise InvalidInput("vol_surface.forward_curve", None,
                               "vol_at needs a forward curve and valuation time for expiries "
                               "without a smile")
        tau = year_fraction(self.valuation_time, expiry)
        fwd = self.forward_curve.forward(expiry)
        return float(self.vol(tau, strike, fwd))

    def __repr__(self) -> str:
        if self._flat is not None:
            return f"VolSurface.flat({self._flat!r}, underlying={self.underlying!r})"
        return f"VolSurface({self.underlying!r}, smiles={len(self._smiles)})"
