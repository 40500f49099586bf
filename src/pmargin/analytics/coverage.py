"""Coverage statistics of a margin backtest: exceedances, Kupiec, Christoffersen, traffic light.

An **exceedance** is a day whose realised loss over the margin period of risk is larger than the
margin held at its start. With ``n`` days, ``x`` exceedances and target exceedance probability
``p = 1 - level``:

* **Kupiec POF** (proportion of failures):
  ``LR = -2 ln[(1-p)^(n-x) p^x] + 2 ln[(1-x/n)^(n-x) (x/n)^x]``, chi-squared with 1 degree of
  freedom under the null ``P(exceedance) = p``.
* **Christoffersen independence**: with ``n_ij`` the number of days in state ``j`` after a day in
  state ``i`` (1 = exceedance), ``pi_0 = n_01/(n_00+n_01)``, ``pi_1 = n_11/(n_10+n_11)``,
  ``pi = (n_01+n_11)/(n_00+n_01+n_10+n_11)``:
  ``LR_ind = -2 ln[(1-pi)^(n_00+n_10) pi^(n_01+n_11)]
  + 2 ln[(1-pi_0)^n_00 pi_0^n_01 (1-pi_1)^n_10 pi_1^n_11]``,
  chi-squared(1) under independence (``0 ln 0 = 0``).
* **Conditional coverage**: ``LR_cc = LR_pof + LR_ind``, chi-squared(2).
* **Basel traffic light** per window of 250 days: the zone of the exceedance count from the
  cumulative binomial probability at ``p`` (green, yellow, red; 99 %: 0-4, 5-9, 10+).

Parameters (level, significance, window, zone probabilities) are in ``analytics/coverage.toml``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from scipy.stats import binom, chi2

from pmargin._typing import BoolArray, FloatArray
from pmargin.errors import InvalidInput
from pmargin.paramfiles import Shipped, load_params_file

__all__ = ["CoverageParams", "CoverageResult", "christoffersen", "coverage", "kupiec_pof",
           "load_coverage_params", "traffic_light_zone", "traffic_light_zones", "transitions"]

ZONES: tuple[str, ...] = ("green", "yellow", "red")
"""Basel traffic-light zones, from best to worst."""


class _Traffic(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    window: PositiveInt
    yellow_from: float = Field(gt=0.0, lt=1.0)
    red_from: float = Field(gt=0.0, lt=1.0)


class CoverageParams(BaseModel):
    """Validated ``coverage.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    level: float = Field(gt=0.0, lt=1.0)
    significance: float = Field(gt=0.0, lt=1.0)
    traffic_light: _Traffic


def load_coverage_params(path: str | Path = "coverage",
                         overrides: Mapping[str, Any] | None = None) -> CoverageParams:
    """Load the coverage-test parameters (shipped ``coverage.toml`` or a file)."""
    return load_params_file(CoverageParams, path,
                            Shipped("pmargin.analytics", "", "coverage settings"), overrides)


def _xlogy(x: float, y: float) -> float:
    return 0.0 if x == 0 else x * math.log(y)


def _check_p(p: float) -> float:
    if not (isinstance(p, float | int) and 0.0 < p < 1.0):
        raise InvalidInput("p", p, "exceedance probability must be in (0, 1)")
    return float(p)


def kupiec_pof(n: int, x: int, p: float) -> tuple[float, float]:
    """Kupiec's proportion-of-failures likelihood ratio and its p-value.

    Parameters
    ----------
    n : int
        Observations (> 0).
    x : int
        Exceedances (0 <= x <= n).
    p : float
        Exceedance probability under the null (``1 - level``).

    Returns
    -------
    tuple of float
        ``(LR, p_value)``; LR is chi-squared(1) under the null.
    """
    p = _check_p(p)
    if not (isinstance(n, int | np.integer) and n > 0):
        raise InvalidInput("n", n, "must be a positive number of observations")
    if not (isinstance(x, int | np.integer) and 0 <= x <= n):
        raise InvalidInput("x", x, f"must be a count between 0 and n = {n}")
    phat = x / n
    lr = -2.0 * (_xlogy(n - x, 1.0 - p) + _xlogy(x, p)) \
        + 2.0 * (_xlogy(n - x, 1.0 - phat) + _xlogy(x, phat))
    lr = max(lr, 0.0)
    return lr, float(chi2.sf(lr, 1))


def transitions(exceed: ArrayLike) -> tuple[int, int, int, int]:
    """Counts ``(n00, n01, n10, n11)`` of day-to-day transitions of an exceedance series."""
    e = np.asarray(exceed, dtype=bool)
    a, b = e[:-1], e[1:]
    return (int(np.sum(~a & ~b)), int(np.sum(~a & b)), int(np.sum(a & ~b)), int(np.sum(a & b)))


def christoffersen(exceed: ArrayLike, p: float) -> tuple[float, float, float, float]:
    """Christoffersen's independence and conditional-coverage likelihood ratios.

    Parameters
    ----------
    exceed : array_like of bool, shape (n,)
        Exceedance indicator by day, in time order.
    p : float
        Exceedance probability under the null.

    Returns
    -------
    tuple of float
        ``(LR_ind, p_ind, LR_cc, p_cc)``: independence (chi-squared(1)) and conditional
        coverage ``LR_pof + LR_ind`` (chi-squared(2)). With no transition out of an exceedance
        day (none, or only the last day) ``LR_ind`` is 0.
    """
    e = np.asarray(exceed, dtype=bool)
    if e.ndim != 1 or e.size < 2:
        raise InvalidInput("exceed", e.size, "needs a series of at least two days")
    n00, n01, n10, n11 = transitions(e)
    pi0 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi1 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    restricted = _xlogy(n00 + n10, 1.0 - pi) + _xlogy(n01 + n11, pi)
    free = (_xlogy(n00, 1.0 - pi0) + _xlogy(n01, pi0) + _xlogy(n10, 1.0 - pi1)
            + _xlogy(n11, pi1))
    lr_ind = max(2.0 * (free - restricted), 0.0)
    lr_pof, _ = kupiec_pof(int(e.size), int(e.sum()), p)
    lr_cc = lr_pof + lr_ind
    return lr_ind, float(chi2.sf(lr_ind, 1)), lr_cc, float(chi2.sf(lr_cc, 2))


