"""Loaders of market snapshots: the conformance JSON ``market`` block and Deribit chain CSVs.

* :func:`load_market_json` reads the venue-neutral JSON format (a whole conformance vector or a
  bare ``market`` block); every price is USD per unit of underlying.
* :func:`load_deribit_csv` reads a Deribit option-chain snapshot (``.csv`` or ``.csv.gz``) whose
  option prices are in coin, converting them to USD with each option's ``underlying``.
* :func:`load_market` dispatches on the file suffix.

The formats and every rule are described in ``docs/market-data.md``.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import zlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from pmargin.errors import MarketDataError, UnknownInstrument
from pmargin.instruments import InstrumentKind, parse_instrument
from pmargin.market.policy import ValuationPolicy
from pmargin.market.quotes import Quote, check_field_names
from pmargin.market.snapshot import MarketSnapshot
from pmargin.market.timestamps import check_time
from pmargin.validation import nearest, positive_number, require_mapping

__all__ = ["MARK_UNITS", "load_deribit_csv", "load_market", "load_market_json"]

MARK_UNITS: tuple[str, ...] = ("USD", "coin")
"""Units of option prices in a market JSON (``mark_unit``): USD, or coin per option on one coin
(converted to USD with the option's ``underlying_price``)."""

_MARKET_KEYS = ("valuation_time", "data_time", "mark_unit", "index", "instruments",
                "collateral_prices", "settlement_prices")
_COIN_FIELDS = ("mark_price", "bid_price", "ask_price")

_CSV_REQUIRED = ("timestamp", "instrument_name", "underlying", "strike", "mark_price",
                 "implied_volatility", "currency", "index_price")
_CSV_OPTIONAL = ("underlying_name", "bid_price", "ask_price", "futures_price",
                 "futures_instrument_name", "open_interest", "volume")


def _read_json(path: Path) -> Any:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise MarketDataError("market", str(path), f"cannot be read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise MarketDataError("market", str(path),
                              f"is not UTF-8 text (byte {exc.start}): is it a binary file?"
                              ) from exc
    if not text.strip():
        raise MarketDataError("market", str(path), "is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MarketDataError("market", str(path),
                              f"is not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    except RecursionError as exc:
        raise MarketDataError("market", str(path), "is nested too deeply") from exc


def _is_conformance_vector(data: Mapping[str, Any]) -> bool:
    """A whole conformance vector (``model``, ``portfolio``, ``expect`` beside ``market``).

    Its format (``../shared/conformance/README.md``) states that every ``mark_price`` is USD, so
    the unit is known without a ``mark_unit`` key.
    """
    return {"market", "portfolio", "expect", "model"} <= set(map(str, data))


def _mark_unit(stated: Any, given: str | None) -> str:
    """The unit of option prices: the file's ``mark_unit``, else the caller's, never a guess."""
    for field, value in (("market.mark_unit", stated), ("mark_unit", given)):
        if value is not None and value not in MARK_UNITS:
            hint = next((u for u in MARK_UNITS if u.lower() == str(value).lower()),
                        nearest(str(value), MARK_UNITS))
            raise MarketDataError(field, value, "must be 'USD' or 'coin'"
                                  + (f"; did you mean '{hint}'?" if hint else ""))
    if stated is not None and given is not None and stated != given:
        raise MarketDataError("market.mark_unit", stated,
                              f"differs from the unit the caller passed ({given!r})")
    unit = stated if stated is not None else given
    if unit is None:
        raise MarketDataError(
            "market.mark_unit", None,
            "is required: the unit of option mark/bid/ask prices, 'USD' (per option on one "
            "unit of underlying) or 'coin' (Deribit's quote, converted with underlying_price)")
    return str(unit)


def _coin_to_usd(instruments: Mapping[str, Any]) -> dict[str, Any]:
    """Convert option prices quoted in coin to USD with each option's ``underlying_price``."""
    out: dict[str, Any] = {}
    for name, q in instruments.items():
        base = f"market.instruments[{name!r}]"
        try:
            is_opt = parse_instrument(str(name)).kind is InstrumentKind.OPTION
        except UnknownInstrument as exc:
            raise MarketDataError(base, name,
                                  f"is not a valid instrument name: {exc.reason}") from exc
        if not is_opt or not isinstance(q, Mapping):
            out[name] = q
            continue
        priced = [k for k in _COIN_FIELDS if q.get(k) is not None]
        if not priced:
            out[name] = q
            continue
        fwd = q.get("underlying_price")
        if fwd is None:
            raise MarketDataError(f"{base}.underlying_price", None,
                                  "is required to convert the option's coin prices to USD "
                                  "(mark_unit 'coin')")
        f = positive_number(fwd, f"{base}.underlying_price", error=MarketDataError)
        conv = dict(q)
        for k in priced:
            v = q[k]
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue  # left as given: the snapshot names the bad field
            conv[k] = float(v) * f
        out[name] = conv
    return out


def load_market_json(
    path_or_dict: str | Path | Mapping[str, Any],
    *,
    mark_unit: str | None = None,
    valuation_time: datetime | str | None = None,
    max_age: timedelta | float | None = None,
    price_unlisted: bool = False,
    settle_expired: bool = False,
) -> MarketSnapshot:
    """Load a snapshot from the JSON ``market`` format.

    Parameters
    ----------
    path_or_dict : str, Path or mapping
        A JSON file or its parsed content: either a whole conformance vector (top-level
        ``valuation_time`` and a ``market`` block) or a bare market block that carries its own
        ``valuation_time``. The market block holds ``mark_unit`` (``"USD"`` or ``"coin"``),
        ``index`` {currency: USD}, ``instruments`` {name: {mark_price, mark_iv,
        underlying_price, bid_price, ask_price, open_interest, volume}} and optional
        ``collateral_prices`` {currency: USD}, ``settlement_prices`` {expiry: USD} and
        ``data_time``.
    mark_unit : {"USD", "coin"}, optional
        Unit of option prices when the data does not state ``mark_unit`` (e.g. the conformance
        vectors, whose format fixes USD). One of the two is required; if both are given they
        must agree.
    valuation_time : datetime or str, optional
        Value at this time instead of the file's ``valuation_time``; the file's time is then
        the data time, and the data must be at most ``max_age`` older.
    max_age : timedelta or float, optional
        Largest age of the data in seconds (default: ``market_data.toml``).
    price_unlisted, settle_expired : bool
        The opt-ins of :class:`~pmargin.market.policy.ValuationPolicy`.

    Returns
    -------
    MarketSnapshot
        The validated snapshot.

    Raises
    ------
    MarketDataError
        On unreadable JSON, a missing or unknown key (with the nearest valid one), a missing
        ``mark_unit``, or any invalid value (the field is named, e.g.
        ``market.instruments['BTC-28JUN24-65000-C'].mark_iv``).
    """
    source = "dict"
    if isinstance(path_or_dict, str | Path):
        source = Path(path_or_dict).name
        data = _read_json(Path(path_or_dict))
    else:
        data = path_or_dict
    if not isinstance(data, Mapping):
        raise MarketDataError("market", type(data).__name__, "must be a JSON object")
    top_time = data.get("valuation_time")
    if "market" in data:
        block = require_mapping(data["market"], "market", error=MarketDataError)
    else:
        block, top_time = data, None
    check_field_names(block, _MARKET_KEYS, "market")
    if mark_unit is None and _is_conformance_vector(data):
        mark_unit = "USD"  # the vector format defines its marks in USD (conformance/README.md)
    unit = _mark_unit(block.get("mark_unit"), mark_unit)
    inner_time = block.get("valuation_time")
    if (top_time is not None and inner_time is not None
            and check_time(top_time, "valuation_time") != check_time(inner_time)):
        raise MarketDataError("market.valuation_time", inner_time,
                              f"differs from the top-level valuation_time {top_time!r}")
    vt = inner_time if inner_time is not None else top_time
    if vt is None:
        raise MarketDataError("market.valuation_time", None, "is required")
    if "index" not in block:
        raise MarketDataError("market.index", None, "is required ({currency: USD price})")
    instruments = block.get("instruments")
    instruments = {} if instruments is None else instruments
    if not isinstance(instruments, Mapping):
        raise MarketDataError("market.instruments", instruments,
                              "must be an object {instrument name: {mark_price, ...}}")
    if unit == "coin":
        instruments = _coin_to_usd(instruments)
    coll = block.get("collateral_prices")
    coll = {} if coll is None else coll
    if not isinstance(coll, Mapping):
        raise MarketDataError("market.collateral_prices", coll,
                              "must be an object {currency: USD price}")
    data_time = block.get("data_time")
    if valuation_time is not None:
        data_time = vt if data_time is None else data_time
        vt = valuation_time
    return MarketSnapshot(vt, block["index"], instruments, coll, source=source,
                          settlement_prices=block.get("settlement_prices"),
                          data_time=data_time, max_age=max_age,
                          policy=ValuationPolicy(price_unlisted, settle_expired))


_NA_CELLS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                       "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
                       "nan", "null"})
