"""Procyclicality measures against hand calculations; crash windows against the shared file."""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pandas as pd
import pytest

from pmargin.analytics.backtest import BacktestResult, BacktestSpec
from pmargin.analytics.procyclicality import (
    load_crash_episodes,
    max_increase,
    peak_to_trough,
    procyclicality,
    series_measures,
)
from pmargin.errors import InvalidInput
from tests.conftest import shared_path

DAYS = pd.date_range("2022-11-01", periods=10, freq="D", tz="UTC")
#                 11-01 02   03   04   05   06   07   08   09   10
MARGIN = [100, 100, 110, 100, 100, 120, 150, 300, 240, 200]


def test_peak_to_trough_by_hand():
    assert peak_to_trough(MARGIN) == pytest.approx(3.0)          # 300 / 100
    assert peak_to_trough([5.0, np.nan, 10.0]) == pytest.approx(2.0)
    assert peak_to_trough([0.0, 2.0]) == float("inf")
    assert peak_to_trough([0.0, 0.0]) == 1.0
    assert np.isnan(peak_to_trough([np.nan]))
    with pytest.raises(InvalidInput, match="margin"):
        peak_to_trough([-1.0, 2.0])


def test_largest_increases_by_hand():
    s = pd.Series(MARGIN, index=DAYS, dtype=float)
    # 1 day: 150 -> 300 on 11-08 is +100 %; 5 days: 11-03 110 -> 11-08 300 = +172.7 %
    assert max_increase(s, 1) == pytest.approx(1.0)
    assert max_increase(s, 5) == pytest.approx(300 / 110 - 1)
    # only increases ending 11-09..11-10: both fall (240/300 - 1 = -0.2, 200/240 - 1 = -1/6)
    assert max_increase(s, 1, (date(2022, 11, 9), date(2022, 11, 10))) == pytest.approx(-1 / 6)
    # 5 days ending 11-09: from 11-04 100 -> 240, ending 11-10: 11-05 100 -> 200
    assert max_increase(s, 5, (date(2022, 11, 9), date(2022, 11, 10))) == pytest.approx(1.4)


def test_increase_skips_gaps_and_zero_margins():
    idx = pd.DatetimeIndex(["2022-01-01", "2022-01-02", "2022-01-04", "2022-01-05"], tz="UTC")
    s = pd.Series([0.0, 5.0, 10.0, 12.0], index=idx)
    # 01-02 from 0 is undefined, 01-04 has no 01-03: only 01-05 / 01-04 = 1.2
    assert max_increase(s, 1) == pytest.approx(0.2)
    assert np.isnan(max_increase(s, 5))
    with pytest.raises(InvalidInput, match="days"):
        max_increase(s, 0)


def test_series_measures_in_a_window():
    s = pd.Series(MARGIN, index=DAYS, dtype=float)
    got = series_measures(s, (date(2022, 11, 7), date(2022, 11, 10)))
    assert got == {"peak_to_trough": pytest.approx(2.0),      # 300 / 150 inside the window
                   "max_1d_increase": pytest.approx(1.0),
                   "max_5d_increase": pytest.approx(300 / 110 - 1), "days": 4}


def _result() -> BacktestResult:
    n = len(DAYS)
    im = np.empty((n, 2, 1))
    im[:, 0, 0] = MARGIN
    im[:, 1, 0] = 50.0
    return BacktestResult(
        spec=BacktestSpec(), dates=pd.DatetimeIndex(DAYS), models=["a", "flat"],
        portfolios=["p"], index_price=np.ones(n), atm_vol=np.ones(n),
        vol_is_proxy=np.zeros(n, bool), mc_usd=np.full(n, 2.0), im=im, mm=im * 0.8,
        loss={1: np.zeros((n, 1))})


def test_procyclicality_of_a_backtest_result():
    pc = procyclicality(_result())
    # the run covers 2022-11-01..10: history and the FTX window (2022-11-07..10) only
    assert sorted(set(pc["window"])) == ["FTX collapse", "history"]
    a = pc[(pc.model == "a") & (pc.window == "history")].iloc[0]
    assert a.peak_to_trough == pytest.approx(3.0)
    assert a.max_1d_increase == pytest.approx(1.0)
    assert a.days == 10
    ftx = pc[(pc.model == "a") & (pc.window == "FTX collapse")].iloc[0]
    assert (ftx.start, ftx.end, ftx.peak_to_trough) == ("2022-11-07", "2022-11-10",
                                                        pytest.approx(2.0))
    flat = pc[(pc.model == "flat") & (pc.window == "history")].iloc[0]
    assert flat.peak_to_trough == 1.0
    assert flat.max_5d_increase == 0.0
    with pytest.raises(InvalidInput, match="margin"):
        procyclicality(_result(), margin="XM")


@pytest.mark.data
def test_shipped_windows_match_crash_episodes_md():
    text = shared_path("data", "crash_episodes.md").read_text(encoding="utf-8")
    found = {}
    for name, a, b in re.findall(r"^\| ([^|]+?) \((\d{4}-\d\d-\d\d) → (\d{4}-\d\d-\d\d)\) \|",
                                 text, flags=re.M):
        found[name] = (date.fromisoformat(a), date.fromisoformat(b))
    shipped = {e.name: (e.start, e.end) for e in load_crash_episodes().episodes}
    assert len(found) == 10
    assert shipped == found
