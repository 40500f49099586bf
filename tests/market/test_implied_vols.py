"""Implied vols of option prices: the market layer uses pricing/implied_vol.py (issue 9.8)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pmargin.errors import MarketDataError
from pmargin.market import solve_implied_vol
from pmargin.pricing import black76
from pmargin.pricing.implied_vol import implied_vol


def _chain(path) -> tuple[np.ndarray, ...]:
    """USD marks, forwards, strikes, ACT/365 taus and rights of one Deribit CSV."""
    df = pd.read_csv(path)
    ts = pd.to_datetime(df["timestamp"], utc=True)
    ex = pd.to_datetime(df["expiry_datetime"], utc=True)
    tau = (ex - ts).dt.total_seconds().to_numpy() / (365.0 * 86400.0)
    f = df["underlying"].to_numpy(dtype=float)
    return (df["mark_price"].to_numpy(dtype=float) * f, f, df["strike"].to_numpy(dtype=float),
            tau, (df["option_type"] == "call").to_numpy())


def _solvable(p, f, k, t, c):
    """Rows with time value (a zero mark or a mark at intrinsic has no implied vol)."""
    intrinsic = np.where(c, np.maximum(f - k, 0.0), np.maximum(k - f, 0.0))
    return (p - intrinsic) > 1e-9 * f


def test_snapshot_solver_is_the_pricing_implied_vol_module(deribit_snapshots):
    p, f, k, t, c = _chain(deribit_snapshots[-1])
    keep = np.flatnonzero(_solvable(p, f, k, t, c))[:300]
    want = implied_vol(p[keep], f[keep], k[keep], t[keep], c[keep]).vol
    got = [solve_implied_vol(p[i], f[i], k[i], t[i], bool(c[i])) for i in keep]
    assert np.array_equal(np.array(got), want)  # one solver: the same numbers bit for bit


def test_real_chains_solved_vols_match_bisection(deribit_snapshots):
    # Independent reference: 80 bisection steps on Black-76 price over [1e-6, 10] (width 1e-23).
    from pmargin.market.implied_vols import solve_implied_vols

    worst_vol, worst_price = 0.0, 0.0
    for path in deribit_snapshots:
        p, f, k, t, c = _chain(path)
        ok = _solvable(p, f, k, t, c)
        p, f, k, t, c = p[ok], f[ok], k[ok], t[ok], c[ok]
        fields = [f"row{i}" for i in range(p.size)]
        vol = solve_implied_vols(p, f, k, t, c, fields)
        lo, hi = np.full(p.size, 1e-6), np.full(p.size, 10.0)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            above = black76.price(f, k, t, mid, c) > p
            hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
        worst_vol = max(worst_vol, float(np.max(np.abs(vol - 0.5 * (lo + hi)))))
        err = np.abs(black76.price(f, k, t, vol, c) - p) / f
        worst_price = max(worst_price, float(err.max()))
    # Measured over the 39 files (60,370 solvable rows): max |dvol| 1.2e-9, reprice 2.3e-15 F.
    assert worst_vol <= 1e-8
    assert worst_price <= 1e-13


@pytest.mark.parametrize(("price", "match"), [
    (4000.0, "below the call's intrinsic value 5000"),
    (5000.0, "equals the intrinsic value"),
    (65000.0, "at or above the call's upper bound"),
    (64999.0, "implies a volatility above 10"),
])
def test_arbitrage_prices_are_named(price, match):
    with pytest.raises(MarketDataError, match=r"m\.mark_price.*" + match):
        solve_implied_vol(price, 65000.0, 60000.0, 0.1, True, "m.mark_price")


def test_vectorised_solve_names_the_first_bad_row():
    from pmargin.market.implied_vols import solve_implied_vols

    with pytest.raises(MarketDataError, match=r"^b:"):
        solve_implied_vols([3000.0, 1.0], [65000.0, 65000.0], [65000.0, 60000.0], [0.1, 0.1],
                           [True, True], ["a", "b"])