"""Cells read as missing (the spellings of a missing value that CSV writers use)."""


def _read_csv(p: Path) -> dict[str, list[str]]:
    """Columns of a CSV file (``.gz``: gzip-compressed) as lists of cell strings.

    Blank lines are skipped; a row shorter than the header is padded with empty (missing)
    cells; a longer row is an error.
    """
    opener: Any = gzip.open if p.name.lower().endswith(".gz") else open
    with opener(p, "rt", encoding="utf-8-sig", newline="") as fh:
        rows = [r for r in csv.reader(fh) if r]
    if not rows:
        raise MarketDataError("market", str(p), "is empty (no CSV header)")
    header = rows[0]
    n = len(header)
    for i, r in enumerate(rows[1:]):
        if len(r) > n:
            raise MarketDataError("market", str(p), f"cannot be read as a CSV: expected {n} "
                                  f"fields in data row {i + 1}, saw {len(r)}")
        if len(r) < n:
            r.extend([""] * (n - len(r)))
    body = zip(*rows[1:], strict=True) if len(rows) > 1 else ([] for _ in header)
    return {name: list(col) for name, col in zip(header, body, strict=True)}


def _numbers(cells: list[str]) -> tuple[np.ndarray, int | None]:
    """Cells as float64 (missing cells: NaN) and the index of the first non-numeric cell."""
    nan = math.nan
    # float() also accepts digit separators ("1_000"), which a number column does not
    if "_" not in "".join(cells):
        try:
            return np.array([nan if c in _NA_CELLS else float(c) for c in cells]), None
        except ValueError:
            pass
    out = np.empty(len(cells))
    bad: int | None = None
    for i, c in enumerate(cells):
        try:
            out[i] = nan if c in _NA_CELLS else float(c.replace("_", "?"))
        except ValueError:
            out[i] = nan
            bad = i if bad is None else bad
    return out, bad


