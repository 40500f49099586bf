"""Market data of one instrument (:class:`Quote`) and the validation of one instrument entry.

Every price in a :class:`Quote` is in USD per unit of underlying: loaders convert coin quotes
before building one (see :mod:`pmargin.market.loaders`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from pmargin.errors import MarketDataError, StaleMarketData, UnknownInstrument
from pmargin.instruments import LINEAR_QUOTES, Instrument, InstrumentKind, parse_instrument
from pmargin.market.surface import check_vol
from pmargin.validation import check_keys, finite_number, non_negative_number, positive_number

__all__ = ["QUOTE_FIELDS", "STABLECOINS", "Quote", "check_field_names", "check_instrument"]

STABLECOINS: frozenset[str] = frozenset(LINEAR_QUOTES)
"""Currencies worth 1 USD unless an explicit collateral price is given."""


@dataclass(frozen=True, slots=True)
class Quote:
    """Market data of one instrument as supplied (every price in USD per unit of underlying).

    Parameters
    ----------
    mark_price : float, optional
        Mark: futures/perpetual price, or option premium (USD per option on one unit).
    mark_iv : float, optional
        Option mark implied vol (decimal).
    underlying_price : float, optional
        Option only: forward of the option's expiry that the mark and IV refer to (USD).
    bid_price, ask_price : float, optional
        Best bid and ask (same units as ``mark_price``).
    open_interest, volume : float, optional
        Open interest and 24-hour volume in contracts (informative, for liquidity models).
    """

    mark_price: float | None = None
    mark_iv: float | None = None
    underlying_price: float | None = None
    bid_price: float | None = None
    ask_price: float | None = None
    open_interest: float | None = None
    volume: float | None = None


QUOTE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Quote))


def check_field_names(data: Mapping[Any, Any], allowed: tuple[str, ...], where: str) -> None:
    """Reject unknown keys of a market object, naming the key and the nearest valid one.

    :func:`pmargin.validation.check_keys`, after refusing keys that are not printable text
    (named by their ``repr``, so the error stays on one line).

    Raises
    ------
    MarketDataError
        On the first unknown key.
    """
    for key in data:
        if not (isinstance(key, str) and key.isprintable()):
            raise MarketDataError(f"{where}[{key!r}]", key,
                                  f"unknown field (valid: {', '.join(allowed)})")
    check_keys(data, allowed, where, error=MarketDataError)


def check_instrument(
    raw_name: str, raw_quote: Quote | Mapping[str, Any], vt: datetime, idx: Mapping[str, float]
) -> tuple[Instrument, Quote]:
    """Validate one instrument entry of a market.

    Parameters
    ----------
    raw_name : str
        Instrument name as given.
    raw_quote : Quote or mapping
        Its market data (keys of :class:`Quote`; prices in USD).
    vt : datetime
        Valuation time (aware UTC).
    idx : mapping of str to float
        Index prices by underlying (USD).

    Returns
    -------
    tuple of (Instrument, Quote)
        The parsed instrument and its validated quote.

    Raises
    ------
    MarketDataError
        Naming ``market.instruments['NAME']`` or one of its fields.
    StaleMarketData
        If the instrument is expired at ``vt``.
    """
    base = f"market.instruments[{raw_name!r}]"
    try:
        inst = parse_instrument(raw_name)
    except UnknownInstrument as exc:
        raise MarketDataError(base, raw_name,
                              f"is not a valid instrument name: {exc.reason}") from exc
    if isinstance(raw_quote, Quote):
        given = {k: getattr(raw_quote, k) for k in QUOTE_FIELDS}
    elif isinstance(raw_quote, Mapping):
        check_field_names(raw_quote, QUOTE_FIELDS, base)
        given = {k: raw_quote.get(k) for k in QUOTE_FIELDS}
    else:
        raise MarketDataError(base, raw_quote, "must be a mapping of mark_price, mark_iv, ...")
    u = inst.underlying
    if u not in idx:
        raise MarketDataError(f"market.index[{u!r}]", None,
                              f"is missing: {base} needs the {u} index price")
    if inst.expiry is not None and inst.expiry <= vt:
        raise StaleMarketData(base, inst.expiry.isoformat(),
                              f"expired at or before the valuation time {vt.isoformat()}")
    is_opt = inst.kind is InstrumentKind.OPTION
    vals: dict[str, float | None] = {}
    for key, v in given.items():
        if v is None:
            vals[key] = None
            continue
        fld = f"{base}.{key}"
        if key == "mark_iv":
            if not is_opt:
                raise MarketDataError(fld, v, "applies to options only")
            vals[key] = check_vol(fld, finite_number(v, fld, error=MarketDataError))
        elif key == "underlying_price":
            if not is_opt:
                raise MarketDataError(fld, v, "applies to options only")
            vals[key] = positive_number(v, fld, error=MarketDataError)
        elif key == "mark_price" and not is_opt:
            vals[key] = positive_number(v, fld, error=MarketDataError)
        else:
            vals[key] = non_negative_number(v, fld, error=MarketDataError)
    bid, ask = vals["bid_price"], vals["ask_price"]
    if bid is not None and ask is not None and bid > ask:
        raise MarketDataError(f"{base}.bid_price", bid, f"is above the ask {ask!r}")
    if is_opt:
        if vals["mark_iv"] is None and vals["mark_price"] is None:
            raise MarketDataError(f"{base}.mark_iv", None,
                                  "option has neither mark_iv nor mark_price")
    elif vals["mark_price"] is None:
        raise MarketDataError(f"{base}.mark_price", None,
                              f"is required for a {inst.kind.value}")
    return inst, Quote(**vals)
