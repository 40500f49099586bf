"""Units of option prices in a market JSON (issue 8.3) and unreadable files (issue 8.4)."""

from __future__ import annotations

import gzip
import json

import pytest

from pmargin.errors import MarketDataError
from pmargin.market import load_deribit_csv, load_market, load_market_json
from tests.conftest import shared_path

BLOCK = {
    "valuation_time": "2024-06-17T08:00:00Z",
    "index": {"BTC": 65000.0},
    "instruments": {
        "BTC-28JUN24-65000-C": {"mark_price": 0.05, "mark_iv": 0.55, "underlying_price": 65400.0,
                                "bid_price": 0.049, "ask_price": 0.051},
        "BTC-28JUN24": {"mark_price": 65400.0},
    },
}


def test_mark_unit_is_required():
    with pytest.raises(MarketDataError, match=r"market\.mark_unit: is required"):
        load_market_json(BLOCK)


def test_coin_marks_are_converted_with_the_underlying_price():
    s = load_market_json({**BLOCK, "mark_unit": "coin"})
    # 0.05 BTC per option x 65,400 USD forward = 3,270 USD; bid/ask likewise
    assert s.mark_price("BTC-28JUN24-65000-C") == pytest.approx(0.05 * 65400.0, rel=1e-15)
    assert s.quote("BTC-28JUN24-65000-C") == pytest.approx((0.049 * 65400.0, 0.051 * 65400.0))
    assert s.mark_price("BTC-28JUN24") == 65400.0  # futures marks are USD in both units


def test_usd_marks_are_taken_as_given():
    s = load_market_json({**BLOCK, "instruments": {
        "BTC-28JUN24-65000-C": {"mark_price": 3270.0, "mark_iv": 0.55,
                                "underlying_price": 65400.0}}, "mark_unit": "USD"})
    assert s.mark_price("BTC-28JUN24-65000-C") == 3270.0


def test_unit_from_the_caller_when_the_file_does_not_state_it():
    a = load_market_json(BLOCK, mark_unit="coin")
    assert a.mark_price("BTC-28JUN24-65000-C") == pytest.approx(3270.0, rel=1e-15)
    with pytest.raises(MarketDataError, match=r"market\.mark_unit.*differs"):
        load_market_json({**BLOCK, "mark_unit": "USD"}, mark_unit="coin")


@pytest.mark.parametrize(("unit", "hint"), [("usd", "USD"), ("BTC", None), (1, None)])
def test_unknown_unit_is_named(unit, hint):
    with pytest.raises(MarketDataError, match=r"market\.mark_unit: must be 'USD' or 'coin'") as e:
        load_market_json({**BLOCK, "mark_unit": unit})
    if hint:
        assert f"did you mean '{hint}'" in str(e.value)


def test_coin_marks_need_the_underlying_price():
    block = {**BLOCK, "mark_unit": "coin",
             "instruments": {"BTC-28JUN24-65000-C": {"mark_price": 0.05}}}
    with pytest.raises(MarketDataError,
                       match=r"instruments\['BTC-28JUN24-65000-C'\]\.underlying_price"):
        load_market_json(block)


def test_bad_underlying_price_of_a_coin_mark_is_named():
    block = {**BLOCK, "mark_unit": "coin",
             "instruments": {"BTC-28JUN24-65000-C": {"mark_price": 0.05, "underlying_price": -1}}}
    with pytest.raises(MarketDataError,
                       match=r"65000-C'\]\.underlying_price: must be positive"):
        load_market_json(block)


def test_written_snapshots_state_usd():
    s = load_market_json({**BLOCK, "mark_unit": "coin"})
    d = s.to_dict()
    assert d["mark_unit"] == "USD"
    assert load_market_json(d).to_dict() == d


@pytest.mark.data
def test_conformance_vectors_load_as_usd():
    from pmargin.conformance.vectors import run_vector

    case = json.loads(shared_path("conformance", "vectors", "linear_sm_short_put.json")
                      .read_text())
    assert "mark_unit" not in case["market"]  # the shared format fixes USD and cannot change
    assert run_vector(case).passed


