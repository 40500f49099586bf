"""Property tests of the market loaders (issue 8 acceptance): any input either loads or raises
the package's InvalidInput naming a field; a loaded snapshot has no NaN or inf anywhere."""

from __future__ import annotations

import dataclasses
import gzip
import io
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmargin.errors import InvalidInput
from pmargin.instruments import parse_instrument
from pmargin.market import MarketSnapshot, Quote, load_deribit_csv, load_market_json
from tests.conftest import shared_path

VT = "2024-06-17T08:00:00Z"
QUOTE_FIELDS = tuple(f.name for f in dataclasses.fields(Quote))
NAMES = [
    "BTC-PERPETUAL", "BTC_USDC-PERPETUAL", "BTC-28JUN24", "BTC_USDC-28JUN24", "ETH-27SEP24",
    "BTC-28JUN24-65000-C", "BTC-28JUN24-65000-P", "BTC-28JUN24-70000-C", "BTC-27SEP24-60000-P",
    "ETH_USDC-28JUN24-3500-P", "ETH-28JUN24-3500-C", "BTC-14JUN24-65000-C", "BTC-14JUN24",
    "SOL-28JUN24-150-C", "BTC-28JUN24--65000-C", "btc-perpetual", "BTC-32JUN24", "BTC_USDC",
]
NUMBERS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 1e-9, 65000.0, 3500.0, 1e300, 1.7e308,
           float("nan"), float("inf"), -float("inf"), 10.0, 10.000001]

leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.sampled_from(NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
)
price = st.one_of(st.sampled_from(NUMBERS), st.floats(1e-6, 2e5), leaf)
quote = st.one_of(
    st.dictionaries(st.sampled_from([*QUOTE_FIELDS, "mark_vol"]), price, max_size=5), leaf)
timestamp = st.one_of(st.sampled_from([VT, "2024-06-17T08:00:00", "2024-06-17T08:00:00+02:00",
                                       "2024-06-16T08:00:00Z", "2024-06-17T08:00:00.5Z",
                                       "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                       "yesterday"]), leaf)
currency = st.one_of(st.sampled_from(["BTC", "ETH", "USDC", "USDT", "SOL", "btc"]),
                     st.text(max_size=4))


_ONE_IN_15 = st.sampled_from([False] * 14 + [True])


def _often(draw: st.DrawFn, good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    """Mostly a plausible value, sometimes anything: most inputs get past the first check."""
    return draw(bad) if draw(_ONE_IN_15) else draw(good)


GOOD_OPTION = st.fixed_dictionaries(
    {"underlying_price": st.sampled_from([65400.0, 65000.0, 3510.0, 66000.0]),
     "mark_iv": st.one_of(st.floats(0.01, 3.0), st.none())},
    optional={
        "mark_price": st.one_of(st.floats(0.0, 0.3), st.floats(0.0, 20000.0)),
        "bid_price": st.floats(0.0, 0.2),
        "ask_price": st.floats(0.2, 5000.0),
        "open_interest": st.floats(0.0, 1e4),
    })
GOOD_LINEAR = st.fixed_dictionaries(
    {"mark_price": st.floats(1000.0, 1e5)},
    optional={"bid_price": st.floats(0.0, 1000.0), "ask_price": st.floats(1e5, 2e5)})


@st.composite
def good_instruments(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(NAMES[:10]), max_size=8, unique=True))
    return {n: draw(GOOD_OPTION if n.endswith(("-C", "-P")) else GOOD_LINEAR) for n in names}


@st.composite
def market_json(draw: st.DrawFn) -> Any:
    block: dict[str, Any] = {}
    if not draw(_ONE_IN_15):
        block["valuation_time"] = _often(draw, st.just(VT), timestamp)
    if not draw(_ONE_IN_15):
        block["mark_unit"] = _often(draw, st.sampled_from(["USD", "coin"]),
                                    st.one_of(st.just("usd"), leaf))
    if not draw(_ONE_IN_15):
        block["index"] = _often(
            draw,
            st.dictionaries(st.sampled_from(["BTC", "ETH", "USDC"]),
                            st.sampled_from([65000.0, 3500.0, 1.0, 0.98]), min_size=2),
            st.one_of(st.dictionaries(currency, price, max_size=3), leaf))
    if draw(st.sampled_from([True] * 4 + [False])):
        good_inst = good_instruments()
        bad_inst = st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=12)),
                                   st.one_of(GOOD_OPTION, GOOD_LINEAR, quote), max_size=6)
        block["instruments"] = _often(draw, good_inst, st.one_of(bad_inst, leaf))
    if draw(st.booleans()):
        block["collateral_prices"] = _often(
            draw, st.dictionaries(st.sampled_from(["USDC", "USDT", "BTC"]),
                                  st.floats(0.5, 70000.0), max_size=2),
            st.one_of(st.dictionaries(currency, price, max_size=2), leaf))
    if draw(st.sampled_from([False] * 3 + [True])):
        block["settlement_prices"] = _often(
            draw, st.dictionaries(st.sampled_from(["BTC-14JUN24", "ETH-14JUN24"]),
                                  st.floats(1.0, 1e5), max_size=2),
            st.one_of(st.dictionaries(st.one_of(currency, st.just("BTC-28JUN24")), price,
                                      max_size=2), leaf))
    if draw(st.sampled_from([False] * 3 + [True])):
        block["data_time"] = _often(draw, st.sampled_from([VT, "2024-06-17T07:59:00Z"]),
                                    timestamp)
    if draw(_ONE_IN_15):
        block[draw(st.text(max_size=10))] = draw(leaf)
    shape = draw(st.sampled_from(range(15)))
    if shape == 0:
        return {"valuation_time": _often(draw, st.just(VT), timestamp), "market": block,
                "model": "x"}
    if shape == 1:
        return draw(st.one_of(leaf, st.dictionaries(st.text(max_size=5), leaf, max_size=3)))
    return block


