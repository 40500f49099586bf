"""One health rule (issue 9.2): pmargin.models.health, used by results and liquidation."""

from __future__ import annotations

import numpy as np
import pytest

from pmargin.errors import InvalidInput
from pmargin.liquidation import health as liq_health
from pmargin.models import health
from pmargin.models.result import AccountMargin, BookMarginResult


def _result(equity: float, im: float, mm: float) -> BookMarginResult:
    return BookMarginResult("m", "", "BTC", 1.0, ["a"], np.array([im]), np.array([mm]),
                            np.array([equity]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["equity", "im", "mm"])
def test_non_finite_figures_are_refused_not_classified_healthy(bad: float, where: str) -> None:
    # fails on main: models/result.py classified a NaN equity as healthy (code 0)
    figs = {"equity": 10.0, "im": 1.0, "mm": 0.5, where: bad}
    with pytest.raises(InvalidInput):
        _ = _result(figs["equity"], figs["im"], figs["mm"]).health
    acct = AccountMargin("m", "BTC", "cross", figs["im"], figs["mm"], figs["equity"], 1.0)
    with pytest.raises(InvalidInput):
        _ = acct.health


def test_liquidation_uses_the_same_rule() -> None:
    assert liq_health.classify is health.classify
    assert liq_health.HealthState is health.HealthState


def test_book_and_account_health_follow_the_thresholds() -> None:
    # equity 100 vs IM 60 / MM 30: healthy; 50: margin call; 10: liquidation; -1: bankrupt
    for eq, name in [(100.0, "healthy"), (60.0, "healthy"), (50.0, "margin_call"),
                     (30.0, "margin_call"), (10.0, "liquidation"), (-1.0, "bankrupt")]:
        assert health.HEALTH_NAMES[int(_result(eq, 60.0, 30.0).health[0])] == name
        assert AccountMargin("m", "BTC", "cross", 60.0, 30.0, eq, 1.0).health == name
