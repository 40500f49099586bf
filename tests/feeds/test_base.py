"""The feed interface: one constructor, one digest, whatever feed delivered the market."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime

import pytest

from pmargin.errors import InvalidInput
from pmargin.feeds.base import check_source, make_update, market_from_payload
from pmargin.feeds.http import HttpFeed
from pmargin.feeds.replay import ReplayFeed
from pmargin.market import MarketSnapshot

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def test_the_digest_is_the_sha256_of_the_stored_form() -> None:
    m = MarketSnapshot(T0, {"BTC": 90_000.0}, {"BTC-PERPETUAL": {"mark_price": 90_010.0}})
    body = m.to_dict()
    u = HttpFeed().receive(json.dumps(body).encode(), "application/json", "exchange-a")
    # computed here by hand: canonical JSON (sorted keys, default separators) of the stored form
    want = hashlib.sha256(json.dumps({"format": "json", "market": body},
                                     sort_keys=True).encode()).hexdigest()
    assert u.digest == want
    assert u.source == "exchange-a"
    assert u.time == T0
    assert u.index() == {"BTC": 90_000.0}
    # the replay feed gives the same market the same digest
    r = next(iter(ReplayFeed([T0], lambda t: m, "replay:x")))
    assert r.digest == want
    assert r.source == "replay:x"


@pytest.mark.data
def test_http_feed_reads_csv_gzipped_or_not(deribit_csv: bytes) -> None:
    f = HttpFeed()
    a = f.receive(deribit_csv, "text/csv", "s")
    b = f.receive(gzip.compress(deribit_csv, mtime=0), "text/csv", "s")
    assert a.digest == b.digest  # stored gzipped the same way
    assert market_from_payload(a.payload).instrument_names == a.market.instrument_names
    assert [u.digest for u in f.updates()] == [a.digest, b.digest]


@pytest.fixture
def deribit_csv() -> bytes:
    from pmargin.demo import latest_snapshot

    snap = latest_snapshot()
    if snap is None:
        pytest.skip("no Deribit snapshot in ../shared/data")
    return gzip.decompress(snap.read_bytes())


def test_bad_bodies_and_sources() -> None:
    with pytest.raises(InvalidInput) as e:
        HttpFeed().receive(b"{not json", "application/json", "s")
    assert e.value.field == "body"
    with pytest.raises(InvalidInput) as e:
        check_source("has space")
    assert e.value.field == "source"
    m = MarketSnapshot(T0, {"BTC": 90_000.0})
    with pytest.raises(InvalidInput):
        make_update({"format": "json", "market": m.to_dict()}, "x" * 65)
    with pytest.raises(InvalidInput) as e:  # the raw check runs before the loader
        make_update({"format": "json", "market": {**m.to_dict(), "index": {"BTC": -2}}}, "s")
    assert e.value.field == "market.index['BTC']"
