"""Fused Numba pass of portfolio margin against the NumPy specification.

The fused kernel must give the numbers of the NumPy path (same operations in the same order
within an account), whatever the number of threads and whether rows run serially or split.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from pmargin.book import Book
from pmargin.models import _pm_kernels as kernels
from pmargin.models import load_model
from pmargin.models.accounts import GREEKS, greek_weights, position_values
from pmargin.models.loss_bound import loss_bound
from pmargin.portfolio import portfolio_from_dict
from pmargin.synthetic import Archetypes, chain_universe, generate_book
from tests.factories import expiry_code, make_market

MARKET = make_market()
PM_PRESETS = ["deribit-pm", "okx-pm", "paradex-pm", "pmargin"]


def btc_book(seed: int, n: int = 60) -> Book:
    arch = Archetypes(market_maker=0.1, collateral_only=0.1, empty=0.1, mm_options=(5, 30))
    return generate_book(MARKET, chain_universe(MARKET, "BTC"), n, seed=seed, archetypes=arch)


def usdc_book(seed: int, n: int = 40) -> Book:
    """Two underlyings (BTC, ETH: two risk units) and four collateral currencies."""
    rng = np.random.default_rng(seed)
    names = [i.name for i in chain_universe(MARKET, "BTC", linear=True)]
    names += [i.name for i in chain_universe(MARKET, "ETH", linear=True)]
    names += ["BTC-PERPETUAL", f"ETH-{expiry_code(30)}-2500-C"]
    pfs = []
    for a in range(n):
        pos = [{"instrument": str(x), "quantity": float(np.round(rng.normal(0, 3), 2)) or 0.5}
               for x in rng.choice(names, size=int(rng.integers(0, 8)), replace=False)]
        coll = {"USDC": float(rng.uniform(0, 5e4)), "BTC": float(rng.uniform(0, 1)),
                "ETH": float(rng.uniform(0, 5)), "USDT": float(rng.uniform(0, 1e3))}
        pfs.append(portfolio_from_dict({"margin_currency": "USDC", "collateral": coll,
                                        "positions": pos, "account_id": f"u{a}"}))
    return Book.from_portfolios(pfs)


def bound_reference(unit, pos, coll, gross):
    """The cap of every row by the NumPy specification: ``loss_bound`` plus the collateral's
    worst loss in the unit's grid (as ``portfolio_margin._capped``); inf where no cap applies
    (a future or perpetual of the unit held, or no finite bound for the unit in this book)."""
    n = pos.shape[0]
    out = np.full(n, np.inf)
    if unit.bound is None or not unit.bound.bounded:
        return out
    rows = np.flatnonzero(gross == 0.0)
    cap = loss_bound(pos.indptr, pos.indices, pos.data, unit.colmap, unit.bound, rows)
    if coll.shape[1] and unit.collateral_risk.any():
        cap = cap + np.maximum(0.0, -(coll[rows] @ unit.collateral_risk).min(axis=1))
    out[rows] = cap
    return out


def numpy_reference(model, prep, book):
    """Per-unit aggregates, values and Greeks by the NumPy path (the specification)."""
    pos = sp.csr_matrix(book.positions)
    coll = np.ascontiguousarray(book.collateral, dtype=np.float64)
    aggs = [model._unit_aggregates(u, pos, coll, need_pnl=True)[0] for u in prep.units]
    for u, agg in zip(prep.units, aggs, strict=True):
        agg["bound"] = bound_reference(u, pos, coll, agg["gross"])
    cells = position_values(pos, book.entry_notional, prep.table)
    # each row's cell values added in stored order (scipy's own row sum uses another order)
    values = np.array([sum(cells.data[cells.indptr[r]:cells.indptr[r + 1]].tolist())
                       for r in range(book.n_accounts)])
    sums = np.asarray(pos @ greek_weights(prep.table)[1])
    return aggs, values, sums


def fused(model, prep, book):
    pos = sp.csr_matrix(book.positions)
    ent = sp.csr_matrix(book.entry_notional)
    return kernels.book_pass(model._packed(prep), pos.indptr, pos.indices, pos.data,
                             np.ascontiguousarray(book.collateral, dtype=np.float64),
                             (ent.indptr, ent.indices, ent.data))


needs_numba = pytest.mark.skipif(not kernels.NUMBA_ENABLED, reason="Numba disabled")


@needs_numba
@pytest.mark.parametrize("preset", PM_PRESETS)
@pytest.mark.parametrize("make", [btc_book, usdc_book])
def test_fused_pass_equals_numpy_path(preset, make):
    model = load_model(preset)
    book = make(5)
    prep = model.prepare(book, MARKET)
    aggs, values, sums = numpy_reference(model, prep, book)
    agg, got_values, got_sums = fused(model, prep, book)
    single_currency = book.collateral.shape[1] == 1
    for u, ref in enumerate(aggs):
        for k, name in enumerate(kernels.AGGREGATES):
            if name in ("worst_case", "bound") and single_currency:
                # same products added in the same order: bit for bit
                assert np.array_equal(agg[k, u], ref[name]), name
            else:
                # the NumPy path adds the collateral P&L as one BLAS product and the roll shock
                # as a BLAS dot, whose summation order is BLAS's own
                np.testing.assert_allclose(agg[k, u], ref[name], rtol=1e-12, atol=1e-12,
                                           err_msg=name)
    assert np.array_equal(got_values, values)
    assert np.array_equal(got_sums, sums.T)
    # the cap is exercised: some rows have a finite bound, some none
    bounds = agg[kernels.AGGREGATES.index("bound")]
    if any(u.bound is not None and u.bound.bounded for u in prep.units):
        assert np.isfinite(bounds).any()
        assert np.isinf(bounds).any()


def random_option_book(seed: int, n: int, mc: str) -> Book:
    """Random option books with many bounded ones: long options, debit and credit verticals,
    short legs, expired options, zero quantities, futures in a few, coin collateral."""
    rng = np.random.default_rng(seed)
    opts = [i.name for i in chain_universe(MARKET, "BTC") if i.is_option]
    lin = [i.name for i in chain_universe(MARKET, "BTC") if not i.is_option]
    pfs = []
    for a in range(n):
        k = int(rng.integers(0, 9))
        names = list(rng.choice(opts, size=k, replace=False))
        qty = rng.choice([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0], size=k,
                         p=[0.05, 0.1, 0.05, 0.05, 0.25, 0.35, 0.15])
        if rng.random() < 0.1:
            names.append(str(rng.choice(lin)))
            qty = np.append(qty, rng.choice([-1.0, 1.0]))
        coll = {"BTC": float(rng.uniform(0, 2))}
        if mc == "USDC":
            coll["USDC"] = float(rng.uniform(0, 5e4))
        pfs.append(portfolio_from_dict({
            "margin_currency": mc, "collateral": coll, "account_id": f"r{a}",
            "positions": [{"instrument": x, "quantity": float(q)}
                          for x, q in zip(names, qty, strict=True)]}))
    return Book.from_portfolios(pfs)


@needs_numba
@pytest.mark.parametrize("preset", PM_PRESETS)
@pytest.mark.parametrize("mc", ["BTC", "USDC"])
@pytest.mark.parametrize("n", [50, 2500])  # serial rows, and rows split between threads
def test_fused_loss_bound_cap_equals_numpy_path(preset, mc, n):
    """The cap folded into the fused pass gives the margins of the NumPy specification
    (``_unit_aggregates`` + ``_capped`` with ``loss_bound``), on random option books."""
    model = load_model(preset)
    book = random_option_book(11, n, mc)
    prep = model.prepare(book, MARKET)
    fast = model.evaluate(prep, book)
    ref = model._evaluate(prep, book, need_pnl=True)[0]  # the NumPy path
    relief = ref.components["loss_bound_relief"]
    if preset != "paradex-pm":  # paradex-pm's minimum delta charge keeps it under the bound
        assert (relief > 0).sum() >= n // 50, "the cap must bind on some accounts"
    np.testing.assert_array_equal(fast.components["loss_bound_relief"] > 0, relief > 0)
    for got, want in ((fast.initial_margin, ref.initial_margin),
                      (fast.maintenance_margin, ref.maintenance_margin),
                      (fast.components["loss_bound_relief"], relief)):
        # equal but for the roll shock's BLAS dot in the NumPy path (rounding)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0.0)


@needs_numba
@pytest.mark.parametrize("make", [btc_book, usdc_book])
def test_threads_and_serial_rows_give_identical_numbers(monkeypatch, make):
    import numba

    model = load_model("deribit-pm")
    book = make(8, n=300)
    prep = model.prepare(book, MARKET)
    monkeypatch.setattr(kernels, "PARALLEL_MIN_ROWS", 10**9)
    serial = fused(model, prep, book)
    monkeypatch.setattr(kernels, "PARALLEL_MIN_ROWS", 1)
    before = numba.get_num_threads()
    try:
        outs = []
        for n_threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n_threads)
            outs.append(fused(model, prep, book))
    finally:
        numba.set_num_threads(before)
    for out in outs:
        for a, b in zip(out, serial, strict=True):
            assert np.array_equal(a, b)


def test_explicit_zero_cells_change_nothing():
    # a zero quantity stored in the positions but not in the entry notionals (a position
    # closed in place) must neither shift other cells' entries nor fail
    model = load_model("deribit-pm")
    book = btc_book(3, n=30)
    clean = model.compute(book, MARKET)
    rows = [r for r in range(book.n_accounts) if book.positions[r].nnz >= 2][:5]
    # add explicit zero cells (first free column of each chosen row) to the CSR structure
    dense_rows = {r: next(c for c in range(book.n_instruments) if book.positions[r, c] == 0.0)
                  for r in rows}
    coo = book.positions.tocoo()
    extra_r = np.array(list(dense_rows), dtype=np.int64)
    extra_c = np.array(list(dense_rows.values()), dtype=np.int64)
    with_zeros = sp.csr_matrix(
        (np.concatenate([coo.data, np.zeros(extra_r.size)]),
         (np.concatenate([coo.row, extra_r]), np.concatenate([coo.col, extra_c]))),
        shape=book.positions.shape)
    assert with_zeros.nnz == book.positions.nnz + len(rows)
    book.positions = with_zeros
    res = model.compute(book, MARKET)
    # same numbers up to the order in which scipy adds a row (the zero cell is one more term)
    close = {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(res.initial_margin, clean.initial_margin, **close)
    np.testing.assert_allclose(res.maintenance_margin, clean.maintenance_margin, **close)
    np.testing.assert_allclose(res.equity, clean.equity, **close)
    for g in GREEKS:
        np.testing.assert_allclose(res.greeks[g], clean.greeks[g], **close)


@needs_numba
def test_book_kernels_release_the_gil() -> None:
    # the service margins in one thread while others answer reads: every book-wide compiled
    # pass must run without the GIL (it touches arrays only)
    from pmargin.models import _pm_compose

    assert kernels._rows.targetoptions.get("nogil") is True
    assert _pm_compose._compose.targetoptions.get("nogil") is True
    for parallel in (False, True):
        fn = kernels._get(kernels._row_sums_kernel, kernels._compiled_sums, parallel)
        assert fn.targetoptions.get("nogil") is True
