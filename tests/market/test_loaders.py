"""Loaders: conformance JSON, Deribit chain CSV (real snapshots and synthetic bad files)."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pmargin.conventions import year_fraction
from pmargin.errors import MarketDataError, StaleMarketData
from pmargin.instruments import parse_instrument
from pmargin.market import MarketSnapshot, load_deribit_csv, load_market, load_market_json
from pmargin.pricing import black76
from tests.conftest import shared_path

# Measured over the 39 shared snapshots (62,522 options): median 5.1e-6 coin, p99 5.5e-4 coin.
MEDIAN_COIN_ERROR_BOUND = 1e-5
P99_COIN_ERROR_BOUND = 1e-3


# -- conformance JSON -----------------------------------------------------------------------


def _vector(name: str) -> Path:
    return shared_path("conformance", "vectors", name)


@pytest.mark.data
def test_deribit_pm_vector_loads():
    s = load_market_json(_vector("deribit_pm_btc_perp_future.json"), mark_unit="USD")
    assert s.valuation_time == datetime(2024, 6, 17, 10, 22, 20, 501000, tzinfo=UTC)
    assert s.index_price("BTC") == 65666.19
    assert s.perpetual_mark("BTC") == 65910.57
    assert s.mark_price("BTC-PERPETUAL") == 65910.57
    assert s.mark_price("BTC-28JUN24") == 67371.75
    assert s.forward("BTC", parse_instrument("BTC-28JUN24").expiry) == 67371.75
    assert s.source == "deribit_pm_btc_perp_future.json"


@pytest.mark.data
def test_linear_sm_vector_loads_and_solves_iv():
    s = load_market_json(_vector("linear_sm_short_put.json"), mark_unit="USD")
    inst = parse_instrument("ETH_USDC-17NOV23-1850-P")
    assert inst.expiry is not None
    assert s.forward("ETH", inst.expiry) == 2098.0
    assert s.mark_price(inst) == 2.4
    iv = s.implied_vol("ETH", inst.expiry, 1850.0)
    assert 0.3 < iv < 0.8
    model = float(black76.price(2098.0, 1850.0, s.tau(inst.expiry), iv, False))
    assert model == pytest.approx(2.4, rel=1e-11)
    assert s.collateral_price("USDC") == 1.0


@pytest.mark.data
def test_json_whole_vector_bare_block_and_dict_agree():
    case = json.loads(_vector("deribit_pm_btc_perp_future.json").read_text())
    a = load_market_json(case, mark_unit="USD")
    bare = dict(case["market"], valuation_time=case["valuation_time"], mark_unit="USD")
    b = load_market_json(bare)
    assert a.to_dict() == b.to_dict()


@pytest.mark.data
def test_json_round_trip_through_file(tmp_path):
    case = json.loads(_vector("linear_sm_short_put.json").read_text())
    s = load_market_json(case, mark_unit="USD")
    p = tmp_path / "m.json"
    p.write_text(json.dumps(s.to_dict()))
    assert load_market(p).to_dict() == s.to_dict()


def test_json_collateral_prices(tmp_path):
    data = {"valuation_time": "2024-06-17T00:00:00Z", "index": {"BTC": 60000.0},
            "collateral_prices": {"USDC": 0.98}}
    s = load_market_json(data, mark_unit="USD")
    assert s.collateral_price("USDC") == 0.98


@pytest.mark.parametrize(
    ("data", "field", "shown"),
    [
        ({"index": {"BTC": 1.0}}, "market.valuation_time", "None"),
        ({"valuation_time": "2024-06-17T00:00:00Z"}, "market.index", "None"),
        ({"valuation_time": "2024-06-17T00:00:00Z", "index": {"BTC": 1.0}, "indices": {}},
         "market.indices", "did you mean 'index'?"),
        ({"valuation_time": "2024-06-17T00:00:00Z", "index": {"BTC": 1.0}, "instruments": []},
         "market.instruments", "[]"),
        ({"valuation_time": "2024-06-17T00:00:00Z", "market": {"index": {"BTC": 1.0},
                                                              "valuation_time": "2024-06-18Z"}},
         "market.valuation_time", "2024-06-18Z"),
        ({"valuation_time": "2024-06-17T00:00:00", "market": {"index": {"BTC": 1.0}}},
         "market.valuation_time", "'2024-06-17T00:00:00'"),
        ({"valuation_time": "2024-06-17T00:00:00Z", "market": {"index": {"BTC": -1.0}}},
         "market.index['BTC']", "-1.0"),
        ({"valuation_time": "2024-06-17T00:00:00Z", "market": {
            "index": {"BTC": 1.0},
            "instruments": {"BTC-28JUN24-65000-C": {"mark_iv": float("nan")}}}},
         "market.instruments['BTC-28JUN24-65000-C'].mark_iv", "nan"),
        ({"valuation_time": "2024-06-17T00:00:00Z", "market": {
            "index": {"BTC": 1.0}, "collateral_prices": [1]}}, "market.collateral_prices", "[1]"),
        ([1, 2], "market", "'list'"),
    ],
)
def test_json_bad_inputs_named(data, field, shown):
    with pytest.raises(MarketDataError, match=re.escape(field)) as info:
        load_market_json(data, mark_unit="USD")
    assert shown in str(info.value)


def test_json_nan_token_in_file_rejected(tmp_path):
    p = tmp_path / "m.json"
    p.write_text('{"valuation_time": "2024-06-17T00:00:00Z", "mark_unit": "USD", '
                 '"index": {"BTC": NaN}}')
    with pytest.raises(MarketDataError, match=r"market\.index\['BTC'\].*nan"):
        load_market(p)


def test_unreadable_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(MarketDataError, match=r"market: is not valid JSON.*bad\.json"):
        load_market(bad)
    with pytest.raises(MarketDataError, match=r"market: cannot be read.*missing\.json"):
        load_market(tmp_path / "missing.json")
    with pytest.raises(MarketDataError, match=r"market: unknown market file type.*m\.parquet"):
        load_market(tmp_path / "m.parquet")
    with pytest.raises(MarketDataError, match=r"market: cannot be read.*nope\.csv"):
        load_market(tmp_path / "nope.csv")


# -- synthetic Deribit CSV ------------------------------------------------------------------

TS = "2026-02-05T15:51:32.535650+00:00"


def _synthetic_rows() -> list[dict[str, Any]]:
    """A small chain in the Deribit CSV layout, marks from Black-76 (coin)."""
    vt = datetime.fromisoformat(TS)
    rows = []
    chain = [("13FEB26", "BTC-13FEB26", 67900.0), ("20FEB26", "SYN.BTC-20FEB26", 68000.0),
             ("6FEB26", "index_price", 67850.0)]
    for code, uname, fwd in chain:
        for strike in (60000.0, 68000.0, 76000.0):
            for right in ("C", "P"):
                name = f"BTC-{code}-{int(strike)}-{right}"
                inst = parse_instrument(name)
                assert inst.expiry is not None
                tau = year_fraction(vt, inst.expiry)
                iv = 0.6 + 0.1 * abs(math.log(strike / fwd))
                mark = float(black76.inverse_price(fwd, strike, tau, iv, right == "C"))
                listed = uname if uname != "index_price" else None
                rows.append({
                    "timestamp": TS, "instrument_name": name, "underlying": fwd,
                    "underlying_name": uname, "option_type": "call" if right == "C" else "put",
                    "strike": strike, "expiry_datetime": inst.expiry.isoformat(),
                    "time_to_maturity": tau * 365 / 365.25,
                    "bid_price": round(mark * 0.98, 4) if mark > 0.001 else None,
                    "ask_price": round(mark * 1.02 + 1e-4, 4), "mark_price": mark,
                    "mid_price": None, "futures_price": fwd if listed else None,
                    "futures_instrument_name": listed, "implied_volatility": iv, "delta": 0.5,
                    "vega": 1.0, "open_interest": 10.0, "volume": 1.0, "bid_ask_spread": None,
                    "currency": "BTC", "index_price": 67850.0 + (len(rows) % 3),
                    "volume_usd": 100.0,
                })
    return rows


def _write(tmp_path: Path, rows: list[dict[str, Any]], name: str = "chain.csv.gz") -> Path:
    p = tmp_path / name
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def test_synthetic_csv_loads(tmp_path):
    rows = _synthetic_rows()
    s = load_market(_write(tmp_path, rows))
    assert s.valuation_time == datetime.fromisoformat(TS)
    assert s.index_price("BTC") == float(np.median([r["index_price"] for r in rows]))
    assert s.perpetual_mark("BTC") == s.index_price("BTC")
    assert s.has_mark("BTC-13FEB26")  # listed future
    assert not s.has_mark("BTC-20FEB26")  # SYN.* is a forward pillar, not a future
    assert s.mark_price("BTC-13FEB26") == 67900.0
    e20 = parse_instrument("BTC-20FEB26").expiry
    e6 = parse_instrument("BTC-6FEB26").expiry
    assert e20 is not None
    assert e6 is not None
    assert s.forward("BTC", e20) == 68000.0
    assert s.forward("BTC", e6) == 67850.0
    assert {p.source for p in s.forward_curve("BTC").pillars} == {"future", "option"}
    r = rows[0]
    name = r["instrument_name"]
    assert s.mark_price(name) == pytest.approx(r["mark_price"] * r["underlying"], rel=1e-15)
    bid, ask = s.quote(name)
    assert bid == pytest.approx(r["bid_price"] * r["underlying"])
    assert ask == pytest.approx(r["ask_price"] * r["underlying"])
    assert s.instrument_vol(name) == r["implied_volatility"]
    assert s.option_marks.loc[name, "open_interest"] == 10.0


def test_csv_missing_iv_is_solved_and_missing_mark_is_fine(tmp_path):
    rows = _synthetic_rows()
    rows[1]["implied_volatility"] = None
    rows[2]["mark_price"] = 0.0
    s = load_deribit_csv(_write(tmp_path, rows, "c.csv"))
    assert s.instrument_vol(rows[1]["instrument_name"]) == pytest.approx(
        0.6 + 0.1 * abs(math.log(60000.0 / 67900.0)), rel=1e-9)
    assert s.mark_price(rows[2]["instrument_name"]) == 0.0


def _bad(rows: list[dict[str, Any]], i: int, **changes: Any) -> list[dict[str, Any]]:
    out = [dict(r) for r in rows]
    out[i].update(changes)
    return out


@pytest.mark.parametrize(
    ("changes", "field", "shown"),
    [
        ({"strike": -60000.0}, "market.instruments['BTC-13FEB26-60000-C'].strike", "-60000.0"),
        ({"strike": 61000.0}, "market.instruments['BTC-13FEB26-60000-C'].strike", "61000.0"),
        ({"underlying": 0.0}, "market.instruments['BTC-13FEB26-60000-C'].underlying_price", "0.0"),
        ({"underlying": None}, "market.instruments['BTC-13FEB26-60000-C'].underlying_price",
         "nan"),
        ({"mark_price": float("inf")}, "market.instruments['BTC-13FEB26-60000-C'].mark_price",
         "inf"),
        ({"mark_price": -0.1}, "market.instruments['BTC-13FEB26-60000-C'].mark_price", "-0.1"),
        ({"bid_price": -0.1}, "market.instruments['BTC-13FEB26-60000-C'].bid_price", "-0.1"),
        ({"implied_volatility": -0.5}, "market.instruments['BTC-13FEB26-60000-C'].mark_iv",
         "-0.5"),
        ({"implied_volatility": 12.0}, "market.instruments['BTC-13FEB26-60000-C'].mark_iv",
         "12.0"),
        ({"implied_volatility": None, "mark_price": None},
         "market.instruments['BTC-13FEB26-60000-C'].mark_iv", "None"),
        ({"instrument_name": "BTC-13FEB26-60000"}, "market.instruments['BTC-13FEB26-60000']",
         "'BTC-13FEB26-60000'"),
        ({"instrument_name": "BTC-13FEB26"}, "market.instruments['BTC-13FEB26']",
         "must be an option"),
        ({"instrument_name": "BTC-4FEB26-60000-C"}, "market.instruments['BTC-4FEB26-60000-C']",
         "2026-02-04T08:00:00+00:00"),
        ({"instrument_name": "BTC-13FEB26-60000-P"}, "market.instruments['BTC-13FEB26-60000-P']",
         "appears twice"),
    ],
)
def test_csv_bad_rows_named(tmp_path, changes, field, shown):
    p = _write(tmp_path, _bad(_synthetic_rows(), 0, **changes))
    with pytest.raises(MarketDataError, match=re.escape(field)) as info:
        load_deribit_csv(p)
    assert shown in str(info.value)


def test_csv_expired_row_is_stale(tmp_path):
    p = _write(tmp_path, _bad(_synthetic_rows(), 0, instrument_name="BTC-4FEB26-60000-C"))
    with pytest.raises(StaleMarketData):
        load_deribit_csv(p)


@pytest.mark.parametrize(
    ("ts", "shown"),
    [("2026-02-05T15:51:32", "'2026-02-05T15:51:32'"),
     ("2026-02-05T17:51:32+02:00", "'2026-02-05T17:51:32+02:00'"),
     ("garbage", "'garbage'")],
)
def test_csv_bad_timestamp_named(tmp_path, ts, shown):
    rows = [dict(r, timestamp=ts) for r in _synthetic_rows()]
    with pytest.raises(MarketDataError, match=r"market\.valuation_time") as info:
        load_deribit_csv(_write(tmp_path, rows))
    assert shown in str(info.value)


def test_csv_bad_index_and_columns(tmp_path):
    rows = [dict(r, index_price=None) for r in _synthetic_rows()]
    with pytest.raises(MarketDataError, match=r"market\.index\['BTC'\].*finite.*nan"):
        load_deribit_csv(_write(tmp_path, rows))
    rows = [dict(r, index_price=-5.0) for r in _synthetic_rows()]
    with pytest.raises(MarketDataError, match=r"market\.index\['BTC'\].*positive.*-5\.0"):
        load_deribit_csv(_write(tmp_path, rows))
    rows = [{k: v for k, v in r.items() if k != "underlying"} for r in _synthetic_rows()]
    with pytest.raises(MarketDataError, match=r"market\.columns.*\['underlying'\]"):
        load_deribit_csv(_write(tmp_path, rows))
    rows = [dict(r, strike="abc") if i == 3 else r for i, r in enumerate(_synthetic_rows())]
    with pytest.raises(MarketDataError, match=r"BTC-13FEB26-68000-P'\]\.strike.*'abc'"):
        load_deribit_csv(_write(tmp_path, rows))
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(_synthetic_rows()[0]) + "\n")
    with pytest.raises(MarketDataError, match="no rows"):
        load_deribit_csv(empty)


def test_csv_reader_rules_without_pandas(tmp_path):
    """The chain is read with csv+gzip (no pandas): the usual spellings of a missing cell are
    missing, a digit separator is not a number, short rows are padded, long rows refused, and
    a UTF-8 byte-order mark before the header is ignored."""
    rows = _synthetic_rows()
    name = rows[0]["instrument_name"]
    p = _write(tmp_path, rows, "c.csv")
    lines = p.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("bid_price")] = "NA"
    cells[header.index("open_interest")] = "null"
    lines[1] = ",".join(cells)
    p.write_text("\ufeff" + "\n".join(lines) + "\n")
    s = load_deribit_csv(p)
    assert s.quote(name)[0] is None
    assert np.isnan(s.option_marks.loc[name, "open_interest"])
    assert s.quote(name)[1] == pytest.approx(rows[0]["ask_price"] * rows[0]["underlying"])
    # a short last row: its missing trailing cells are missing values (volume_usd is optional)
    p.write_text("\n".join([*lines[:-1], lines[-1].rsplit(",", 1)[0]]) + "\n")
    assert load_deribit_csv(p).has_mark(rows[-1]["instrument_name"])
    # one field too many
    p.write_text("\n".join([*lines, lines[-1] + ",1"]) + "\n")
    with pytest.raises(MarketDataError, match=r"cannot be read as a CSV.*expected 23 fields"):
        load_deribit_csv(p)
    # "1_000" is not a number (float() would accept it)
    cells = lines[1].split(",")
    cells[header.index("strike")] = "60_000.0"
    p.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    with pytest.raises(MarketDataError, match=rf"{name}'\]\.strike.*number.*'60_000\.0'"):
        load_deribit_csv(p)


# -- real Deribit snapshots -----------------------------------------------------------------


@pytest.mark.slow
def test_every_deribit_snapshot_loads_and_reprices(deribit_snapshots):
    errors = []
    for path in deribit_snapshots:
        snap = load_market(path)
        df = pd.read_csv(path)
        assert snap.valuation_time == datetime.fromisoformat(df.timestamp.iloc[0])
        assert snap.underlyings == tuple(sorted(df.currency.unique()))
        for u in snap.underlyings:
            assert snap.index_price(u) == float(df.index_price[df.currency == u].median())
            assert snap.perpetual_mark(u) == snap.index_price(u)
        om = snap.option_marks
        assert len(om) == len(df)
        d = df.set_index("instrument_name").loc[om.index]
        np.testing.assert_allclose(om.mark_price, d.mark_price * d.underlying, rtol=1e-15)
        np.testing.assert_array_equal(om.mark_iv, d.implied_volatility)
        has_bid = d.bid_price.notna().to_numpy()
        np.testing.assert_allclose(om.bid_price[has_bid], (d.bid_price * d.underlying)[has_bid],
                                   rtol=1e-15)
        assert om.bid_price[~has_bid].isna().all()
        listed = {n for n in df.futures_instrument_name.dropna() if not n.startswith("SYN.")}
        assert all(snap.has_mark(n) for n in listed)
        assert not any(snap.has_mark(n[4:]) for n in df.futures_instrument_name.dropna()
                       if n.startswith("SYN.") and n[4:] not in listed)
        # Model marks from the snapshot's forward curve and vol surface, in coin.
        for u in snap.underlyings:
            sub = om[om.underlying == u]
            fwd = snap.forwards(u, sub.tau.to_numpy())
            vol = snap.implied_vols(u, sub.tau.to_numpy(), sub.strike.to_numpy())
            model = black76.inverse_price(fwd, sub.strike, sub.tau, vol, sub.is_call)
            errors.append(np.abs(model - d.mark_price[sub.index].to_numpy()))
    err = np.concatenate(errors)
    assert np.median(err) < MEDIAN_COIN_ERROR_BOUND
    assert np.quantile(err, 0.99) < P99_COIN_ERROR_BOUND


def test_model_price_matches_csv_marks_per_instrument(deribit_snapshots):
    path = deribit_snapshots[-1]
    snap = load_deribit_csv(path)
    df = pd.read_csv(path).set_index("instrument_name")
    names = list(df.index[::25])
    got = np.array([snap.model_price(n) / snap.forward(
        parse_instrument(n).underlying, parse_instrument(n).expiry) for n in names])
    assert np.median(np.abs(got - df.mark_price[names].to_numpy())) < MEDIAN_COIN_ERROR_BOUND


def test_bumped_real_snapshot(deribit_snapshots):
    snap = load_deribit_csv(deribit_snapshots[0])
    b = snap.bumped({"BTC": 0.1})
    assert isinstance(b, MarketSnapshot)
    name = snap.option_marks.index[0]
    assert b.instrument_vol(name) == snap.instrument_vol(name)
    assert b.index_price("BTC") == pytest.approx(snap.index_price("BTC") * 1.1)