def _first_bad(mask: np.ndarray) -> int | None:
    bad = np.flatnonzero(mask)
    return int(bad[0]) if bad.size else None


def _check_column(cols: Mapping[str, list[str]], names: np.ndarray, column: str, key: str,
                  allow_missing: bool, positive: bool, unit: str) -> np.ndarray:
    """Return a CSV column as floats after checking it row by row (vectorised)."""
    v, j = _numbers(cols[column])
    if j is not None:
        raise MarketDataError(f"market.instruments[{names[j]!r}].{key}", cols[column][j],
                              f"CSV column {column} must be a number")
    missing = np.isnan(v)
    bad = ~missing & (~np.isfinite(v) | ((v <= 0.0) if positive else (v < 0.0)))
    if not allow_missing:
        bad |= missing
    i = _first_bad(bad)
    if i is not None:
        what = "positive" if positive else "non-negative"
        raise MarketDataError(f"market.instruments[{names[i]!r}].{key}", float(v[i]),
                              f"CSV column {column} ({unit}) must be finite and {what}")
    return v


def _medians(keys: list[str], values: np.ndarray) -> dict[str, float]:
    """Median of the values of each key, keys in sorted order.

    Missing values are skipped; missing keys are left out.
    """
    groups: dict[str, list[float]] = {}
    for k, x in zip(keys, values.tolist(), strict=True):
        if k not in _NA_CELLS:
            groups.setdefault(k, []).append(x)
    out = {}
    for k in sorted(groups):
        g = np.asarray(groups[k])
        g = g[~np.isnan(g)]
        out[k] = float(np.median(g)) if g.size else math.nan
    return out


