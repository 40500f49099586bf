"""Hedge recognition on a real Deribit snapshot (skips when ../shared/data is absent)."""

import pytest

from pmargin.market.loaders import load_market
from pmargin.reports.hedges import HEDGED, hedge_table

OPTION_HEDGES = {"bull call spread", "bear put spread", "long butterfly", "short butterfly",
                 "iron condor", "calendar spread", "delta-neutral spot + short perpetual"}
# Standard margin charges futures at 2% and coin collateral at 0%: structures whose residual risk
# is the underlying's move (a covered call is a synthetic short put) can need more under PM, which
# sees the full +/-16% move. Their hedge is still recognised: PM(structure) < PM(legs alone).
DELTA_RESIDUAL = {"covered call (spot)", "covered call (future)", "protective put"}


@pytest.fixture(scope="module")
def table(deribit_snapshots):
    return hedge_table(load_market(deribit_snapshots[-1]))


def test_all_structures_present(table):
    assert set(table.index) >= HEDGED
    assert set(HEDGED) == OPTION_HEDGES | DELTA_RESIDUAL


@pytest.mark.parametrize("preset", ["deribit-pm", "pmargin"])
def test_hedged_structures_need_less_under_pm_than_cross_sm(table, preset):
    for name in OPTION_HEDGES:
        assert table.loc[name, preset] < table.loc[name, "cross_sm"], name


@pytest.mark.parametrize("preset", ["deribit-pm", "pmargin"])
def test_pm_recognises_every_hedge_against_its_legs(table, preset):
    for name in HEDGED:
        assert table.loc[name, preset] < table.loc[name, f"{preset}_legs"], name


@pytest.mark.parametrize("preset", ["deribit-pm", "pmargin"])
def test_margin_never_below_worst_scenario_loss(table, preset):
    assert (table[preset] >= table[f"{preset}_worst_loss"] - 1e-9).all()
