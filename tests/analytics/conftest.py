"""Generated hourly histories for the analytics tests (no ../shared needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from pmargin.analytics.history_params import load_history_params
from pmargin.analytics.series import HistorySeries, series_from_frames

START = datetime(2020, 1, 1, tzinfo=UTC)
"""First bar of the generated series (bar start)."""
DVOL_START = datetime(2020, 3, 1, tzinfo=UTC)
"""First day of the generated DVOL."""


def generated_frames(days: int = 120, sigma: float = 0.6, seed: int = 7,
                     dvol_pct: float = 55.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hourly GBM closes (annual vol ``sigma``) and a daily DVOL from DVOL_START."""
    rng = np.random.default_rng(seed)
    n = days * 24
    r = rng.normal(0.0, sigma / np.sqrt(8760.0), n)
    close = 10_000.0 * np.exp(np.cumsum(r))
    ts = pd.date_range(START, periods=n, freq="h", tz="UTC")
    prices = pd.DataFrame({"timestamp": ts, "close": close})
    d = pd.date_range(DVOL_START, START + pd.Timedelta(days=days), freq="D", tz="UTC")
    opens = dvol_pct + 5.0 * np.sin(np.arange(d.size) / 3.0)
    dvol = pd.DataFrame({"timestamp": d, "open": opens})
    return prices, dvol


@pytest.fixture(scope="session")
def gen_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generated_frames()


@pytest.fixture(scope="session")
def gen_series(gen_frames: tuple[pd.DataFrame, pd.DataFrame]) -> HistorySeries:
    prices, dvol = gen_frames
    return series_from_frames("BTC", prices, dvol, load_history_params(), source="generated")
