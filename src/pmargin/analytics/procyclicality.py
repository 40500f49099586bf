"""Procyclicality of margin (issue 12.4): how hard margin swings, over history and in crashes.

For a margin series ``m_t`` (one model, one portfolio, USD, one value per day):

* **peak-to-trough ratio**: ``max(m) / min(m)`` over the window (1 = flat; ``inf`` when the
  smallest margin is 0 and the largest is not; NaN when the window holds no margin);
* **largest n-day increase** (relative, n = 1 and 5): ``max_t m_t / m_{t-n days} - 1`` over the
  days ``t`` of the window, ``m_{t-n}`` taken ``n`` calendar days earlier (possibly before the
  window: an increase *into* the crash counts). Pairs with a missing or zero earlier margin are
  left out (a relative increase from 0 is undefined). NaN when no pair exists.

Crash windows are in ``analytics/crash_episodes.toml`` (whole UTC days, inclusive), copied from
``../shared/data/crash_episodes.md``; a data test checks they match the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from pmargin.analytics.backtest import BacktestResult
from pmargin.errors import InvalidInput
from pmargin.paramfiles import Shipped, load_params_file

__all__ = ["CrashEpisode", "CrashEpisodes", "load_crash_episodes", "max_increase",
           "peak_to_trough", "procyclicality", "series_measures"]


class CrashEpisode(BaseModel):
    """One crash window: whole UTC days ``start`` to ``end`` inclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> CrashEpisode:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class CrashEpisodes(BaseModel):
    """Validated ``crash_episodes.toml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    episodes: list[CrashEpisode]


def load_crash_episodes(path: str | Path = "crash_episodes",
                        overrides: Mapping[str, Any] | None = None) -> CrashEpisodes:
    """Load the crash windows (shipped ``crash_episodes.toml`` or a file)."""
    return load_params_file(CrashEpisodes, path,
                            Shipped("pmargin.analytics", "", "crash episodes"), overrides)


def peak_to_trough(margin: Sequence[float] | np.ndarray) -> float:
    """``max / min`` of a margin series, NaN ignored (module doc).

    Parameters
    ----------
    margin : array_like, shape (n,)
        Margin (any currency, >= 0).

    Returns
    -------
    float
        Ratio (>= 1), ``inf`` if the minimum is 0 and the maximum is not, NaN if empty.
    """
    m = np.asarray(margin, dtype=np.float64)
    m = m[np.isfinite(m)]
    if m.size == 0:
        return float("nan")
    lo, hi = float(m.min()), float(m.max())
    if lo < 0:
        raise InvalidInput("margin", lo, "must not be negative")
    if hi == 0.0:
        return 1.0
    return float("inf") if lo == 0.0 else hi / lo


def max_increase(margin: pd.Series, days: int,
                 window: tuple[date, date] | None = None) -> float:
    """Largest relative increase over ``days`` calendar days (module doc).

    Parameters
    ----------
    margin : Series
        Margin indexed by day (``DatetimeIndex``, one value per day at most).
    days : int
        Lag in calendar days (>= 1).
    window : (date, date), optional
        Only increases ending on these days (inclusive) count.

    Returns
    -------
    float
        ``max m_t / m_{t - days} - 1`` (NaN if no pair has both margins and a positive earlier
        one).
    """
    if not (isinstance(days, int) and days >= 1):
        raise InvalidInput("days", days, "must be a positive whole number")
    idx = pd.DatetimeIndex(margin.index).normalize()
    s = pd.Series(np.asarray(margin, dtype=np.float64), index=idx)
    prev = s.reindex(idx - pd.Timedelta(days=days)).to_numpy()
    now = s.to_numpy()
    ok = np.isfinite(now) & np.isfinite(prev) & (prev > 0)
    if window is not None:
        d = idx.tz_localize(None) if idx.tz is not None else idx
        ok &= (d >= pd.Timestamp(window[0])) & (d <= pd.Timestamp(window[1]))
    if not ok.any():
        return float("nan")
    return float((now[ok] / prev[ok]).max() - 1.0)


def series_measures(margin: pd.Series, window: tuple[date, date] | None = None
                    ) -> dict[str, float]:
    """Peak-to-trough ratio and largest 1- and 5-day increases of one margin series.

    Parameters
    ----------
    margin : Series
        Margin indexed by day.
    window : (date, date), optional
        Restrict to these days (inclusive; increases may start before).

    Returns
    -------
    dict
        ``peak_to_trough``, ``max_1d_increase``, ``max_5d_increase`` and ``days`` (days of the
        window with a margin).
    """
    idx = pd.DatetimeIndex(margin.index).normalize()
    d = idx.tz_localize(None) if idx.tz is not None else idx
    inside = np.ones(idx.size, bool) if window is None else \
        (d >= pd.Timestamp(window[0])) & (d <= pd.Timestamp(window[1]))
    vals = np.asarray(margin, dtype=np.float64)[inside]
    return {"peak_to_trough": peak_to_trough(vals),
            "max_1d_increase": max_increase(margin, 1, window),
            "max_5d_increase": max_increase(margin, 5, window),
            "days": int(np.isfinite(vals).sum())}


def procyclicality(result: BacktestResult, episodes: CrashEpisodes | None = None,
                   margin: str = "IM") -> pd.DataFrame:
    """Procyclicality of every model and portfolio of a backtest, over history and per episode.

    Parameters
    ----------
    result : BacktestResult
        A run (margins in the margin currency are converted to USD with ``mc_usd``).
    episodes : CrashEpisodes, optional
        Crash windows (default the shipped ``crash_episodes.toml``); windows outside the run
        are left out.
    margin : {"IM", "MM"}
        Which margin.

    Returns
    -------
    DataFrame
        One row per ``model``, ``portfolio`` and ``window`` (``"history"`` or the episode name)
        with ``start``, ``end`` and the fields of :func:`series_measures`.
    """
    if margin not in ("IM", "MM"):
        raise InvalidInput("margin", margin, "must be 'IM' or 'MM'")
    ep = episodes if episodes is not None else load_crash_episodes()
    arr = result.im if margin == "IM" else result.mm
    usd = arr * result.mc_usd[:, None, None]
    dates = pd.DatetimeIndex(result.dates)
    first = dates.min().date() if dates.size else None
    last = dates.max().date() if dates.size else None
    windows: list[tuple[str, tuple[date, date] | None]] = [("history", None)]
    windows += [(e.name, (e.start, e.end)) for e in ep.episodes
                if first is not None and last is not None
                and e.end >= first and e.start <= last]
    rows = []
    for j, model in enumerate(result.models):
        for k, pf in enumerate(result.portfolios):
            s = pd.Series(usd[:, j, k], index=dates)
            for name, w in windows:
                lo, hi = w if w is not None else (first, last)
                rows.append({"model": model, "portfolio": pf, "window": name,
                             "start": str(lo), "end": str(hi), **series_measures(s, w)})
    return pd.DataFrame(rows)
