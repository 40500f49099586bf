"""EMIR Article 28 anti-procyclicality tools of ``var-fhs`` (issue 12.4b).

Three pure pieces, each an option of :class:`~pmargin.models.var_fhs.params.ApcParams`:

* **Weighted ES** (:func:`scenario_weights`, :func:`weighted_expected_shortfall`): every scenario
  carries a weight (summing to 1); the stressed-period scenarios together carry at least
  ``stressed_weight`` of it. The tail is the smallest set of worst scenarios whose weight reaches
  ``alpha = 1 - confidence``, the boundary scenario taken fractionally::

      ES = ( sum_{i < j} w_(i) L_(i) + (alpha - sum_{i < j} w_(i)) L_(j) ) / alpha

  with losses ``L_(1) >= L_(2) >= ...`` sorted worst first, ``w_(i)`` their weights and ``j`` the
  first index whose cumulative weight reaches ``alpha`` (Acerbi and Tasche 2002 with weights).
* **Buffer** (:func:`buffer_release`, :func:`buffered`): IM = ES x (1 + ``buffer``) in calm
  markets; the buffer is released (IM = ES, never below it) while the market is in stress:
  today's current volatility of some underlying is above the ``stress_quantile`` quantile of the
  same volatility measure over the look-back. With ``release_full_quantile`` the release is
  gradual: linear in the volatility from the ``stress_quantile`` quantile (nothing released) to
  the ``release_full_quantile`` quantile (all of it).
* **Look-back floor** (:func:`lookback_shortfall_years`): the years by which the look-back falls
  short of ``lookback_floor_years``; refused or flagged in the result (``lookback_floor``).
"""

from __future__ import annotations

import numpy as np

from pmargin._typing import BoolArray, FloatArray
from pmargin.errors import InvalidInput

__all__ = ["buffer_release", "buffered", "lookback_shortfall_years", "scenario_weights",
           "tail_weights", "weighted_expected_shortfall"]

DAYS_PER_YEAR = 365.25
"""Calendar days per year of the look-back floor."""


def scenario_weights(stressed: BoolArray, stressed_weight: float) -> FloatArray:
    """Probability weight of each scenario.

    Parameters
    ----------
    stressed : ndarray of bool, shape (s,)
        Stressed-period scenario.
    stressed_weight : float
        Minimum total weight of the stressed scenarios (0 to 1; 0.25 for EMIR Art. 28(1)(b)).

    Returns
    -------
    ndarray, shape (s,)
        Weights summing to 1: the stressed scenarios share ``max(stressed_weight, n_s / s)``
        equally, the others share the rest equally. Equal weights ``1 / s`` when
        ``stressed_weight`` is at most the stressed scenarios' natural share, or when there are
        no stressed scenarios (nothing to weight up) or only stressed ones.
    """
    s = int(stressed.size)
    if s == 0:
        raise InvalidInput("scenarios", 0, "no scenario to weight")
    n_s = int(stressed.sum())
    share = max(float(stressed_weight), n_s / s)
    if n_s in (0, s) or share == n_s / s:
        return np.full(s, 1.0 / s)
    return np.where(stressed, share / n_s, (1.0 - share) / (s - n_s))


def _tail_count(weights: FloatArray, alpha: float) -> int:
    """Most scenarios any tail of mass ``alpha`` can hold (the lightest weights first)."""
    c = np.cumsum(np.sort(weights))
    return min(int(weights.size), int(np.searchsorted(c, alpha * (1 - 1e-12))) + 1)


def weighted_expected_shortfall(pnl: FloatArray, weights: FloatArray,
                                confidence: float) -> FloatArray:
    """Weighted ES of the loss per row (module doc formula).

    Parameters
    ----------
    pnl : ndarray, shape (rows, scenarios)
        Scenario P&L (gains positive), any currency.
    weights : ndarray, shape (scenarios,)
        Scenario weights, positive, summing to 1.
    confidence : float
        ES level (``alpha = 1 - confidence`` is the tail mass).

    Returns
    -------
    ndarray, shape (rows,)
        Expected shortfall (a loss: positive when the tail loses money), same currency.
    """
    rows, n = pnl.shape
    if weights.shape != (n,):
        raise InvalidInput("weights", weights.shape, f"must have one weight per scenario ({n})")
    if rows == 0:
        return np.zeros(0)
    alpha = 1.0 - confidence
    m = _tail_count(weights, alpha)
    # the m worst scenarios of each row hold any tail (m lightest weights reach alpha)
    idx = np.argpartition(pnl, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n),
                                                                           (rows, 1))
    sub = np.take_along_axis(pnl, idx, axis=1)
    order = np.argsort(sub, axis=1, kind="stable")
    loss = -np.take_along_axis(sub, order, axis=1)
    w = weights[np.take_along_axis(idx, order, axis=1)]
    before = np.cumsum(w, axis=1) - w
    take = np.clip(alpha - before, 0.0, w)
    return np.asarray((take * loss).sum(axis=1) / alpha)