def traffic_light_zone(x: int, n: int, p: float, yellow_from: float, red_from: float) -> str:
    """Basel traffic-light zone of ``x`` exceedances in ``n`` days at probability ``p``.

    Green while the cumulative binomial probability ``P(X <= x)`` is below ``yellow_from``,
    red once it reaches ``red_from``, yellow between (250 days at 99 %: 0-4, 5-9, 10+).
    """
    c = float(binom.cdf(x, n, _check_p(p)))
    return "red" if c >= red_from else "yellow" if c >= yellow_from else "green"


def traffic_light_zones(exceed: ArrayLike, p: float, window: int, yellow_from: float,
                        red_from: float) -> list[tuple[int, int, str]]:
    """Zones of consecutive non-overlapping windows (a last partial window is left out).

    Returns
    -------
    list of (start index, exceedances, zone)
    """
    e = np.asarray(exceed, dtype=bool)
    out = []
    for s in range(0, e.size - window + 1, window):
        x = int(e[s:s + window].sum())
        out.append((s, x, traffic_light_zone(x, window, p, yellow_from, red_from)))
    return out


@dataclass(frozen=True)
class CoverageResult:
    """Coverage of one margin series against one loss series (see the module docstring).

    Amounts (``shortfall_*``, ``average_margin``) are in the unit of the inputs.
    """

    n: int
    exceedances: int
    coverage: float
    kupiec_lr: float
    kupiec_p: float
    independence_lr: float
    independence_p: float
    cc_lr: float
    cc_p: float
    windows_green: int
    windows_yellow: int
    windows_red: int
    worst_window: int
    worst_zone: str
    rolling_max_exceedances: int
    rolling_worst_zone: str
    mean_shortfall: float
    max_shortfall: float
    average_margin: float
    missing_margin: int

    def as_dict(self) -> dict[str, Any]:
        """Plain dictionary (for tables)."""
        return asdict(self)


def coverage(margin: ArrayLike, loss: ArrayLike, params: CoverageParams | None = None
             ) -> CoverageResult:
    """Exceedances and coverage tests of a margin series against realised losses.

    Parameters
    ----------
    margin : array_like, shape (n,)
        Margin held at the start of each day's margin period of risk (positive). A NaN margin
        (the model failed that day) counts as **zero** margin: missing data never makes
        coverage look better.
    loss : array_like, shape (n,)
        Realised loss over the period (positive = loss), same unit; NaN days are dropped.
    params : CoverageParams, optional
        Level, significance and traffic-light settings (default ``coverage.toml``).

    Returns
    -------
    CoverageResult
        Counts, tests, zones, shortfall on exceedance (loss − margin) and average margin.
    """
    p = params or load_coverage_params()
    m = np.asarray(margin, dtype=np.float64)
    lo = np.asarray(loss, dtype=np.float64)
    if m.shape != lo.shape or m.ndim != 1:
        raise InvalidInput("margin", m.shape, f"must be one series matching loss {lo.shape}")
    keep = ~np.isnan(lo)
    m, lo = m[keep], lo[keep]
    missing = int(np.isnan(m).sum())
    m = np.where(np.isnan(m), 0.0, m)
    n = int(m.size)
    if n < 2:
        raise InvalidInput("loss", n, "needs at least two days with a realised loss")
    ex: BoolArray = lo > m
    x = int(ex.sum())
    q = 1.0 - p.level
    k_lr, k_p = kupiec_pof(n, x, q)
    i_lr, i_p, c_lr, c_p = christoffersen(ex, q)
    tl = p.traffic_light
    zones = traffic_light_zones(ex, q, tl.window, tl.yellow_from, tl.red_from)
    counts = {z: sum(1 for *_, zz in zones if zz == z) for z in ZONES}
    worst_x = max((xx for _, xx, _ in zones), default=0)
    if n >= tl.window:
        csum = np.concatenate([[0], np.cumsum(ex)])
        roll = int(np.max(csum[tl.window:] - csum[:-tl.window]))
    else:
        roll = x
    short: FloatArray = (lo - m)[ex]
    return CoverageResult(
        n=n, exceedances=x, coverage=1.0 - x / n, kupiec_lr=k_lr, kupiec_p=k_p,
        independence_lr=i_lr, independence_p=i_p, cc_lr=c_lr, cc_p=c_p,
        windows_green=counts["green"], windows_yellow=counts["yellow"],
        windows_red=counts["red"], worst_window=worst_x,
        worst_zone=traffic_light_zone(worst_x, tl.window, q, tl.yellow_from, tl.red_from),
        rolling_max_exceedances=roll,
        rolling_worst_zone=traffic_light_zone(roll, tl.window, q, tl.yellow_from, tl.red_from),
        mean_shortfall=float(short.mean()) if short.size else 0.0,
        max_shortfall=float(short.max()) if short.size else 0.0,
        average_margin=float(m.mean()), missing_margin=missing,
    )
