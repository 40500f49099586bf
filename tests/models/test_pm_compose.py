"""The compiled composition (add-ons, floors, IM/MM, loss-bound cap) against the NumPy one.

``_pm_compose.compose`` must give, bit for bit, what ``PortfolioMarginModel._unit_core`` (the
NumPy specification) gives from the same per-unit aggregates, summed over the units as ``_core``
sums them: for every portfolio-margin preset (minimum delta: paradex-pm; minimum charge with
tiers: okx-pm; both composition modes), one and two risk units, the cap binding, and aggregates
holding zeros, negative zeros, infinities and NaN.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from pmargin.models import _pm_compose as compose_mod
from pmargin.models import _pm_kernels as kernels
from pmargin.models import load_model
from pmargin.models.portfolio_margin import ADDONS
from tests.models.test_pm_kernels import (
    MARKET,
    PM_PRESETS,
    btc_book,
    fused,
    random_option_book,
    usdc_book,
)

needs_numba = pytest.mark.skipif(not kernels.NUMBA_ENABLED, reason="Numba disabled")


def numpy_composition(model, prep, book, agg):
    """IM, MM and components from ``agg`` by the NumPy specification, summed as ``_core``."""
    pos = sp.csr_matrix(book.positions)
    coll = np.ascontiguousarray(book.collateral, dtype=np.float64)
    n = book.n_accounts
    outs = []
    for u, unit in enumerate(prep.units):
        d = {name: agg[k, u].copy() for k, name in enumerate(kernels.AGGREGATES)}
        outs.append(model._unit_core(unit, pos, coll, False, d)[:3])
    if len(outs) == 1:
        im, mm, comps = outs[0]
    else:
        im, mm, comps = np.zeros(n), np.zeros(n), {}
        for i_u, m_u, c_u in outs:
            im += i_u
            mm += m_u
            for k, v in c_u.items():
                comps[k] = comps.get(k, np.zeros(n)) + v
    for k in ("worst_case", *ADDONS, "loss_bound_relief"):
        comps.setdefault(k, np.zeros(n))
    return im, mm, comps


def assert_same(model, prep, book, agg):
    im, mm, comps = numpy_composition(model, prep, book, agg)
    terms = model._terms(prep)
    got_im, got_mm, got = compose_mod.compose(terms, agg)
    np.testing.assert_array_equal(got_im, im)
    np.testing.assert_array_equal(got_mm, mm)
    for i, name in enumerate(compose_mod.COMPONENTS):
        if name in comps:
            np.testing.assert_array_equal(got[i], comps[name], err_msg=name)
        else:  # a floor no unit has: reported by neither path
            assert name in ("min_delta", "min_charge")
            assert not got[i].any()
    assert {compose_mod.COMPONENTS[i] for i in terms.reported} == set(comps)


@needs_numba
@pytest.mark.parametrize("preset", PM_PRESETS)
@pytest.mark.parametrize("make", [btc_book, usdc_book,
                                  lambda s: random_option_book(s, 300, "BTC"),
                                  lambda s: random_option_book(s, 2500, "USDC")])
def test_compose_equals_numpy_composition(preset, make):
    model = load_model(preset)
    book = make(3)
    prep = model.prepare(book, MARKET)
    agg = fused(model, prep, book)[0]
    assert_same(model, prep, book, agg)


@needs_numba
@pytest.mark.parametrize("preset", PM_PRESETS)
def test_compose_equals_numpy_composition_on_extreme_aggregates(preset):
    """Aggregates with 0, -0, huge values, inf and NaN (the NaN rules of np.maximum/minimum,
    np.clip): whatever reaches the composition, both paths give the same numbers."""
    model = load_model(preset)
    book = usdc_book(4, n=200)
    prep = model.prepare(book, MARKET)
    agg = fused(model, prep, book)[0].copy()
    rng = np.random.default_rng(1)
    special = np.array([0.0, -0.0, 1e300, -1e300, np.inf, -np.inf, np.nan, 1e-300])
    mask = rng.random(agg.shape) < 0.2
    agg[mask] = rng.choice(special, size=int(mask.sum()))
    with np.errstate(all="ignore"):
        assert_same(model, prep, book, agg)


@needs_numba
def test_threads_and_serial_rows_compose_identically(monkeypatch):
    model = load_model("okx-pm")
    book = usdc_book(5, n=300)
    prep = model.prepare(book, MARKET)
    agg = fused(model, prep, book)[0]
    terms = model._terms(prep)
    monkeypatch.setattr(compose_mod, "PARALLEL_MIN_ROWS", 10**9)
    serial = compose_mod.compose(terms, agg.copy())  # compose overwrites unit 0's aggregates
    monkeypatch.setattr(compose_mod, "PARALLEL_MIN_ROWS", 1)
    split = compose_mod.compose(terms, agg.copy())
    for a, b in zip(serial, split, strict=True):
        np.testing.assert_array_equal(a, b)


@needs_numba
def test_evaluate_uses_the_compiled_composition_and_matches_numpy_path():
    """The book result (Numba path) equals the NumPy path to rounding: only the aggregates'
    BLAS sums differ (see test_pm_kernels), the composition is the same."""
    model = load_model("paradex-pm")
    book = usdc_book(6, n=120)
    prep = model.prepare(book, MARKET)
    fast = model.evaluate(prep, book)
    ref = model._evaluate(prep, book, need_pnl=True)[0]
    assert set(fast.components) == set(ref.components)
    for k in ref.components:
        np.testing.assert_allclose(fast.components[k], ref.components[k], rtol=1e-12,
                                   atol=1e-9, err_msg=k)
    np.testing.assert_allclose(fast.initial_margin, ref.initial_margin, rtol=1e-12, atol=1e-9)