def _assert_finite_outputs(s: MarketSnapshot) -> None:
    for u in s.underlyings:
        assert math.isfinite(s.index_price(u))
        assert s.index_price(u) > 0
        assert math.isfinite(s.perpetual_mark(u))
    for name in s.instrument_names:
        assert math.isfinite(s.mark_price(name)), name
        inst = parse_instrument(name)
        if inst.expiry is not None:
            assert math.isfinite(s.forward(inst.underlying, inst.expiry)), name
        if inst.is_option:
            assert math.isfinite(s.instrument_vol(name)), name
            assert math.isfinite(s.implied_vol(inst.underlying, inst.expiry, inst.strike)), name
    om = s.option_marks
    for col in ("tau", "strike", "mark_iv", "forward"):
        assert np.isfinite(om[col].to_numpy()).all(), col
    for col in ("mark_price", "bid_price", "ask_price", "underlying_price", "open_interest",
                "volume"):
        v = om[col].to_numpy()
        assert not np.isinf(v).any(), col  # NaN only where the value was not given


def _loads_or_names_a_field(load: Any) -> MarketSnapshot | None:
    try:
        s = load()
    except InvalidInput as exc:
        field = exc.field
    else:
        _assert_finite_outputs(s)
        return s
    assert field
    assert isinstance(field, str)
    assert "\n" not in field
    return None


@given(market_json())
def test_market_json_loads_or_names_a_field(data: Any) -> None:
    _loads_or_names_a_field(lambda: load_market_json(data))


@given(market_json())
def test_market_json_file_loads_or_names_a_field(data: Any) -> None:
    import json

    text = json.dumps(data, allow_nan=True)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.json"
        p.write_text(text)
        _loads_or_names_a_field(lambda: load_market_json(p))


@given(st.binary(max_size=200))
def test_market_json_bytes_load_or_name_a_field(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.json"
        p.write_bytes(raw)
        _loads_or_names_a_field(lambda: load_market_json(p))


# -- Deribit CSV: real rows, mutated ----------------------------------------------------------


@pytest.fixture(scope="module")
def real_rows() -> pd.DataFrame:
    path = shared_path("data", "deribit", "deribit_options_snapshot_20260822T153351Z.csv.gz")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    # a few rows of both currencies, several expiries, with a listed future among them
    return pd.concat([df[df["currency"] == "BTC"].iloc[::97],
                      df[df["currency"] == "ETH"].iloc[::83]])


CELLS = ["", "nan", "NaN", "inf", "-inf", "-1", "0", "1e308", "1e-308", "abc", "None", "1,5",
         "2026-08-22T15:33:51Z", "2026-08-22 15:33:51", "BTC-25SEP26-80000-C", "BTC", "ETH",
         "SYN.BTC-25SEP26", "BTC-25SEP26", "put", "\u00e9", "0.5", "77000", "3.2056"]


@st.composite
def mutation(draw: st.DrawFn) -> list[tuple[str, Any]]:
    return draw(st.lists(st.one_of(
        st.tuples(st.just("cell"), st.tuples(st.integers(0, 40), st.integers(0, 22),
                                             st.one_of(st.sampled_from(CELLS),
                                                       st.text(max_size=6)))),
        st.tuples(st.just("drop_col"), st.integers(0, 22)),
        st.tuples(st.just("dup_row"), st.integers(0, 40)),
        st.tuples(st.just("truncate"), st.integers(0, 4000)),
        st.tuples(st.just("gzip"), st.booleans()),
    ), min_size=1, max_size=4))


@pytest.mark.data
@given(mutation())
def test_deribit_csv_mutated_rows_load_or_name_a_field(real_rows: pd.DataFrame,
                                                       muts: list[tuple[str, Any]]) -> None:
    df = real_rows.copy().reset_index(drop=True)
    cut: int | None = None
    gz = False
    for kind, arg in muts:
        if kind == "cell":
            r, c, v = arg
            df.iat[r % len(df), c % df.shape[1]] = v
        elif kind == "drop_col" and df.shape[1] > 1:
            df = df.drop(columns=df.columns[arg % df.shape[1]])
        elif kind == "dup_row":
            df = pd.concat([df, df.iloc[[arg % len(df)]]])
        elif kind == "truncate":
            cut = arg
        elif kind == "gzip":
            gz = arg
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    raw = buf.getvalue().encode("utf-8")
    if gz:
        raw = gzip.compress(raw)
    if cut is not None:
        raw = raw[:cut]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / ("m.csv.gz" if gz else "m.csv")
        p.write_bytes(raw)
        _loads_or_names_a_field(lambda: load_deribit_csv(p))


@pytest.mark.data
def test_unmutated_rows_load(real_rows: pd.DataFrame) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.csv"
        real_rows.to_csv(p, index=False)
        s = _loads_or_names_a_field(lambda: load_deribit_csv(p))
    assert s is not None
    assert len(s.option_marks) == len(real_rows)
