"""Valuation policy of a snapshot: what may be valued without a listed mark, and staleness.

* :class:`ValuationPolicy`: the two explicit opt-ins, pricing instruments the market does not
  list from the forward curve and vol surface (``price_unlisted``) and settling instruments past
  their expiry at the market's settlement prices (``settle_expired``). Both are off by default:
  an unlisted or expired instrument is then an error naming it.
* :func:`default_max_age`: the largest age of market data at the valuation time, read from
  ``market_data.toml``.
* :func:`parse_settlement_prices` and :func:`check_age`: validation of settlement prices and of
  the data time against the valuation time.

See ``docs/market-data.md`` (sections "Listed, model-priced and settled instruments" and
"Stale data").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PositiveFloat

from pmargin.errors import MarketDataError, StaleMarketData, UnknownInstrument
from pmargin.instruments import InstrumentKind, parse_instrument
from pmargin.paramfiles import Shipped, load_params_file
from pmargin.validation import non_negative_number, positive_number

__all__ = ["PRICED_BY", "PricedBy", "ValuationPolicy", "check_age", "default_max_age",
           "parse_settlement_prices", "to_max_age"]

PricedBy = Literal["market", "index", "model", "settlement"]
"""How a position is valued: its listed mark (``market``), the index for an instrument listed by
construction with mark = index (the perpetual of a Deribit chain CSV), the forward curve and vol
surface (``model``, opt-in), or a settlement price (``settlement``, opt-in)."""

PRICED_BY: tuple[str, ...] = ("market", "index", "model", "settlement")


@dataclass(frozen=True, slots=True)
class ValuationPolicy:
    """What a snapshot may value besides listed, live instruments.

    Parameters
    ----------
    price_unlisted : bool
        Price instruments absent from the market from the forward curve and vol surface
        (reported as ``priced_by = "model"``). Default False: such an instrument raises
        :class:`~pmargin.errors.UnknownInstrument`.
    settle_expired : bool
        Value instruments past their expiry at the market's settlement price of their
        underlying and expiry (reported as ``priced_by = "settlement"``). Default False: such
        an instrument raises :class:`~pmargin.errors.StaleMarketData`.
    """

    price_unlisted: bool = False
    settle_expired: bool = False


class _Staleness(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_age_seconds: PositiveFloat


class _MarketDataSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    staleness: _Staleness


_SHIPPED = Shipped("pmargin.market", "", "market-data settings")


def default_max_age() -> timedelta:
    """Default largest age of market data at the valuation time (``market_data.toml``)."""
    settings = load_params_file(_MarketDataSettings, "market_data", _SHIPPED)
    return timedelta(seconds=settings.staleness.max_age_seconds)


def to_max_age(value: timedelta | float | None, field: str = "max_age") -> timedelta:
    """A maximum data age from seconds or a timedelta (``None``: :func:`default_max_age`).

    Parameters
    ----------
    value : timedelta, float or None
        Age in seconds (>= 0) or a timedelta.
    field : str
        Field named in errors.

    Returns
    -------
    timedelta
        The maximum age.
    """
    if value is None:
        return default_max_age()
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    else:
        seconds = non_negative_number(value, field, error=MarketDataError)
    if not (math.isfinite(seconds) and seconds >= 0.0):
        raise MarketDataError(field, value, "must be a non-negative number of seconds")
    return timedelta(seconds=seconds)


def check_age(data_time: datetime, valuation_time: datetime, max_age: timedelta) -> None:
    """Refuse market data observed after, or more than ``max_age`` before, the valuation time.

    Raises
    ------
    MarketDataError
        If ``data_time`` is after ``valuation_time`` (data from the future).
    StaleMarketData
        If ``valuation_time - data_time > max_age``.
    """
    if data_time > valuation_time:
        raise MarketDataError("market.data_time", data_time.isoformat(),
                              f"is after the valuation time {valuation_time.isoformat()}")
    age = valuation_time - data_time
    if age > max_age:
        raise StaleMarketData(
            "market.data_time", data_time.isoformat(),
            f"is stale: {age.total_seconds():g} s before the valuation time "
            f"{valuation_time.isoformat()}, more than max_age {max_age.total_seconds():g} s",
        )


def parse_settlement_prices(raw: Mapping[str, Any] | None, valuation_time: datetime,
                            index: Mapping[str, float]) -> dict[tuple[str, datetime], float]:
    """Validate settlement (delivery) prices of past expiries.

    Parameters
    ----------
    raw : mapping of str to float, optional
        ``{"BTC-14JUN24": 66012.5}``: an expiry named like its dated future (underlying and
        expiry code) to the USD settlement price of that underlying at that expiry. Inverse and
        linear instruments of the underlying share it.
    valuation_time : datetime
        The snapshot's valuation time; each expiry must be at or before it.
    index : mapping of str to float
        Index prices by underlying (the underlying must have one).

    Returns
    -------
    dict of (str, datetime) to float
        Settlement price in USD by (underlying, expiry).
    """
    out: dict[tuple[str, datetime], float] = {}
    for key, px in (raw or {}).items():
        field = f"market.settlement_prices[{key!r}]"
        try:
            inst = parse_instrument(str(key))
        except UnknownInstrument as exc:
            raise MarketDataError(field, key, "must name an expiry like a dated future, "
                                  f"e.g. 'BTC-14JUN24' ({exc.reason})") from exc
        if inst.kind is not InstrumentKind.FUTURE or inst.expiry is None:
            raise MarketDataError(field, key,
                                  "must name an expiry like a dated future, e.g. 'BTC-14JUN24'")
        if inst.underlying not in index:
            raise MarketDataError(f"market.index[{inst.underlying!r}]", None,
                                  f"is missing: {field} needs the {inst.underlying} index")
        if inst.expiry > valuation_time:
            raise MarketDataError(field, key,
                                  f"expires after the valuation time {valuation_time.isoformat()}"
                                  ": a settlement price is only for a past expiry")
        k = (inst.underlying, inst.expiry)
        if k in out:
            raise MarketDataError(field, key, "duplicates a settlement price of the same expiry")
        out[k] = positive_number(px, field, error=MarketDataError)
    return out
