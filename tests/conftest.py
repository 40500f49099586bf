"""Shared fixtures: location of ../shared, seeded RNG, hypothesis profile."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PMARGIN_SHARED", REPO.parent / "shared")).resolve()

settings.register_profile(
    "pmargin", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("pmargin")


def shared_path(*parts: str) -> Path:
    """Return a path under ../shared, skipping the test when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p}")
    return p


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip(f"shared folder not found: {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def deribit_snapshots(shared_dir: Path) -> list[Path]:
    files = sorted((shared_dir / "data" / "deribit").glob("deribit_options_snapshot_*.csv.gz"))
    if not files:
        pytest.skip("no Deribit snapshots in ../shared/data/deribit")
    return files


DATA_FIXTURES = frozenset({"shared_dir", "deribit_snapshots"})
"""Fixtures that read ../shared: a test using one (even through another fixture) is ``data``."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``data`` every test that uses a shared-data fixture (others carry the mark in code)."""
    for item in items:
        if DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.data)