def tail_weights(pnl: FloatArray, weights: FloatArray, confidence: float) -> FloatArray:
    """Share of each scenario in one account's weighted ES (for the explanation).

    Parameters
    ----------
    pnl : ndarray, shape (scenarios,)
        One account's scenario P&L.
    weights : ndarray, shape (scenarios,)
        Scenario weights summing to 1.
    confidence : float
        ES level.

    Returns
    -------
    ndarray, shape (scenarios,)
        Weight of each scenario in the ES average (summing to 1; zero outside the tail).
    """
    alpha = 1.0 - confidence
    order = np.argsort(pnl, kind="stable")
    w = weights[order]
    take = np.clip(alpha - (np.cumsum(w) - w), 0.0, w) / alpha
    out = np.zeros(pnl.size)
    out[order] = take
    return out


def buffer_release(sigma_now: float, history: FloatArray, quantile: float,
                   full_quantile: float | None = None) -> float:
    """Share of the buffer one underlying's stress releases: 0 (calm) to 1 (all of it).

    Parameters
    ----------
    sigma_now : float
        Today's current daily volatility (the one the scenarios are rescaled to).
    history : ndarray, shape (n,)
        The same volatility measure on each day of the look-back (NaN ignored).
    quantile : float
        Quantile (0 to 1) of ``history`` above which the market is in stress.
    full_quantile : float or None
        Quantile (above ``quantile``) at which the whole buffer is released. None: all of it at
        ``quantile`` (a step).

    Returns
    -------
    float
        Without ``full_quantile``: 1.0 if ``sigma_now > q(quantile)`` else 0.0. With it: the
        position of ``sigma_now`` between ``lo = q(quantile)`` and ``hi = q(full_quantile)``,
        ``clip((sigma_now - lo) / (hi - lo), 0, 1)`` (linear in the volatility; a step at ``lo``
        when the two quantiles coincide). ``q`` is :func:`numpy.quantile` (linear
        interpolation) of the finite values of ``history``.
    """
    h = history[np.isfinite(history)]
    if h.size == 0:
        raise InvalidInput("history", 0, "no volatility history to define stress")
    lo = float(np.quantile(h, quantile))
    hi = lo if full_quantile is None else float(np.quantile(h, full_quantile))
    if hi <= lo:
        return 1.0 if sigma_now > lo else 0.0
    return float(min(max((sigma_now - lo) / (hi - lo), 0.0), 1.0))


def buffered(es: FloatArray, buffer: float, released: float) -> FloatArray:
    """ES plus what is left of the anti-procyclicality buffer.

    Parameters
    ----------
    es : ndarray, shape (accounts,)
        Un-buffered margin (ES, floored at 0), margin currency.
    buffer : float
        Buffer as a fraction of ES (0.25 for EMIR Art. 28(1)(a)).
    released : float
        Share of the buffer drawn down by stress (0 to 1, :func:`buffer_release`).

    Returns
    -------
    ndarray, shape (accounts,)
        ``es * (1 + buffer * (1 - released))``: ``es * (1 + buffer)`` in calm markets, ``es``
        when the whole buffer is released; never below ``es``.
    """
    if not 0.0 <= released <= 1.0:
        raise InvalidInput("released", released, "must be between 0 and 1")
    return np.asarray(es * (1.0 + buffer * (1.0 - released)))


def lookback_shortfall_years(first_day: np.datetime64, last_day: np.datetime64,
                             floor_years: float) -> float:
    """Years by which a look-back from ``first_day`` to ``last_day`` falls short of the floor.

    Parameters
    ----------
    first_day, last_day : numpy.datetime64
        First and last day of the scenario history (inclusive).
    floor_years : float
        Required look-back in years (365.25 days each).

    Returns
    -------
    float
        ``max(0, floor_years - days / 365.25)`` with ``days = last - first + 1``.
    """
    span = np.asarray(last_day, "datetime64[D]") - np.asarray(first_day, "datetime64[D]")
    days = int(span.astype(np.int64)) + 1
    return max(0.0, floor_years - days / DAYS_PER_YEAR)
