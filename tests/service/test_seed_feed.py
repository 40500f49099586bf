"""A seeded venue starts with a fresh feed: the seeded market is its last accepted update."""

from __future__ import annotations

from pathlib import Path

from pmargin.service.server import open_service, seed_demo
from tests.service.conftest import market_json


def test_a_seeded_venue_is_not_stale(tmp_path: Path) -> None:
    svc = open_service(f"sqlite:///{tmp_path / 's.db'}")
    assert svc.guard.status().stale  # nothing accepted yet
    seed_demo(svc, 5, {"format": "json", "market": market_json()})
    st = svc.guard.status()
    assert not st.stale
    assert st.source == "seed"
    assert st.digest == svc.state.market_digest
    # and after a restart it is restored from the stored event
    again = open_service(f"sqlite:///{tmp_path / 's.db'}")
    st2 = again.guard.status()
    assert st2.digest == st.digest
    assert st2.source == "seed"
    assert not st2.stale
