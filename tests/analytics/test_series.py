"""History series: index at an instant, DVOL without look-ahead, the realised-vol proxy."""

from __future__ import annotations

import gzip
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pmargin.analytics.history_params import load_history_params
from pmargin.analytics.series import fit_proxy, load_series, series_from_frames
from pmargin.errors import InvalidInput, ParamsError
from tests.analytics.conftest import DVOL_START, START, generated_frames
from tests.conftest import shared_path

WINDOW = load_history_params().proxy.window_hours


def test_index_is_the_close_of_the_last_bar_ended(gen_series, gen_frames):
    prices, _ = gen_frames
    # bar starting at START + 800 h ends at START + 801 h
    when = START + timedelta(hours=801)
    assert gen_series.at(when).index_price == prices["close"].iloc[800]
    # inside the next hour the same bar is still the last one ended
    assert gen_series.at(when + timedelta(minutes=59)).index_price == prices["close"].iloc[800]
    assert gen_series.at(when + timedelta(hours=1)).index_price == prices["close"].iloc[801]


def test_realised_vol_by_hand(gen_series, gen_frames):
    prices, _ = gen_frames
    close = prices["close"].to_numpy()
    i = 1500  # bar index; its row is time = START + (i + 1) h
    r = [math.log(close[j] / close[j - 1]) for j in range(i - WINDOW + 1, i + 1)]
    by_hand = math.sqrt(sum(x * x for x in r) / WINDOW * 8760.0)
    row = gen_series.frame.loc[pd.Timestamp(START + timedelta(hours=i + 1))]
    assert row["realised_vol"] == pytest.approx(by_hand, rel=1e-12)
    # generated with sigma = 0.6: a 720-hour estimate is within a few standard errors
    assert by_hand == pytest.approx(0.6, rel=0.1)


def test_first_row_is_the_first_full_window(gen_series):
    assert gen_series.first_time == START + timedelta(hours=WINDOW + 1)


def test_dvol_is_the_day_open_and_flags_the_proxy(gen_series, gen_frames):
    _, dvol = gen_frames
    f = gen_series.frame
    before = f[f.index < pd.Timestamp(DVOL_START)]
    after = f[f.index >= pd.Timestamp(DVOL_START)]
    assert before["vol_is_proxy"].all()
    assert not after["vol_is_proxy"].any()
    assert np.array_equal(before["atm_vol"], before["proxy_vol"])
    day5 = pd.Timestamp(DVOL_START + timedelta(days=5))
    expect = dvol.set_index("timestamp").loc[day5, "open"] / 100.0
    for h in (0, 7, 23):
        assert f.loc[day5 + pd.Timedelta(hours=h), "atm_vol"] == expect
    assert gen_series.dvol_start == DVOL_START


def test_proxy_ratio_is_the_geometric_mean_over_midnights(gen_series):
    f = gen_series.frame
    mid = f[(f.index.hour == 0) & f["dvol"].notna()]
    ratio = math.exp(sum(math.log(d / r) for d, r in zip(mid["dvol"], mid["realised_vol"],
                                                          strict=True)) / len(mid))
    assert gen_series.proxy.ratio == pytest.approx(ratio, rel=1e-12)
    assert gen_series.proxy.overlap_days == len(mid)
    proxy = ratio * mid["realised_vol"].to_numpy()
    err = proxy - mid["dvol"].to_numpy()
    assert gen_series.proxy.rmse == pytest.approx(math.sqrt(float(np.mean(err ** 2))))
    assert gen_series.proxy.correlation == pytest.approx(
        float(pd.Series(proxy).corr(mid["dvol"].reset_index(drop=True))))
    assert np.allclose(f["proxy_vol"], ratio * f["realised_vol"], rtol=1e-15, atol=0.0)


def test_fit_proxy_needs_an_overlap(gen_series):
    f = gen_series.frame
    with pytest.raises(InvalidInput) as e:
        fit_proxy(f["realised_vol"], pd.Series(np.nan, index=f.index), WINDOW)
    assert e.value.field == "dvol"