# -- unknown keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "hint"), [("indices", "index"), ("instrument", "instruments"),
                                           ("colateral_prices", "collateral_prices"),
                                           ("settlement_price", "settlement_prices")])
def test_unknown_market_key_names_the_nearest_valid_one(key, hint):
    with pytest.raises(MarketDataError, match=rf"market\.{key}: unknown field; did you mean "
                                              rf"'{hint}'"):
        load_market_json({**BLOCK, "mark_unit": "coin", key: {}})


@pytest.mark.parametrize("key", ["\n", "a\x00b", "mark\nprice"])
def test_unprintable_unknown_key_is_named_on_one_line(key):
    with pytest.raises(MarketDataError) as info:
        load_market_json({**BLOCK, "mark_unit": "coin", key: 1})
    assert info.value.field == f"market[{key!r}]"
    assert "\n" not in str(info.value)


def test_unknown_instrument_field_names_the_nearest_valid_one():
    block = {**BLOCK, "mark_unit": "USD",
             "instruments": {"BTC-28JUN24": {"mark_price": 65400.0, "avg_px": 1.0}}}
    with pytest.raises(MarketDataError, match=r"\.avg_px: unknown field"):
        load_market_json(block)


# -- unreadable files -----------------------------------------------------------------------


def test_binary_json_file(tmp_path):
    p = tmp_path / "m.json"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    with pytest.raises(MarketDataError, match=r"market: is not UTF-8 text.*m\.json"):
        load_market(p)


def test_empty_json_file(tmp_path):
    p = tmp_path / "m.json"
    p.write_text("  \n")
    with pytest.raises(MarketDataError, match=r"market: is empty.*m\.json"):
        load_market(p)


def test_empty_csv_file(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("")
    with pytest.raises(MarketDataError, match=r"market: is empty.*m\.csv"):
        load_market(p)


def test_binary_csv_file(tmp_path):
    p = tmp_path / "m.csv"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(MarketDataError, match=r"m\.csv"):
        load_market(p)


@pytest.mark.data
def test_truncated_csv_gz(tmp_path):
    raw = shared_path("data", "deribit",
                      "deribit_options_snapshot_20260822T153351Z.csv.gz").read_bytes()
    p = tmp_path / "cut.csv.gz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(MarketDataError, match=r"market: is a truncated or corrupt gzip.*cut"):
        load_deribit_csv(p)


def test_gz_that_is_not_gzip(tmp_path):
    p = tmp_path / "plain.csv.gz"
    p.write_text("timestamp,instrument_name\n")
    with pytest.raises(MarketDataError, match=r"plain\.csv\.gz"):
        load_deribit_csv(p)


def test_non_utf8_csv_inside_gzip(tmp_path):
    p = tmp_path / "latin.csv.gz"
    p.write_bytes(gzip.compress("timestamp,instrument_name\n\xe9\xe8,\xff\n".encode("latin-1")))
    with pytest.raises(MarketDataError, match=r"latin\.csv\.gz"):
        load_deribit_csv(p)


def test_missing_column_is_named(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("timestamp,instrument_name,underlying\n2026-01-01T00:00:00Z,BTC-1JAN27-1-C,1\n")
    with pytest.raises(MarketDataError, match=r"market\.columns.*strike"):
        load_deribit_csv(p)


@pytest.mark.data
def test_a_whole_conformance_vector_is_a_usd_market_but_a_bare_market_must_say():
    from tests.conftest import shared_path

    path = shared_path("conformance", "vectors", "linear_sm_short_put.json")
    market = load_market(path)  # the vector format defines its marks in USD
    data = json.loads(path.read_text())
    assert market.mark_price("ETH_USDC-17NOV23-1850-P") == pytest.approx(
        data["market"]["instruments"]["ETH_USDC-17NOV23-1850-P"]["mark_price"])
    bare = {"valuation_time": data["valuation_time"], "market": data["market"]}
    with pytest.raises(MarketDataError, match="mark_unit"):
        load_market_json(bare)
