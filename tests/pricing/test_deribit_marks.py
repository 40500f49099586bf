"""Black-76 reproduces Deribit's mark prices from Deribit's own implied volatilities.

``mark_price`` (coin) times ``underlying`` is the undiscounted Black-76 USD price with
F = ``underlying``, sigma = ``implied_volatility`` and tau = (expiry - timestamp) / 365 days.
The bounds below are the measured figures rounded up (see docs/pricing.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pmargin.pricing import black76, kernels

LATEST = "deribit_options_snapshot_20260822T153351Z.csv.gz"
YEAR = 365 * 86400.0


def load(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, parse_dates=["timestamp", "expiry_datetime"])


def mark_errors(df: pd.DataFrame, days_per_year: float = 365.0) -> dict[str, float]:
    tau = (df["expiry_datetime"] - df["timestamp"]).dt.total_seconds().to_numpy() / (
        days_per_year * 86400.0
    )
    f = df["underlying"].to_numpy()
    c = (df["option_type"] == "call").to_numpy()
    model = black76.inverse_price(f, df["strike"].to_numpy(), tau,
                                  df["implied_volatility"].to_numpy(), c)
    mark = df["mark_price"].to_numpy()
    err = np.abs(model - mark)
    big = mark > 0.001
    return {
        "rows": len(df),
        "median_abs_coin": float(np.median(err)),
        "p99_abs_coin": float(np.percentile(err, 99)),
        "max_abs_coin": float(err.max()),
        "median_rel_marks_gt_0.001": float(np.median(err[big] / mark[big])),
    }


def report(label: str, stats: dict[str, float], record_property, capsys) -> None:
    for key, value in stats.items():
        record_property(f"{label}.{key}", value)
    with capsys.disabled():
        print(f"\nDeribit mark check ({label}):",
              ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in stats.items()))


@pytest.fixture(scope="module")
def frames(deribit_snapshots: list[Path]) -> dict[str, pd.DataFrame]:
    return {p.name: load(p) for p in deribit_snapshots}


def test_latest_snapshot_marks(frames, record_property, capsys):
    if LATEST not in frames:
        pytest.skip(f"{LATEST} not in ../shared/data/deribit")
    df = frames[LATEST]
    stats = mark_errors(df)
    report("latest", stats, record_property, capsys)
    assert stats["rows"] == 1970
    assert stats["median_abs_coin"] < 6e-6  # measured 4.4e-6
    assert stats["p99_abs_coin"] < 1e-4  # measured 5.5e-5
    assert stats["max_abs_coin"] < 2e-4  # measured 1.2e-4
    assert stats["median_rel_marks_gt_0.001"] < 1.2e-4  # measured 9.0e-5


def test_all_snapshots_marks(frames, record_property, capsys):
    df = pd.concat(frames.values(), ignore_index=True)
    stats = {"files": len(frames), **mark_errors(df)}
    report("all files", stats, record_property, capsys)
    assert stats["median_abs_coin"] < 6e-6  # measured 5.0e-6
    assert stats["p99_abs_coin"] < 7e-4  # measured 5.6e-4
    assert stats["max_abs_coin"] < 7e-3  # measured 5.7e-3
    assert stats["median_rel_marks_gt_0.001"] < 1.3e-4  # measured 1.1e-4
    # every file on its own is close too (no single bad snapshot hiding in the pool)
    worst_median = max(mark_errors(f)["median_abs_coin"] for f in frames.values())
    assert worst_median < 6e-5  # measured 4.3e-5


def test_365_day_year_fits_better_than_365_25(frames):
    # The check discriminates: the collector's own 365.25-day tau fits the marks clearly worse.
    df = pd.concat(frames.values(), ignore_index=True)
    rel_365 = mark_errors(df, 365.0)["median_rel_marks_gt_0.001"]
    rel_36525 = mark_errors(df, 365.25)["median_rel_marks_gt_0.001"]
    assert rel_36525 > 2.0 * rel_365


def test_kernels_give_the_same_marks(frames):
    df = next(iter(frames.values()))
    tau = (df["expiry_datetime"] - df["timestamp"]).dt.total_seconds().to_numpy() / YEAR
    args = (df["underlying"].to_numpy(), df["strike"].to_numpy(), tau,
            df["implied_volatility"].to_numpy(), (df["option_type"] == "call").to_numpy())
    np.testing.assert_allclose(kernels.inverse_price(*args), black76.inverse_price(*args),
                               rtol=1e-12, atol=1e-15)