def load_deribit_csv(
    path: str | Path,
    *,
    valuation_time: datetime | str | None = None,
    max_age: timedelta | float | None = None,
    price_unlisted: bool = False,
    settle_expired: bool = False,
    settlement_prices: Mapping[str, float] | None = None,
) -> MarketSnapshot:
    """Load a Deribit option-chain snapshot CSV (``.csv`` or gzip-compressed ``.csv.gz``).

    Parameters
    ----------
    path : str or Path
        A file in the format of ``../shared/data/deribit/README.md`` (one row per option).
    valuation_time : datetime or str, optional
        Value at this time instead of the file's ``timestamp`` (the data time), at most
        ``max_age`` later.
    max_age : timedelta or float, optional
        Largest age of the data in seconds (default: ``market_data.toml``).
    price_unlisted, settle_expired : bool
        The opt-ins of :class:`~pmargin.market.policy.ValuationPolicy`.
    settlement_prices : mapping of str to float, optional
        USD settlement prices of past expiries (``{"BTC-21AUG26": 77000.0}``), for
        ``settle_expired``.

    Returns
    -------
    MarketSnapshot
        Snapshot with:

        * valuation time: the ``timestamp`` column (first row; the same on every row);
        * index of each currency: the median of its ``index_price`` column;
        * dated futures: each listed future named in ``futures_instrument_name`` (not ``SYN.*``)
          with the median of its ``futures_price`` as mark;
        * forward pillars: the options' ``underlying`` (listed future, synthetic ``SYN.*``
          forward, or the index for the nearest expiries), median per expiry;
        * options: ``mark_price`` and ``bid_price``/``ask_price`` converted from coin to USD by
          multiplying by the row's ``underlying``; ``mark_iv`` = ``implied_volatility``;
          ``open_interest`` and ``volume`` in contracts. Empty cells are missing values.
        * perpetual: not in the file; ``{U}-PERPETUAL`` of each currency is listed by
          construction with mark = index (``priced_by = "index"``).

    Raises
    ------
    MarketDataError
        On a missing column, an unreadable, binary, truncated or empty file, or any invalid
        value (the file or the field is named).
    """
    p = Path(path)
    try:
        cols = _read_csv(p)
    except UnicodeDecodeError as exc:
        raise MarketDataError("market", str(p),
                              "is not UTF-8 text: is it a binary file?") from exc
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise MarketDataError("market", str(p),
                              f"is a truncated or corrupt gzip file ({exc})") from exc
    except (OSError, ValueError, csv.Error) as exc:
        raise MarketDataError("market", str(p), f"cannot be read as a CSV: {exc}") from exc
    missing = [c for c in _CSV_REQUIRED if c not in cols]
    if missing:
        raise MarketDataError("market.columns", missing,
                              f"{p.name} lacks required Deribit columns")
    n_rows = len(cols["instrument_name"])
    if n_rows == 0:
        raise MarketDataError("market.instruments", str(p), "the CSV has no rows")
    for c in _CSV_OPTIONAL:
        if c not in cols:
            cols[c] = [""] * n_rows

    def text(c: str) -> str:  # a missing name reads as "nan", as pandas' astype(str) did
        return "nan" if c in _NA_CELLS else c

    names = np.array([text(c) for c in cols["instrument_name"]], dtype=object)
    data_time = check_time(text(cols["timestamp"][0]))

    und = _check_column(cols, names, "underlying", "underlying_price", False, True, "USD")
    strike = _check_column(cols, names, "strike", "strike", False, True, "USD")
    mark = _check_column(cols, names, "mark_price", "mark_price", True, False, "coin")
    bid = _check_column(cols, names, "bid_price", "bid_price", True, False, "coin")
    ask = _check_column(cols, names, "ask_price", "ask_price", True, False, "coin")
    iv = _numbers(cols["implied_volatility"])[0]
    oi = _numbers(cols["open_interest"])[0]
    vol = _numbers(cols["volume"])[0]

    index = _medians(cols["currency"], _numbers(cols["index_price"])[0])

    def opt(x: float) -> float | None:
        return None if math.isnan(x) else x

    instruments: dict[str, Quote | Mapping[str, Any]] = {}
    for n, f, m, b, a, s, o, vv in zip(names.tolist(), und.tolist(), mark.tolist(),
                                       bid.tolist(), ask.tolist(), iv.tolist(), oi.tolist(),
                                       vol.tolist(), strict=True):
        if n in instruments:
            raise MarketDataError(f"market.instruments[{n!r}]", n, "appears twice in the CSV")
        instruments[n] = Quote(
            mark_price=None if math.isnan(m) else m * f,
            mark_iv=None if math.isnan(s) else s,
            underlying_price=f,
            bid_price=None if math.isnan(b) else b * f,
            ask_price=None if math.isnan(a) else a * f,
            open_interest=opt(o),
            volume=opt(vv),
        )
    _check_strikes(instruments, strike)

    fut = [(n, x) for n, x in zip(cols["futures_instrument_name"], cols["futures_price"],
                                  strict=True) if n not in _NA_CELLS and not n.startswith("SYN.")]
    if fut:
        fut_px = _medians([n for n, _ in fut], _numbers([x for _, x in fut])[0])
        for fkey, px in fut_px.items():
            if fkey in instruments:
                raise MarketDataError(f"market.instruments[{fkey!r}]", fkey,
                                      "is both an option row and a listed future")
            instruments[fkey] = Quote(mark_price=float(px))
    return MarketSnapshot(data_time if valuation_time is None else valuation_time, index,
                          instruments, source=p.name, settlement_prices=settlement_prices,
                          index_perpetuals=[c for c in index if isinstance(c, str)],
                          data_time=data_time, max_age=max_age,
                          policy=ValuationPolicy(price_unlisted, settle_expired))


