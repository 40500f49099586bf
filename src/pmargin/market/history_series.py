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
from typing import TYPE_CHECKING

import numpy as np

from pmargin._typing import FloatArray
from pmargin.errors import InvalidInput
from pmargin.shared_folder import shared_folder

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DailySeries", "HistoryFiles", "find_history_folder", "history_root",
           "load_daily_series", "read_history_files"]


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


def history_root(shared: Path | None = None) -> Path:
    """The shared folder holding ``data/prices`` and ``data/vol`` (the one history location).

    Parameters
    ----------
    shared : Path, optional
        Explicit folder (the one holding ``data/``); default ``$PMARGIN_SHARED``, else
        ``../shared`` of the working directory or of the checkout.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    InvalidInput
        If ``shared`` has no ``data/prices`` folder, or no folder is found (field ``shared``);
        a ``PMARGIN_SHARED`` that is not such a folder (field ``PMARGIN_SHARED``).
    """
    if shared is not None:
        p = Path(shared)
        if not (p / "data" / "prices").is_dir():
            raise InvalidInput("shared", str(shared), "has no data/prices folder")
        return p
    found = shared_folder((Path.cwd().parent / "shared",
                           Path(__file__).resolve().parents[4] / "shared"), "data/prices")
    if found is None:
        raise InvalidInput("shared", None,
                           "no shared data folder found (set PMARGIN_SHARED or pass shared=)")
    return found


def find_history_folder(shared: Path | None = None) -> Path:
    """The shared ``data`` folder holding ``prices/`` and ``vol/`` (:func:`history_root`)."""
    return history_root(shared) / "data"


def _history_paths(asset: str, data: Path) -> tuple[Path, Path]:
    """The hourly price file and the daily DVOL file of ``asset`` in the ``data`` folder."""
    return (data / "prices" / f"{asset.lower()}_usd_1h.csv.gz",
            data / "vol" / f"{asset.lower()}_dvol_1d.csv.gz")


@dataclass(frozen=True)
class HistoryFiles:
    """The raw history files of one asset, as read (no conversion, no checks of values).

    Attributes
    ----------
    asset : str
        Upper-case coin.
    prices : DataFrame
        ``prices/<asset>_usd_1h.csv.gz``: columns ``timestamp`` (text, UTC start of the hourly
        bar) and ``close`` (USD).
    dvol : DataFrame or None
        ``vol/<asset>_dvol_1d.csv.gz``: columns ``timestamp`` (text, 00:00 UTC of the day),
        ``open`` and ``close`` (DVOL in percent); None when the file is absent.
    data : Path
        The ``data`` folder read.
    """

    asset: str
    prices: pd.DataFrame
    dvol: pd.DataFrame | None
    data: Path

    @property
    def prices_path(self) -> Path:
        """The hourly price file."""
        return _history_paths(self.asset, self.data)[0]

    @property
    def dvol_path(self) -> Path:
        """The daily DVOL file."""
        return _history_paths(self.asset, self.data)[1]

    @property
    def source(self) -> str:
        """The files, relative to :attr:`data` (``prices/... + vol/...``)."""
        return (f"{self.prices_path.relative_to(self.data)} + "
                f"{self.dvol_path.relative_to(self.data)}")


def read_history_files(asset: str, data: Path | None = None, *,
                       require_dvol: bool = False) -> HistoryFiles:
    """Read the hourly price file and the daily DVOL file of ``asset`` (the one reader).

    Parameters
    ----------
    asset : str
        Coin (any case), e.g. ``BTC``.
    data : Path, optional
        The shared ``data`` folder (default: :func:`find_history_folder`).
    require_dvol : bool, optional
        Whether a missing DVOL file is an error (else ``dvol`` is None).

    Returns
    -------
    HistoryFiles
        The two files' columns.

    Raises
    ------
    InvalidInput
        When a required file is missing (field ``asset``).
    """
    import pandas as pd

    a = asset.upper()
    folder = data if data is not None else find_history_folder()
    price_path, dvol_path = _history_paths(a, folder)
    for path in (price_path, dvol_path) if require_dvol else (price_path,):
        if not path.is_file():
            raise InvalidInput("asset", str(path), "history file not found")
    prices = pd.read_csv(price_path, usecols=["timestamp", "close"])
    dvol = (pd.read_csv(dvol_path, usecols=["timestamp", "open", "close"])
            if dvol_path.is_file() else None)
    return HistoryFiles(a, prices, dvol, folder)


def _closes(frame: pd.DataFrame, path: Path) -> tuple[np.ndarray, FloatArray]:
    """Bar times (naive UTC, datetime64[s]) and positive finite closes of the file ``path``."""
    import pandas as pd

    ts = pd.to_datetime(frame["timestamp"], utc=True).dt.tz_localize(None).to_numpy()
    close = frame["close"].to_numpy(np.float64)
    if not np.all(np.isfinite(close)) or np.any(close <= 0):
        raise InvalidInput("asset", str(path), "has non-positive or non-finite closes")
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
    files = read_history_files(asset, data)
    a = files.asset
    ts, close = _closes(files.prices, files.prices_path)
    day = ts.astype("datetime64[D]")
    last = np.r_[day[1:] != day[:-1], True]          # last bar of each day
    at_23 = (ts[last] - day[last].astype("datetime64[s]")) == np.timedelta64(23 * 3600, "s")
    d_close = day[last][at_23]                        # days whose 23:00 bar exists
    c_close = close[last][at_23]
    dvol = np.full(d_close.size, np.nan)
    if files.dvol is not None:
        vts, vclose = _closes(files.dvol, files.dvol_path)
        vday = vts.astype("datetime64[D]")
        idx = np.searchsorted(vday, d_close)
        ok = (idx < vday.size) & (vday[np.minimum(idx, vday.size - 1)] == d_close)
        dvol[ok] = vclose[idx[ok]] / 100.0
    return DailySeries(a, d_close, c_close, dvol)
