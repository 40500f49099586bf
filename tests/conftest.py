"""Shared fixtures: location of ../shared, seeded RNG, hypothesis profile, headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from pmargin.errors import InvalidInput
from pmargin.shared_folder import shared_folder

REPO = Path(__file__).resolve().parents[1]
try:
    # An explicit PMARGIN_SHARED that is not a directory is an error, never a silent skip.
    _FOUND = shared_folder((REPO.parent / "shared",))
    _SHARED_ERROR = ""
except InvalidInput as _exc:
    _FOUND, _SHARED_ERROR = None, str(_exc)
SHARED = (_FOUND or REPO.parent / "shared").resolve()


def pytest_configure(config: pytest.Config) -> None:
    if _SHARED_ERROR:
        raise pytest.UsageError(_SHARED_ERROR)

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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module (:mod:`tests.browser`); skips, saying why, without."""
    from tests.browser import headless_chromium, why_no_browser

    why = why_no_browser()
    if why is not None:
        pytest.skip(why)
    with headless_chromium() as drv:
        yield drv


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


HISTORY_MODELS = frozenset({"var-fhs", "var-fhs-liquidity"})
"""Models that read price and vol history from ../shared/data (prices/, vol/); var-fhs-liquidity
is the docs/examples preset of tests/models/test_contract.py."""


def model_param(name: str) -> object:
    """A model name for ``parametrize``: history models are ``data`` tests, skipped without it."""
    if name not in HISTORY_MODELS:
        return name
    missing = not (SHARED / "data" / "prices").is_dir()
    return pytest.param(name, marks=[pytest.mark.data, pytest.mark.skipif(
        missing, reason=f"{name} needs the price history in {SHARED / 'data' / 'prices'}")])
