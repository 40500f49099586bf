"""okx-pm risk-unit tiers against OKX's published table (issue 9.4).

Source, transcribed by hand from ../shared/reference/methodologies.md section 2.2 (OKX help
'Portfolio margin mode: cross margin trading' and the Jan 2025 parameter announcement
https://okx-api.aperture.finance/help/okx-will-further-adjust-portfolio-margin-parameters):

* MR1 price moves (after 6 Jan 2025): BTC, ETH +/-0, 4, 8, 12 %; LTC, BCH, EOS, OKB, DOT, BSV,
  LINK, FIL, ADA, TRX, UNI, XRP +/-0, 6, 12, 18 %; others +/-0, 8, 16, 25 %.
* MR6 extreme move (half the loss): BTC/ETH +/-24 %; SOL, DOGE, PEPE, XRP, BNB, SHIB, LTC, ORDI,
  WLD, BCH, ADA +/-36 %; others +/-50 %.
* MR4 annualised move risk: BTC/ETH 5 %, tier-2 15 %, others 30 %.

Fails on main: LTC (and every tier-2 coin) fell to the "default" section, whose MR1 grid was
+/-12 % (BTC's) and whose MR4 rate was 30 %.
"""

from __future__ import annotations

import numpy as np
import pytest

from pmargin.models import load_params
from pmargin.models.grid import build_grid

TIER2_MR1 = ["LTC", "BCH", "EOS", "OKB", "DOT", "BSV", "LINK", "FIL", "ADA", "TRX", "UNI", "XRP"]
TIER2_MR6 = ["SOL", "DOGE", "PEPE", "XRP", "BNB", "SHIB", "LTC", "ORDI", "WLD", "BCH", "ADA"]
MR1 = {
    **dict.fromkeys(["BTC", "ETH"], (0.04, 0.08, 0.12)),
    **dict.fromkeys(TIER2_MR1, (0.06, 0.12, 0.18)),
}
MR1_OTHERS = (0.08, 0.16, 0.25)
MR6 = {
    **dict.fromkeys(["BTC", "ETH"], 0.24),
    **dict.fromkeys(TIER2_MR6, 0.36),
}
MR6_OTHERS = 0.50
MR4 = {"BTC": 0.05, "ETH": 0.05, **dict.fromkeys(TIER2_MR1, 0.15)}
MR4_OTHERS = 0.30
COINS = sorted(set(MR1) | set(MR6) | {"AVAX", "TON", "NOTLISTED"})


@pytest.mark.parametrize("coin", COINS)
def test_mr1_and_mr6_moves_match_the_published_tier(coin: str) -> None:
    up = load_params("okx-pm").for_underlying(coin)
    g = build_grid(up)
    steps = MR1.get(coin, MR1_OTHERS)
    mr1 = sorted({float(m) for m, w in zip(g.move, g.weight, strict=True) if w == 1.0})
    expected = sorted({-s for s in steps} | {0.0} | set(steps))
    np.testing.assert_allclose(mr1, expected, atol=1e-12)
    half = sorted(float(m) for m, w in zip(g.move, g.weight, strict=True) if w == 0.5)
    e = MR6.get(coin, MR6_OTHERS)
    np.testing.assert_allclose(half, [-e, e], atol=1e-12)


@pytest.mark.parametrize("coin", COINS)
def test_mr4_basis_rate_matches_the_published_tier(coin: str) -> None:
    rs = load_params("okx-pm").for_underlying(coin).roll_shock
    assert rs is not None
    assert rs.annualised_move_risk == pytest.approx(MR4.get(coin, MR4_OTHERS))


def test_ltc_is_not_an_others_coin() -> None:
    p = load_params("okx-pm")
    assert p.for_underlying("LTC") != p.for_underlying("default")
