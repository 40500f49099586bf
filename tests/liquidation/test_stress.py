"""Stress runs: layering (no demo, no bench code) and the one place choosing a mode's model."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pmargin.errors import InvalidInput
from pmargin.liquidation.stress import STRESS_MODES, model_for_mode, run_stress
from tests.factories import make_market


def test_stress_imports_neither_the_demo_nor_the_benchmark_code():
    code = ("import sys, pmargin.liquidation.stress; "
            "print(sorted(m for m in sys.modules if m in ('pmargin.demo', 'pmargin.book.bench')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_each_mode_gets_its_model_from_one_function():
    for mode, name in STRESS_MODES.items():
        setup = model_for_mode(mode)
        assert setup.model.name == name
        assert setup.split_isolated == (mode == "isolated")
    with pytest.raises(InvalidInput, match="mode"):
        model_for_mode("magic")


def test_stress_runs_on_the_market_it_is_given():
    market = make_market()
    (res,) = run_stress(30, -0.3, ["portfolio"], market, seed=4)
    assert res.label == "portfolio"
    assert res.accounts == 30
    assert res.conservation_error == 0
    assert res.rounds[0].index == pytest.approx(0.7 * market.index_price("BTC"))
