"""Hourly history of one asset: index price, DVOL and the realised-vol proxy before DVOL.

Row convention
--------------
The price files label each hourly bar with its **opening** hour. A :class:`HistorySeries` row is
labelled with the instant it describes, ``time`` = bar start + 1 h, and its ``index_price`` is
that bar's close: the last price known at ``time``. Its ``dvol`` is the **open** of the DVOL daily
bar of ``time``'s UTC day (the value at 00:00 of that day, so nothing is taken from the future).

ATM vol
-------
``atm_vol`` (decimal, annualised, 30-day) is DVOL / 100 where DVOL exists (from 2021-03-24).
Before that it is the **proxy**: the zero-mean realised vol of the hourly log returns over a
trailing window (``proxy.window_hours``, 720 h = 30 days),
``sqrt(hours_per_year * mean(r^2))``, times one ratio fitted on the overlap with DVOL (the
geometric mean of DVOL / realised vol over the days of the overlap, at 00:00 UTC, which makes the
mean log error zero). Rows using the proxy have ``vol_is_proxy = True``; rows of the first window,
where neither exists, are dropped (the series starts ``window_hours`` after the first bar).
:class:`ProxyFit` records the ratio and how close the proxy is to DVOL on the overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from pmargin.analytics.history_params import HistoryParams, load_history_params
from pmargin.conventions import ensure_utc
from pmargin.errors import InvalidInput
from pmargin.market.history_series import history_root, read_history_files

__all__ = ["ASSETS", "HistoryPoint", "HistorySeries", "ProxyFit", "default_shared",
           "fit_proxy", "load_series", "series_from_frames"]

ASSETS: tuple[str, ...] = ("BTC", "ETH")
"""Assets with hourly prices and DVOL in ../shared/data."""

_BAR = pd.Timedelta(hours=1)

default_shared = history_root
"""The shared folder holding ``data/`` (:func:`pmargin.market.history_series.history_root`)."""


@dataclass(frozen=True, slots=True)
class ProxyFit:
    """The realised-vol proxy of the ATM vol and its fit on the DVOL overlap.

    Attributes
    ----------
    window_hours : int
        Trailing window of the realised vol (hours).
    ratio : float
        DVOL / realised vol scale (geometric mean over the overlap days).
    overlap_days : int
        Days used (DVOL and a full realised-vol window both present).
    rmse : float
        Root-mean-square of proxy − DVOL over the overlap (vol as a decimal: 0.10 = 10 points).
    mae : float
        Mean absolute proxy − DVOL (decimal).
    bias : float
        Mean proxy − DVOL (decimal).
    log_rmse : float
        Root-mean-square of ln(proxy / DVOL).
    correlation : float
        Pearson correlation of proxy and DVOL over the overlap.
    """

    window_hours: int
    ratio: float
    overlap_days: int
    rmse: float
    mae: float
    bias: float
    log_rmse: float
    correlation: float


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """Market state of one asset at one instant (see the module docstring)."""

    time: datetime
    index_price: float
    atm_vol: float
    vol_is_proxy: bool


def _realised_vol(close: pd.Series, window: int, hours_per_year: float) -> pd.Series:
    r = np.log(close.to_numpy(dtype=np.float64))
    r2 = np.empty_like(r)
    r2[0] = np.nan
    r2[1:] = np.diff(r) ** 2
    ms = pd.Series(r2, index=close.index).rolling(window, min_periods=window).mean()
    out: pd.Series = np.sqrt(ms * hours_per_year)
    return out


def fit_proxy(realised: pd.Series, dvol: pd.Series, window_hours: int) -> ProxyFit:
    """Fit the proxy ratio on the overlap of DVOL and a realised vol, and measure its error.

    Parameters
    ----------
    realised : Series
        Realised vol (decimal) by ``time`` (the instants of a :class:`HistorySeries`).
    dvol : Series
        DVOL (decimal) by ``time``, NaN where absent.
    window_hours : int
        Window of ``realised`` (recorded).

    Returns
    -------
    ProxyFit
        Ratio and errors over the instants at 00:00 UTC where both are present.

    Raises
    ------
    InvalidInput
        If fewer than 30 overlap days exist (field ``dvol``).
    """
    idx = pd.DatetimeIndex(realised.index)
    midnight = (idx.hour == 0) & (idx.minute == 0)
    both = midnight & np.isfinite(realised.to_numpy()) & np.isfinite(dvol.to_numpy())
    rv = realised.to_numpy()[both]
    dv = dvol.to_numpy()[both]
    if rv.size < 30:
        raise InvalidInput("dvol", int(rv.size),
                           "needs at least 30 days overlapping a full realised-vol window")
    ratio = float(np.exp(np.mean(np.log(dv / rv))))
    proxy = ratio * rv
    err = proxy - dv
    return ProxyFit(
        window_hours=window_hours, ratio=ratio, overlap_days=int(rv.size),
        rmse=float(np.sqrt(np.mean(err ** 2))), mae=float(np.mean(np.abs(err))),
        bias=float(np.mean(err)), log_rmse=float(np.sqrt(np.mean(np.log(proxy / dv) ** 2))),
        correlation=float(np.corrcoef(proxy, dv)[0, 1]),
    )


@dataclass(frozen=True, eq=False)
class HistorySeries:
    """Hourly index, DVOL and ATM vol of one asset.

    Attributes
    ----------
    asset : str
        ``"BTC"`` or ``"ETH"`` (any upper-case coin for generated series).
    frame : DataFrame
        Indexed by ``time`` (aware UTC, hourly, consecutive), columns ``index_price`` (USD),
        ``dvol`` (decimal, NaN before DVOL starts), ``realised_vol`` (decimal, unscaled),
        ``proxy_vol`` (decimal, ratio × realised), ``atm_vol`` (decimal: DVOL, else the proxy)
        and ``vol_is_proxy`` (bool).
    proxy : ProxyFit
        The proxy ratio and its fit on the overlap.
    source : str
        Where the data came from.
    """

    asset: str
    frame: pd.DataFrame
    proxy: ProxyFit
    source: str

    @property
    def first_time(self) -> datetime:
        """First instant with an ATM vol (aware UTC)."""
        return self._times[0]

    @property
    def last_time(self) -> datetime:
        """Last instant (aware UTC): the end of the last hourly bar."""
        return self._times[-1]

    @property
    def dvol_start(self) -> datetime | None:
        """First instant whose ATM vol is DVOL (None if the series has no DVOL)."""
        ok = ~self.frame["vol_is_proxy"].to_numpy()
        return self.frame.index[int(np.argmax(ok))].to_pydatetime() if ok.any() else None

    @property
    def _times(self) -> list[datetime]:
        return [t.to_pydatetime() for t in self.frame.index[[0, -1]]] if len(self.frame) else []

    def locate(self, when: datetime | pd.Timestamp, field: str = "when") -> int:
        """Row of the last instant at or before ``when`` (``when`` floored to the hour).

        Parameters
        ----------
        when : datetime
            Aware datetime.
        field : str
            Field named in errors.

        Returns
        -------
        int
            Row position in :attr:`frame`.

        Raises
        ------
        InvalidInput
            If ``when`` is naive, before :attr:`first_time`, or more than one hour after
            :attr:`last_time` (stale: no newer price).
        """
        if not isinstance(when, datetime):
            raise InvalidInput(field, when, "must be a timezone-aware datetime")
        w = ensure_utc(when, field)
        idx = self.frame.index
        first, last = idx[0], idx[-1]
        if w < first or w >= last + _BAR:
            raise InvalidInput(
                field, w.isoformat(),
                f"is outside the {self.asset} history {first.isoformat()} .. "
                f"{(last + _BAR).isoformat()} (exclusive): no price known at that time")
        return int(idx.searchsorted(pd.Timestamp(w), side="right")) - 1

    def at(self, when: datetime) -> HistoryPoint:
        """Index and ATM vol known at ``when``.

        Parameters
        ----------
        when : datetime
            Aware datetime within the history (see :meth:`locate`).

        Returns
        -------
        HistoryPoint
            The row of the last instant at or before ``when``.
        """
        i = self.locate(when)
        row = self.frame.iloc[i]
        return HistoryPoint(self.frame.index[i].to_pydatetime(), float(row["index_price"]),
                            float(row["atm_vol"]), bool(row["vol_is_proxy"]))

    def daily(self, hour: int = 0, start: datetime | None = None,
              end: datetime | None = None) -> pd.DataFrame:
        """The rows at one hour of each day (a view of :attr:`frame`).

        Parameters
        ----------
        hour : int, optional
            UTC hour of the day (0-23).
        start, end : datetime, optional
            Inclusive bounds.

        Returns
        -------
        DataFrame
            Rows of :attr:`frame` at ``hour``.
        """
        if not (isinstance(hour, int) and 0 <= hour <= 23):
            raise InvalidInput("hour", hour, "must be an integer hour 0-23")
        f = self.frame
        t = pd.DatetimeIndex(f.index)
        sel = f[(t.hour == hour) & (t.minute == 0)]
        if start is not None:
            sel = sel[sel.index >= pd.Timestamp(ensure_utc(start, "start"))]
        if end is not None:
            sel = sel[sel.index <= pd.Timestamp(ensure_utc(end, "end"))]
        return sel


def series_from_frames(asset: str, prices: pd.DataFrame, dvol: pd.DataFrame | None,
                       params: HistoryParams | None = None, source: str = "",
                       proxy_ratio: float | None = None) -> HistorySeries:
    """Build a :class:`HistorySeries` from hourly prices and daily DVOL frames.

    Parameters
    ----------
    asset : str
        Coin.
    prices : DataFrame
        Columns ``timestamp`` (aware UTC bar start, hourly, consecutive) and ``close`` (USD).
    dvol : DataFrame or None
        Columns ``timestamp`` (aware UTC, 00:00 of the day) and ``open`` (percent); None: no DVOL.
    params : HistoryParams, optional
        Parameters (default: the shipped ``history.toml``).
    source : str, optional
        Provenance text.
    proxy_ratio : float, optional
        Ratio of the proxy; default: fitted on the overlap (required when ``dvol`` is None or
        has no overlap of 30 days).

    Returns
    -------
    HistorySeries
        The series.

    Raises
    ------
    InvalidInput
        On missing columns, unsorted or non-hourly timestamps, non-positive prices.
    """
    p = params or load_history_params()
    a = str(asset).upper()
    for col in ("timestamp", "close"):
        if col not in prices.columns:
            raise InvalidInput(f"prices.{col}", None, "column is missing")
    ts = pd.DatetimeIndex(pd.to_datetime(prices["timestamp"], utc=True))
    close = prices["close"].to_numpy(dtype=np.float64)
    if len(ts) < 2:
        raise InvalidInput("prices", len(ts), "needs at least two hourly bars")
    wrong = np.asarray((ts[1:] - ts[:-1]) != _BAR)
    if wrong.any():
        bad = int(np.argmax(wrong)) + 1
        raise InvalidInput("prices.timestamp", str(ts[bad]),
                           "bars must be consecutive hours (sorted, no gap or duplicate)")
    if not np.all(np.isfinite(close) & (close > 0.0)):
        bad = int(np.argmax(~(np.isfinite(close) & (close > 0.0))))
        raise InvalidInput(f"prices.close[{bad}]", float(close[bad]), "must be positive and finite")
    time = ts + _BAR
    frame = pd.DataFrame({"index_price": close}, index=pd.DatetimeIndex(time, name="time"))
    rv = _realised_vol(frame["index_price"], p.proxy.window_hours, p.index.hours_per_year)
    dv = pd.Series(np.nan, index=frame.index)
    if dvol is not None and len(dvol):
        for col in ("timestamp", "open"):
            if col not in dvol.columns:
                raise InvalidInput(f"dvol.{col}", None, "column is missing")
        days = pd.DatetimeIndex(pd.to_datetime(dvol["timestamp"], utc=True)).normalize()
        opens = pd.Series(dvol["open"].to_numpy(dtype=np.float64) / 100.0, index=days)
        opens = opens[~opens.index.duplicated()]
        dv = pd.Series(opens.reindex(pd.DatetimeIndex(frame.index).normalize()).to_numpy(),
                       index=frame.index)
    if proxy_ratio is None:
        fit = fit_proxy(rv, dv, p.proxy.window_hours)
    else:
        if not (math.isfinite(proxy_ratio) and proxy_ratio > 0.0):
            raise InvalidInput("proxy_ratio", proxy_ratio, "must be positive and finite")
        fit = ProxyFit(p.proxy.window_hours, float(proxy_ratio), 0, math.nan, math.nan,
                       math.nan, math.nan, math.nan)
    proxy = rv * fit.ratio
    has_dvol = dv.notna().to_numpy()
    frame["dvol"] = dv.to_numpy()
    frame["realised_vol"] = rv.to_numpy()
    frame["proxy_vol"] = proxy.to_numpy()
    frame["atm_vol"] = np.where(has_dvol, dv.to_numpy(), proxy.to_numpy())
    frame["vol_is_proxy"] = ~has_dvol
    frame = frame[np.isfinite(frame["atm_vol"].to_numpy())]
    return HistorySeries(a, frame, fit, source)


@lru_cache(maxsize=8)
def _load_cached(asset: str, root: Path) -> HistorySeries:
    files = read_history_files(asset, root / "data", require_dvol=True)
    dvol = None if files.dvol is None else files.dvol[["timestamp", "open"]]
    return series_from_frames(asset, files.prices, dvol, source=files.source)


def load_series(asset: str, shared: Path | None = None) -> HistorySeries:
    """Load the hourly history of one asset from ``../shared/data``.

    Parameters
    ----------
    asset : str
        ``"BTC"`` or ``"ETH"`` (case-insensitive).
    shared : Path, optional
        The shared folder (holding ``data/``); default ``$PMARGIN_SHARED`` or ``../shared``.

    Returns
    -------
    HistorySeries
        Index from ``prices/{asset}_usd_1h.csv.gz``, DVOL from ``vol/{asset}_dvol_1d.csv.gz``,
        the realised-vol proxy before DVOL (``vol_is_proxy``). Cached per asset and folder.

    Raises
    ------
    InvalidInput
        For an unknown asset or a missing file (field ``asset``), or no shared folder (field
        ``shared``). The files are read by :func:`pmargin.market.history_series.read_history_files`.
    """
    a = str(asset).strip().upper()
    if a not in ASSETS:
        raise InvalidInput("asset", asset, f"has no history (known: {', '.join(ASSETS)})")
    return _load_cached(a, default_shared(shared).resolve())