def _check_strikes(instruments: Mapping[str, Quote | Mapping[str, Any]],
                   strikes: np.ndarray) -> None:
    """Check the ``strike`` column against the strike in each instrument name."""
    for name, k in zip(instruments, strikes.tolist(), strict=True):
        try:
            inst = parse_instrument(name)
        except UnknownInstrument as exc:
            raise MarketDataError(f"market.instruments[{name!r}]", name,
                                  f"is not a valid instrument name: {exc.reason}") from exc
        if not inst.is_option:
            raise MarketDataError(f"market.instruments[{name!r}]", name,
                                  "a Deribit chain CSV row must be an option")
        if inst.strike != k:
            raise MarketDataError(f"market.instruments[{name!r}].strike", k,
                                  f"CSV column strike differs from the name's strike "
                                  f"{inst.strike:g}")


def load_market(
    path: str | Path,
    *,
    valuation_time: datetime | str | None = None,
    max_age: timedelta | float | None = None,
    price_unlisted: bool = False,
    settle_expired: bool = False,
) -> MarketSnapshot:
    """Load a snapshot, choosing the loader from the file suffix.

    Parameters
    ----------
    path : str or Path
        ``*.json`` (market JSON, which must state its ``mark_unit``) or ``*.csv`` /
        ``*.csv.gz`` (Deribit chain).
    valuation_time, max_age, price_unlisted, settle_expired
        As in :func:`load_market_json` and :func:`load_deribit_csv`.

    Returns
    -------
    MarketSnapshot
        The validated snapshot.

    Raises
    ------
    MarketDataError
        For another suffix, or any error of the chosen loader.
    """
    p = Path(path)
    name = p.name.lower()
    kw: dict[str, Any] = {"valuation_time": valuation_time, "max_age": max_age,
                          "price_unlisted": price_unlisted, "settle_expired": settle_expired}
    if name.endswith(".json"):
        return load_market_json(p, **kw)
    if name.endswith((".csv", ".csv.gz")):
        return load_deribit_csv(p, **kw)
    raise MarketDataError("market", str(p),
                          "unknown market file type; expected .json, .csv or .csv.gz")
