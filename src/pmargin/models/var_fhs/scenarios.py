"""Filtered historical scenarios: joint daily index returns and log-DVOL changes.

Rescaled to the current volatility (Barone-Adesi, Giannopoulos and Vosper 1999).

For each underlying, the daily log returns ``r_t`` and log-DVOL changes ``v_t`` are filtered by a
volatility model fitted with :mod:`arch` (EWMA with a fixed decay, or GARCH(1,1)): ``z_t = r_t /
sigma_t`` where ``sigma_t`` is the model's conditional volatility of day ``t`` (known the day
before). A filtered scenario of day ``t`` is ``z_t * sigma_now * sqrt(h)``; a stressed-period
scenario is the raw ``r_t * sqrt(h)``. Log-DVOL changes are filtered the same way on the days
DVOL exists; for a day before DVOL (2021-03-24) the scenario's vol change is the regression of
log-DVOL changes on log returns (fitted on the overlap) applied to the scenario's own daily
return. Scenarios are days, shared by every underlying, so the co-movement of BTC and ETH (and of
price and vol) is the one history showed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from pmargin._typing import BoolArray, FloatArray
from pmargin.errors import InvalidInput
from pmargin.market.history_series import DailySeries
from pmargin.models.var_fhs.params import VarFhsParams

__all__ = ["FilteredSeries", "ScenarioSet", "filter_series", "scenario_set", "vol_proxy_beta"]


@dataclass(frozen=True)
class FilteredSeries:
    """One underlying's daily moves and their filter.

    Attributes
    ----------
    day : ndarray of datetime64[D], shape (n,)
        Day of each move (close-to-close ending that day).
    ret, dvol_change : ndarray, shape (n,)
        Log return and log-DVOL change (NaN before DVOL exists).
    sigma_ret, sigma_vol : ndarray, shape (n,)
        Conditional daily volatility of each move (filter, known the day before; the vol
        filter runs on the days with DVOL only, NaN before).
    forecast_ret, forecast_vol : float
        One-day-ahead volatility after the last day.
    vol_proxy : ndarray of bool, shape (n,)
        Days without DVOL: their scenario vol change is the regression proxy.
    proxy_coef : (float, float)
        Intercept and slope of log-DVOL changes on log returns (fitted where both exist).
    last_day : numpy.datetime64
        The last day used.
    """

    day: np.ndarray
    ret: FloatArray
    dvol_change: FloatArray
    sigma_ret: FloatArray
    sigma_vol: FloatArray
    forecast_ret: float
    forecast_vol: float
    vol_proxy: BoolArray
    proxy_coef: tuple[float, float]
    last_day: np.datetime64


def vol_proxy_beta(ret: FloatArray, dv: FloatArray) -> tuple[float, float]:
    """OLS of log-DVOL changes on index log returns where both exist: (intercept, slope)."""
    ok = np.isfinite(ret) & np.isfinite(dv)
    if ok.sum() < 30:
        raise InvalidInput("dvol", int(ok.sum()), "too few days with DVOL to fit the proxy")
    x = np.column_stack([np.ones(int(ok.sum())), ret[ok]])
    coef = np.linalg.lstsq(x, dv[ok], rcond=None)[0]
    return float(coef[0]), float(coef[1])


def _conditional_vol(x: FloatArray, p: VarFhsParams) -> tuple[FloatArray, float]:
    """Conditional volatility of each observation and the one-day forecast (same units as x)."""
    from arch.univariate import GARCH, EWMAVariance, ZeroMean

    scale = 100.0  # arch works best on percent returns
    vol = EWMAVariance(p.ewma_lambda) if p.filter == "ewma" else GARCH(1, 0, 1)
    model = ZeroMean(x * scale, volatility=vol, rescale=False)
    res = model.fit(disp="off", show_warning=False)
    cond = np.asarray(res.conditional_volatility, dtype=np.float64) / scale
    fc = float(np.sqrt(res.forecast(horizon=1, reindex=False).variance.to_numpy()[-1, 0]))
    return cond, fc / scale


def filter_series(series: DailySeries, p: VarFhsParams) -> FilteredSeries:
    """Filter one underlying's daily history (only the days it holds: slice it first).

    Parameters
    ----------
    series : DailySeries
        Daily closes known at the valuation time, from ``history_start`` on.
    p : VarFhsParams
        Filter parameters.

    Returns
    -------
    FilteredSeries
        Moves, conditional volatilities and forecasts.
    """
    ret = series.log_returns
    dv = series.log_vol_changes
    day = series.day[1:]
    ok = np.isfinite(ret)
    ret, dv, day = ret[ok], dv[ok], day[ok]
    if ret.size < p.min_scenarios:
        raise InvalidInput("history", int(ret.size),
                           f"{series.asset}: fewer than min_scenarios={p.min_scenarios} daily "
                           "moves are known before the valuation time")
    proxy = ~np.isfinite(dv)
    coef = vol_proxy_beta(ret, dv)
    s_ret, f_ret = _conditional_vol(ret, p)
    s_vol = np.full(ret.size, np.nan)
    s_vol[~proxy], f_vol = _conditional_vol(dv[~proxy], p)
    return FilteredSeries(day, ret, dv, s_ret, s_vol, f_ret, f_vol, proxy, coef, day[-1])


@dataclass(frozen=True)
class ScenarioSet:
    """Joint scenarios of several underlyings (one column per scenario).

    Attributes
    ----------
    day : ndarray of datetime64[D], shape (s,)
        Historical day of each scenario.
    stressed : ndarray of bool, shape (s,)
        Raw stressed-period scenario (else filtered).
    move : dict of str to ndarray, shape (s,)
        Relative index move per underlying (``exp(log return) - 1``).
    vol_factor : dict of str to ndarray, shape (s,)
        Multiplier of every implied vol of the underlying (``exp(log-DVOL change)``).
    sigma_now : dict of str to float
        Daily volatility the filtered returns were rescaled to.
    vol_proxy : ndarray of bool, shape (s,)
        Scenario whose vol change is (for some underlying) the regression proxy.
    """

    day: np.ndarray
    stressed: BoolArray
    move: dict[str, FloatArray]
    vol_factor: dict[str, FloatArray]
    sigma_now: dict[str, float]
    vol_proxy: BoolArray

    @property
    def size(self) -> int:
        """Number of scenarios."""
        return int(self.day.size)


def scenario_set(filtered: dict[str, FilteredSeries], sigma_now: dict[str, float],
                 p: VarFhsParams) -> ScenarioSet:
    """Joint filtered (and stressed) scenarios on the days every underlying has.

    Parameters
    ----------
    filtered : dict of str to FilteredSeries
        Filtered history per underlying.
    sigma_now : dict of str to float
        Current daily volatility of each underlying's returns.
    p : VarFhsParams
        Horizon and stressed periods.

    Returns
    -------
    ScenarioSet
        Filtered scenarios of every common day, then the raw scenarios of the stressed days.
    """
    names = sorted(filtered)
    common = filtered[names[0]].day
    for u in names[1:]:
        common = np.intersect1d(common, filtered[u].day)
    root_h = math.sqrt(p.horizon_days)
    stress_mask = np.zeros(common.size, bool)
    for sp_ in p.stressed_periods:
        stress_mask |= (common >= np.datetime64(sp_.start, "D")) \
            & (common <= np.datetime64(sp_.end, "D"))
    move: dict[str, FloatArray] = {}
    vol_factor: dict[str, FloatArray] = {}
    proxy = np.zeros(common.size + int(stress_mask.sum()), bool)
    for u in names:
        f = filtered[u]
        i = np.searchsorted(f.day, common)
        r_day = np.concatenate([f.ret[i] / f.sigma_ret[i] * sigma_now[u],
                                f.ret[i][stress_mask]])
        v_day = np.concatenate([f.dvol_change[i] / f.sigma_vol[i] * f.forecast_vol,
                                f.dvol_change[i][stress_mask]])
        no_vol = np.concatenate([f.vol_proxy[i], f.vol_proxy[i][stress_mask]])
        a, b = f.proxy_coef
        v_day = np.where(no_vol, a + b * r_day, v_day)   # days before DVOL: the regression
        move[u] = np.expm1(r_day * root_h)
        vol_factor[u] = np.exp(v_day * root_h)
        proxy |= no_vol
    day = np.concatenate([common, common[stress_mask]])
    stressed = np.r_[np.zeros(common.size, bool), np.ones(int(stress_mask.sum()), bool)]
    return ScenarioSet(day, stressed, move, vol_factor, dict(sigma_now), proxy)


def history_is_fresh(last_day: np.datetime64, when: datetime, p: VarFhsParams) -> bool:
    """Whether the last known day closed within ``max_history_gap_days`` of ``when``."""
    close = (last_day.astype("datetime64[D]") + np.timedelta64(1, "D")).astype("datetime64[s]")
    gap = (np.datetime64(when.replace(tzinfo=None), "s") - close) / np.timedelta64(1, "D")
    return bool(gap <= p.max_history_gap_days)