def test_outside_the_history_is_refused_naming_when(gen_series):
    for bad in (gen_series.first_time - timedelta(hours=1),
                gen_series.last_time + timedelta(hours=1)):
        with pytest.raises(InvalidInput) as e:
            gen_series.at(bad)
        assert e.value.field == "when"
    with pytest.raises(InvalidInput):
        gen_series.at(datetime(2020, 3, 5))  # noqa: DTZ001 - naive on purpose
    with pytest.raises(InvalidInput):
        gen_series.at("2020-03-05")  # type: ignore[arg-type]
    # the last instant is fine, and so is anything within its hour
    gen_series.at(gen_series.last_time + timedelta(minutes=59))


def test_bad_frames_are_refused_naming_the_field(gen_frames):
    prices, dvol = gen_frames
    gap = prices.drop(index=100)
    with pytest.raises(InvalidInput) as e:
        series_from_frames("BTC", gap, dvol)
    assert e.value.field == "prices.timestamp"
    neg = prices.copy()
    neg.loc[50, "close"] = -1.0
    with pytest.raises(InvalidInput) as e:
        series_from_frames("BTC", neg, dvol)
    assert e.value.field == "prices.close[50]"
    with pytest.raises(InvalidInput) as e:
        series_from_frames("BTC", prices.drop(columns="close"), dvol)
    assert e.value.field == "prices.close"
    with pytest.raises(InvalidInput) as e:
        series_from_frames("BTC", prices, None)  # no DVOL and no ratio: nothing to fit
    assert e.value.field == "dvol"
    s = series_from_frames("BTC", prices, None, proxy_ratio=1.2)
    assert s.frame["vol_is_proxy"].all()
    assert s.dvol_start is None
    with pytest.raises(InvalidInput) as e:
        series_from_frames("BTC", prices, None, proxy_ratio=0.0)
    assert e.value.field == "proxy_ratio"


def test_params_overrides_are_validated():
    p = load_history_params(overrides={"proxy.window_hours": 168})
    assert p.proxy.window_hours == 168
    with pytest.raises(ParamsError):
        load_history_params(overrides={"proxy.window_hour": 168})
    with pytest.raises(ParamsError):
        load_history_params(overrides={"template.term_nodes_days": [1.0, 7.0]})


def test_unknown_asset():
    with pytest.raises(InvalidInput) as e:
        load_series("DOGE")
    assert e.value.field == "asset"


def test_window_changes_the_start():
    prices, dvol = generated_frames(days=100)
    p = load_history_params(overrides={"proxy.window_hours": 168})
    s = series_from_frames("BTC", prices, dvol, p)
    assert s.first_time == START + timedelta(hours=169)


# ------------------------------------------------------------------ real data


@pytest.mark.data
@pytest.mark.parametrize("asset", ["BTC", "ETH"])
def test_real_series_against_the_files(asset):
    shared_path("data", "prices", f"{asset.lower()}_usd_1h.csv.gz")
    s = load_series(asset)
    # read a few rows independently with the csv module
    path = shared_path("data", "prices", f"{asset.lower()}_usd_1h.csv.gz")
    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()
    assert len(s.frame) == len(lines) - 1 - WINDOW  # header, first window
    for line in (lines[1000], lines[40000], lines[-1]):
        ts, *_, close, _vol = line.split(",")
        t = datetime.fromisoformat(ts.replace("Z", "+00:00")) + timedelta(hours=1)
        assert s.at(t).index_price == float(close)
    with gzip.open(shared_path("data", "vol", f"{asset.lower()}_dvol_1d.csv.gz"), "rt") as fh:
        first = fh.read().splitlines()[1].split(",")
    assert s.dvol_start == datetime(2021, 3, 24, tzinfo=UTC)
    p = s.at(datetime(2021, 3, 24, 13, tzinfo=UTC))
    assert not p.vol_is_proxy
    assert p.atm_vol == float(first[1]) / 100.0
    assert s.at(datetime(2021, 3, 23, 23, tzinfo=UTC)).vol_is_proxy
    # the proxy is a usable stand-in for DVOL (figures in docs/history-markets.md)
    assert s.proxy.overlap_days > 1700
    assert s.proxy.correlation > 0.75
    assert abs(s.proxy.bias) < 0.03
    assert s.proxy.rmse < 0.2
