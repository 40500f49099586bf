"""The feed interface: a feed yields market updates, each with its source, time and digest.

A :class:`MarketUpdate` is one market as a feed delivered it: the stored form of the market
(JSON market block, or a Deribit CSV chain gzipped in base64), the parsed
:class:`~pmargin.market.snapshot.MarketSnapshot`, the id of the source that sent it, its
valuation time and the SHA-256 digest of the stored form (the digest the service stores the
market under). Every implementation builds its updates with :func:`make_update`, so the same
market has the same digest whatever feed delivered it.

Implementations: :class:`pmargin.feeds.http.HttpFeed` (the service's ``POST /v1/market``: one
update per request) and :class:`pmargin.feeds.replay.ReplayFeed` (history, hour by hour).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pmargin.errors import InvalidInput
from pmargin.market import MarketSnapshot

__all__ = ["SOURCE_PATTERN", "Feed", "MarketUpdate", "check_source", "digest_of",
           "make_update", "market_from_payload", "payload_from_csv", "payload_from_market"]

SOURCE_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
"""What a source id may be (letters, digits and ``_.:-``, 1 to 64 characters)."""


def digest_of(obj: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``obj`` (sorted keys), as the service stores it."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def check_source(source: str, field: str = "source") -> str:
    """Return ``source`` if it is a valid source id, else raise :class:`InvalidInput`."""
    if not isinstance(source, str) or re.fullmatch(SOURCE_PATTERN, source) is None:
        raise InvalidInput(field, source, "must be 1-64 letters, digits or '_.:-'")
    return source


def market_from_payload(payload: Mapping[str, Any]) -> MarketSnapshot:
    """Parse the stored form of a market (JSON market block or gzipped Deribit CSV).

    Parameters
    ----------
    payload : mapping
        ``{"format": "json", "market": {...}}`` or ``{"format": "deribit-csv",
        "gzip_b64": "..."}``.

    Returns
    -------
    MarketSnapshot
        The validated market.
    """
    from pmargin.attest.inputs import market_from_stored

    return market_from_stored(payload)  # the one parser of stored markets (attestations too)


def payload_from_market(market: Mapping[str, Any]) -> dict[str, Any]:
    """Stored form of a JSON market block (the body of ``POST /v1/market``)."""
    return {"format": "json", "market": dict(market)}


def payload_from_csv(raw: bytes) -> dict[str, Any]:
    """Stored form of a Deribit CSV chain (gzipped unless it already is; base64)."""
    gz = raw if raw[:2] == b"\x1f\x8b" else gzip.compress(raw, mtime=0)
    return {"format": "deribit-csv", "gzip_b64": base64.b64encode(gz).decode()}


@dataclass(frozen=True)
class MarketUpdate:
    """One market delivered by a feed.

    Attributes
    ----------
    source : str
        Id of the source that delivered it (``http:<key id>``, ``replay:BTC-history``, ...).
    time : datetime
        Valuation time of the market (aware UTC).
    digest : str
        SHA-256 (hex, 64 characters) of the stored form, :func:`digest_of` of ``payload``.
    payload : dict
        The stored form (see :func:`market_from_payload`).
    market : MarketSnapshot
        The parsed market.
    """

    source: str
    time: datetime
    digest: str
    payload: dict[str, Any]
    market: MarketSnapshot

    def index(self) -> dict[str, float]:
        """Index price in USD of every underlying of the market."""
        return {u: self.market.index_price(u) for u in self.market.underlyings}


def make_update(payload: Mapping[str, Any], source: str,
                market: MarketSnapshot | None = None) -> MarketUpdate:
    """Build a :class:`MarketUpdate` from a stored form (the one constructor of every feed).

    The raw prices are checked first (:func:`pmargin.feeds.guards.check_prices`: NaN, zero,
    negative and crossed prices are refused naming the field), then the market is parsed.

    Parameters
    ----------
    payload : mapping
        Stored form of the market.
    source : str
        Source id (:data:`SOURCE_PATTERN`).
    market : MarketSnapshot, optional
        The market already parsed from ``payload`` (skips parsing and the raw check).

    Returns
    -------
    MarketUpdate
        With the digest of ``payload``.

    Raises
    ------
    InvalidInput
        A bad source id, a bad price (field named), or a market that does not load.
    """
    from pmargin.feeds.guards import check_prices

    check_source(source)
    stored = dict(payload)
    if market is None:
        if stored.get("format") != "deribit-csv":
            check_prices(stored.get("market"))
        market = market_from_payload(stored)
        check_prices(market)
    return MarketUpdate(source, market.valuation_time, digest_of(stored), stored, market)


class Feed(ABC):
    """A source of market updates.

    A feed has a source id and yields :class:`MarketUpdate` in time order. A pull feed (the
    replay) produces them itself; a push feed (HTTP) turns each delivery into one.
    """

    source: str

    @abstractmethod
    def updates(self) -> Iterator[MarketUpdate]:
        """Yield the feed's updates in time order."""

    def __iter__(self) -> Iterator[MarketUpdate]:
        return self.updates()
