"""Daily history of an underlying from the shared data: index closes and DVOL.

Read from ``data/prices/<asset>_usd_1h.csv.gz`` (hourly bars, timestamp = start of the bar) and
``data/vol/<asset>_dvol_1d.csv.gz`` (daily DVOL in percent). Day ``d``'s close is the close of
its last hourly bar (23:00), i.e. the price at ``d + 1`` 00:00 UTC; DVOL's daily close is the
value at the same instant. A day is *known* from ``d + 1`` 00:00 UTC on: nothing later than a
valuation time is ever used (:meth:`DailySeries.known_at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from pmargin._typing import FloatArray
from pmargin.errors import InvalidInput
from pmargin.shared_folder import shared_folder

__all__ = ["DailySeries", "find_history_folder", "load_daily_series"]


@dataclass(frozen=True)
class DailySeries:
    """Daily closes of one underlying.

    Attributes
    ----------
    asset : str
        Upper-case coin (``BTC``).
    day : ndarray of datetime64[D], shape (n,)
        UTC day of each close (the close is at the end of the day).
    close : ndarray, shape (n,)
        Index close, USD.
    dvol : ndarray, shape (n,)
        DVOL close as a decimal (0.55 = 55 %); NaN before DVOL exists.
    """

    asset: str
    day: np.ndarray
    close: FloatArray
    dvol: FloatArray

    def known_at(self, when: datetime) -> DailySeries:
        """The days whose close is known at ``when`` (closed before it)."""
        cutoff = np.datetime64(when.replace(tzinfo=None), "s")
        end = self.day.astype("datetime64[s]") + np.timedelta64(1, "D")
        keep = end <= cutoff
        return DailySeries(self.asset, self.day[keep], self.close[keep], self.dvol[keep])

    def _one_day(self, x: FloatArray) -> FloatArray:
        """``diff(x)`` where consecutive rows are consecutive days, else NaN."""
        d = np.diff(x)
        gap = np.diff(self.day.astype("datetime64[D]").astype(np.int64)) != 1
        return np.asarray(np.where(gap, np.nan, d))

    @property
    def log_returns(self) -> FloatArray:
        """Daily log returns of the index, shape (n - 1,), aligned with ``day[1:]``.

        NaN across a missing day.
        """
        return self._one_day(np.log(self.close))

    @property
    def log_vol_changes(self) -> FloatArray:
        """Daily changes of log DVOL, shape (n - 1,).

        NaN where either day has no DVOL, or across a missing day.
        """
        return self._one_day(np.log(self.dvol))


def find_history_folder() -> Path:
    """The shared ``data`` folder holding ``prices/`` and ``vol/``.

    Raises
    ------
    InvalidInput
        When the shared folder is not found (set ``PMARGIN_SHARED``).
    """
    root = shared_folder((Path.cwd().parent / "shared",
                          Path(__file__).resolve().parents[4] / "shared"), "data/prices")
    if root is None:
        raise InvalidInput("PMARGIN_SHARED", None,
                           "history data (data/prices, data/vol) not found; set PMARGIN_SHARED "
                           "to the shared folder")
    return root / "data"


def _read(path: Path, field: str) -> tuple[np.ndarray, FloatArray]:
    import pandas as pd

    if not path.is_file():
        raise InvalidInput(field, str(path), "history file not found")
    df = pd.read_csv(path, usecols=["timestamp", "close"])
    ts = pd.to_datetime(df["timestamp"], utc=True).dt.tz_localize(None).to_numpy()
    close = df["close"].to_numpy(np.float64)
    if not np.all(np.isfinite(close)) or np.any(close <= 0):
        raise InvalidInput(field, str(path), "has non-positive or non-finite closes")
    return ts.astype("datetime64[s]"), close


def load_daily_series(asset: str, data: Path | None = None) -> DailySeries:
    """Daily index closes and DVOL of ``asset`` from the shared data.

    Parameters
    ----------
    asset : str
        ``BTC`` or ``ETH`` (any case).
    data : Path, optional
        The shared ``data`` folder (default: :func:`find_history_folder`).

    Returns
    -------
    DailySeries
        One row per UTC day whose 23:00 hourly bar exists (its close is the day's close); DVOL
        joined on the day (NaN where absent).

    Raises
    ------
    InvalidInput
        When the files are missing or hold bad values.
    """
    a = asset.upper()
    folder = data if data is not None else find_history_folder()
    ts, close = _read(folder / "prices" / f"{a.lower()}_usd_1h.csv.gz", "asset")
    day = ts.astype("datetime64[D]")
    last = np.r_[day[1:] != day[:-1], True]          # last bar of each day
    at_23 = (ts[last] - day[last].astype("datetime64[s]")) == np.timedelta64(23 * 3600, "s")
    d_close = day[last][at_23]                        # days whose 23:00 bar exists
    c_close = close[last][at_23]
    dvol = np.full(d_close.size, np.nan)
    vol_path = folder / "vol" / f"{a.lower()}_dvol_1d.csv.gz"
    if vol_path.is_file():
        vts, vclose = _read(vol_path, "asset")
        vday = vts.astype("datetime64[D]")
        idx = np.searchsorted(vday, d_close)
        ok = (idx < vday.size) & (vday[np.minimum(idx, vday.size - 1)] == d_close)
        dvol[ok] = vclose[idx[ok]] / 100.0
    return DailySeries(a, d_close, c_close, dvol)
