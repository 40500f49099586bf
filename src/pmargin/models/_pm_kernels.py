"""Fused per-account aggregation for portfolio margin (Numba): one pass over the CSR rows.

:func:`book_pass` visits each account row once and, for every risk unit in turn (the row is
short and stays in cache), accumulates the scenario P&L vector (positions @ risk + collateral @
collateral risk), the net coin delta per expiry bucket, the net quantity per (expiry, strike)
group, the gross futures notional and the long/short delta sums; then it applies the
extended-scenario dampener and takes the unit's worst loss. In the same traversal it gathers the
unit's live option cells of the row, from which it takes the defined-risk loss bound (the cap of
:mod:`pmargin.models.loss_bound`, plus the worst loss of the row's collateral in the unit's grid)
while the row is still in cache: no second pass over the rows. The first unit's traversal also
sums the row's position values and Greeks. The accounts x scenarios P&L matrix is never built:
each row's P&L lives in a per-thread scratch vector, and only per-account figures are written.

Rows are split between threads (``prange``, thread count from ``NUMBA_NUM_THREADS``) from
:data:`PARALLEL_MIN_ROWS` rows up, else run in order on the calling thread. The sums within one
row are always taken in the row's stored order, so results do not depend on the thread count and
equal the NumPy specification in :mod:`pmargin.models.portfolio_margin` (bit for bit for one
collateral currency; to rounding where the NumPy path uses a BLAS product, see docs/book.md).

:func:`row_sums` (values and Greeks alone) serves the models without risk arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pmargin._typing import BoolArray, FloatArray, IntArray

__all__ = ["AGGREGATES", "NUMBA_ENABLED", "PackedUnits", "book_pass", "pack_units", "row_sums"]

from pmargin._numba import NUMBA_ENABLED, numba  # the package's one switch

AGGREGATES = ("worst_case", "roll", "net", "naked", "gross", "long", "short", "bound")
"""Per-unit outputs of :func:`book_pass`, in the order of its first output axis.

``bound`` is the cap of the unit's requirement: the loss bound of the row's options
(:func:`pmargin.models.loss_bound.loss_bound`) plus the worst scenario loss of its collateral;
``inf`` where there is no cap (unbounded loss, a future or perpetual of the unit held, no bound
for this unit in this book).
"""

N_GREEKS = 5
"""Greek columns the kernel sums (``accounts.GREEKS``)."""

PARALLEL_MIN_ROWS = 2048
"""Below this many rows the serial kernel is used (thread wake-up costs more than it saves)."""

CHUNKS_PER_THREAD = 16
"""Blocks of rows per thread in the parallel kernel (each block allocates its own scratch)."""


def _rows_py(parallel: bool, n_threads: int, n_groups: int, indptr: Any, indices: Any,
             data: Any, e_indptr: Any, e_indices: Any, e_data: Any, with_values: bool,
             risk: Any, n_scen: Any, coll: Any, coll_risk: Any, damp: Any, use_damp: Any,
             rate: Any, bucket_off: Any, b_on: Any, b_coin: Any,
             b_usd: Any, b_coll: Any, b_exp: Any, b_strike: Any, b_call: Any, b_value: Any,
             colf: Any, coli: Any, agg: Any, values: Any, gsum: Any
             ) -> None:
    """Aggregate every row (see the module docstring) into the outputs' row columns.

    ``parallel`` splits the rows between ``n_threads`` threads; otherwise they run in order on
    the calling thread (one build serves both: Numba caches a function under one set of
    compile flags).
    """
    n_units = n_scen.size
    n_rows = indptr.size - 1
    n_c = coll.shape[1]
    n_s = risk.shape[1]

    def bound(ks: Any, qs: Any, m: int, coin: bool, usd_per_mc: float) -> float:
        """Loss bound of the gathered cells (the loss_bound specification, same order)."""
        # stable insertion sort by expiry: blocks in ascending expiry, row order within one
        for i in range(1, m):
            kj = ks[i]
            qj = qs[i]
            ej = b_exp[kj]
            p = i - 1
            while p >= 0 and b_exp[ks[p]] > ej:
                ks[p + 1] = ks[p]
                qs[p + 1] = qs[p]
                p -= 1
            ks[p + 1] = kj
            qs[p + 1] = qj
        total = 0.0
        i0 = 0
        while i0 < m:
            e = b_exp[ks[i0]]
            i1 = i0 + 1
            while i1 < m and b_exp[ks[i1]] == e:
                i1 += 1
            v = 0.0
            slope = 0.0
            calls = 0.0
            at_zero = 0.0
            near0 = 0.0
            scale = 0.0
            for i in range(i0, i1):
                k = ks[i]
                q = qs[i]
                v += q * b_value[k]
                scale += abs(q) * b_strike[k]
                if b_call[k]:
                    slope += q
                    calls += abs(q)
                else:
                    at_zero += q * b_strike[k]
                    near0 -= q
            lowest = np.inf
            for jj in range(i0, i1):  # the payoff at each strike held (kinks)
                s_k = b_strike[ks[jj]]
                pay = 0.0
                for i in range(i0, i1):
                    k = ks[i]
                    if b_call[k]:
                        pay += qs[i] * max(s_k - b_strike[k], 0.0)
                    else:
                        pay += qs[i] * max(b_strike[k] - s_k, 0.0)
                if coin:
                    pay = pay / s_k
                lowest = min(lowest, pay)
            if coin:  # the limits S -> inf and S -> 0 of usd(S) / S
                lowest = min(lowest, slope)
                tol = 1e-12 * max(scale, 1.0)
                if at_zero < -tol:
                    lowest = -np.inf
                elif at_zero <= tol:
                    lowest = min(lowest, near0)
            else:
                lowest = min(lowest, at_zero)
                if slope < -1e-12 * calls:
                    lowest = -np.inf
                lowest = lowest / usd_per_mc
            total += max(v - lowest, 0.0)
            i0 = i1
        return total

    def one_row(r: int, pnl: Any, nb: Any, ng: Any, ks: Any, qs: Any) -> None:
        a0 = indptr[r]
        a1 = indptr[r + 1]
        aligned = with_values and e_indptr[r] == a0 and e_indptr[r + 1] == a1
        v = 0.0
        g0 = 0.0
        g1 = 0.0
        g2 = 0.0
        g3 = 0.0
        g4 = 0.0
        # units one after the other (a row is short and cache-hot); the first pass also sums
        # every position's value and Greeks, in the row's order
        for u in range(max(n_units, 1)):
            ns = n_scen[u] if u < n_units else 0
            for s in range(ns):
                pnl[s] = 0.0
            b0 = bucket_off[u] if u < n_units else 0
            b1 = bucket_off[u + 1] if u < n_units else 0
            for bk in range(b0, b1):  # unsigned: no negative-index fix-up, a plain store
                nb[np.uint64(bk)] = 0.0
            nd = 0.0
            ld = 0.0
            sd = 0.0
            g_lin = 0.0
            add_values = with_values and u == 0
            capped = u < n_units and b_on[u]
            m_b = 0  # live option cells of the unit gathered for the loss bound
            unbounded = False
            for k in range(a0, a1):
                j = indices[k]
                q = data[k]
                if add_values:
                    if aligned and e_indices[k] == j:
                        e = e_data[k]
                    else:  # entry matrix stored differently: look the cell up (absent = 0)
                        e = 0.0
                        for m2 in range(e_indptr[r], e_indptr[r + 1]):
                            if e_indices[m2] == j:
                                e += e_data[m2]
                    em = q * colf[j, 3]
                    e = em if e != e else e  # NaN: entry at the mark (a select, not a branch)
                    v += q * colf[j, 1] + e * colf[j, 2]
                    g0 += q * colf[j, 4]
                    g1 += q * colf[j, 5]
                    g2 += q * colf[j, 6]
                    g3 += q * colf[j, 7]
                    g4 += q * colf[j, 8]
                if coli[j, 0] != u:
                    continue
                for s in range(ns):
                    pnl[s] += q * risk[j, s]
                dq = q * colf[j, 0]
                nd += dq
                if dq > 0:
                    ld += dq
                else:
                    sd -= dq
                bk = coli[j, 1]
                if bk >= 0:
                    nb[bk] += dq
                g = coli[j, 2]
                if g >= 0:
                    ng[g] += q
                if coli[j, 3]:
                    g_lin += abs(q)
                if capped and q != 0.0 and not coli[j, 4]:
                    if coli[j, 5] < 0:
                        unbounded = True
                    else:
                        ks[m_b] = j
                        qs[m_b] = q
                        m_b += 1
            if u >= n_units:
                break
            nk = 0.0
            if n_groups > 0:  # naked short: each group's net quantity counted once, then cleared
                for k in range(a0, a1):
                    j = indices[k]
                    g = coli[j, 2]
                    if g >= 0 and coli[j, 0] == u:
                        gv = ng[g]
                        if gv < 0.0:
                            nk -= gv
                        ng[g] = 0.0
            for c in range(n_c):
                bal = coll[r, c]
                if bal != 0.0:
                    for s in range(ns):
                        pnl[s] += bal * coll_risk[u, c, s]
            if use_damp[u]:
                # sign(x) max(|x| - d, 0) without branches (the same numbers, bit for bit:
                # x - copysign(min(|x|, d), x) is 0 where |x| <= d, else x -+ d exactly)
                for s in range(ns):
                    x = pnl[s]
                    pnl[s] = x - np.copysign(min(abs(x), damp[u, s]), x)
            # the first scenario's P&L, then any lower one (NaN first: NaN; later NaNs are
            # skipped), in four independent chains merged in order: one chain is bound by the
            # latency of each comparison. Only the sign of a zero minimum can differ from one
            # chain, and the worst loss below is 0.0 for either zero.
            m = pnl[0] if ns > 0 else 0.0
            w1 = m
            w2 = m
            w3 = m
            s = 1
            while s + 3 < ns:
                x0 = pnl[s]
                x1 = pnl[s + 1]
                x2 = pnl[s + 2]
                x3 = pnl[s + 3]
                m = x0 if x0 < m else m
                w1 = x1 if x1 < w1 else w1
                w2 = x2 if x2 < w2 else w2
                w3 = x3 if x3 < w3 else w3
                s += 4
            while s < ns:
                x0 = pnl[s]
                m = x0 if x0 < m else m
                s += 1
            m = w1 if w1 < m else m
            m = w2 if w2 < m else m
            m = w3 if w3 < m else m
            rl = 0.0
            for bk in range(b0, b1):
                rl += abs(nb[bk]) * rate[bk]
            agg[0, u, r] = -m if m < 0.0 else 0.0
            agg[1, u, r] = rl
            agg[2, u, r] = nd
            agg[3, u, r] = nk
            agg[4, u, r] = g_lin
            agg[5, u, r] = ld
            agg[6, u, r] = sd
            # the cap applies to rows without futures/perpetuals of the unit (gross 0)
            bd = np.inf
            if capped and g_lin == 0.0 and not unbounded:
                bd = bound(ks, qs, m_b, b_coin[u], b_usd[u])
                if b_coll[u] and ns > 0:
                    cm = 0.0
                    for s in range(ns):
                        cs = 0.0
                        for c in range(n_c):
                            cs += coll[r, c] * coll_risk[u, c, s]
                        if s == 0 or cs < cm or cs != cs:
                            cm = cs
                    neg = -cm  # np.maximum(0, -min): NaN propagates
                    bd = bd + (neg if neg > 0.0 or neg != neg else 0.0)
            agg[7, u, r] = bd
        if with_values:
            values[r] = v
            gsum[0, r] = g0
            gsum[1, r] = g1
            gsum[2, r] = g2
            gsum[3, r] = g3
            gsum[4, r] = g4

    def chunk(c: int, n_chunks: int) -> None:
        # scratch allocated here, not views of a shared per-thread array: a fresh array cannot
        # alias the inputs, which lets the compiler vectorise the scenario loops (2.5x faster
        # measured); ``ng`` starts at zero and each row clears what it used
        # (np.empty and explicit loops only: under parallel=True Numba turns np.zeros into a
        # parallel loop, which would start the thread pool even on the serial path, and a
        # process that forks after that (the backtest's workers) is killed by OpenMP)
        pnl = np.empty(n_s)
        nb = np.empty(rate.size)
        ng = np.empty(n_groups)
        for g in range(n_groups):
            ng[g] = 0.0
        r0 = c * n_rows // n_chunks
        r1 = (c + 1) * n_rows // n_chunks
        width = 0  # the block's widest row (the gathered cells' scratch), in the block's thread
        for r in range(r0, r1):
            width = max(width, indptr[r + 1] - indptr[r])
        ks = np.empty(width, np.int64)
        qs = np.empty(width)
        for r in range(r0, r1):
            one_row(r, pnl, nb, ng, ks, qs)

    if parallel:  # contiguous blocks of rows, several per thread (uneven rows balance out)
        n_chunks = min(n_rows, CHUNKS_PER_THREAD * n_threads)
        for c in numba.prange(n_chunks):
            chunk(c, n_chunks)
    else:
        chunk(0, 1)


if NUMBA_ENABLED:  # pragma: no branch - compiled lazily, on first call
    _rows = numba.njit(parallel=True, cache=True, nogil=True)(_rows_py)


@dataclass(frozen=True)
class PackedUnits:
    """The risk units of one prepared market laid out per book column for :func:`book_pass`.

    Attributes
    ----------
    col_unit : ndarray of int, shape (columns,)
        Unit of each column (-1: none).
    risk : ndarray, shape (columns, max scenarios)
        Weighted P&L per unit held of each column under its unit's scenarios (zero-padded).
    n_scen : ndarray of int, shape (units,)
        Scenarios of each unit.
    coll_risk : ndarray, shape (units, collateral currencies, max scenarios)
        P&L per unit of each collateral currency under each unit's scenarios.
    damp, use_damp : ndarray, shapes (units, max scenarios) and (units,)
        Dampeners (margin currency) and whether a unit has any.
    delta, is_lin : ndarray, shape (columns,)
        Coin delta per unit held; futures/perpetual flag.
    bucket, rate, bucket_off : ndarray
        Expiry bucket of each column numbered across units (-1: none), roll-shock rate of each
        bucket, and the first bucket of each unit (units + 1 entries).
    group, n_groups : ndarray, int
        (expiry, strike) group of each option column numbered across units (-1: none), and
        their count.
    gw, va, vb, mark : ndarray
        Greek weights, shape (columns, Greeks); position-value weights (value = ``q va + entry
        vb``) and the mark (USD), shape (columns,).
    b_on, b_coin, b_usd, b_coll : ndarray, shape (units,)
        Loss-bound cap of each unit: whether it applies (a finite bound exists in this book),
        coin margin (payoffs ``usd(S) / S``), USD per unit of margin currency (stablecoin
        margin), and whether the collateral's worst loss is added (any collateral risk).
    b_exp, b_strike, b_call, b_value, b_settled : ndarray, shape (columns,)
        Loss-bound inputs per column (:class:`~pmargin.models.loss_bound.BoundTerms` laid out
        per book column): expiry index within the unit (-1: future, perpetual or no unit),
        strike (USD), option right, value per unit held at the mark (margin currency), expired.
    colf, coli : ndarray, shapes (columns, 9) and (columns, 6)
        What the pass reads of a cell's column, side by side (a cell touches two rows of these
        instead of eleven arrays): ``delta, va, vb, mark, gw[0..4]`` and ``col_unit, bucket,
        group, is_lin, b_settled, b_exp``.
    """

    col_unit: IntArray
    risk: FloatArray
    n_scen: IntArray
    coll_risk: FloatArray
    damp: FloatArray
    use_damp: BoolArray
    delta: FloatArray
    is_lin: BoolArray
    bucket: IntArray
    rate: FloatArray
    bucket_off: IntArray
    group: IntArray
    n_groups: int
    gw: FloatArray
    va: FloatArray
    vb: FloatArray
    mark: FloatArray
    b_on: BoolArray
    b_coin: BoolArray
    b_usd: FloatArray
    b_coll: BoolArray
    b_exp: IntArray
    b_strike: FloatArray
    b_call: BoolArray
    b_value: FloatArray
    b_settled: BoolArray
    colf: FloatArray
    coli: IntArray


def pack_units(units: Sequence[Any], n_cols: int, n_coll: int, gw: FloatArray,
               va: FloatArray, vb: FloatArray, mark: FloatArray) -> PackedUnits:
    """Lay out risk units per book column (once per prepared market).

    Parameters
    ----------
    units : sequence of RiskUnit
        Risk units of the prepared market (their ``bound`` terms, when given, are laid out for
        the loss-bound cap).
    n_cols, n_coll : int
        Book columns and collateral currencies.
    gw : ndarray, shape (n_cols, N_GREEKS)
        Greek weights of each column.
    va, vb, mark : ndarray, shape (n_cols,)
        Value weights and mark of each column (see ``accounts.value_weights``).

    Returns
    -------
    PackedUnits
        Arrays for :func:`book_pass`.
    """
    if gw.shape != (n_cols, N_GREEKS):
        raise ValueError(f"gw must have shape ({n_cols}, {N_GREEKS}), got {gw.shape}")
    n_u = len(units)
    n_scen = np.array([u.damp.size for u in units], dtype=np.int64)
    n_s = int(n_scen.max()) if n_u else 0
    col_unit = np.full(n_cols, -1, np.int64)
    risk = np.zeros((n_cols, n_s))
    coll_risk = np.zeros((n_u, n_coll, n_s))
    damp = np.zeros((n_u, n_s))
    delta = np.zeros(n_cols)
    is_lin = np.zeros(n_cols, dtype=np.bool_)
    bucket = np.full(n_cols, -1, np.int64)
    group = np.full(n_cols, -1, np.int64)
    rates: list[FloatArray] = []
    bucket_off = np.zeros(n_u + 1, np.int64)
    n_groups = 0
    b_on = np.zeros(n_u, np.bool_)
    b_coin = np.zeros(n_u, np.bool_)
    b_usd = np.ones(n_u)
    b_coll = np.zeros(n_u, np.bool_)
    b_exp = np.full(n_cols, -1, np.int64)
    b_strike = np.zeros(n_cols)
    b_call = np.zeros(n_cols, np.bool_)
    b_value = np.zeros(n_cols)
    b_settled = np.zeros(n_cols, np.bool_)
    for k, u in enumerate(units):
        cols = np.asarray(u.columns, dtype=np.int64)
        ns = int(n_scen[k])
        col_unit[cols] = k
        risk[cols, :ns] = u.risk
        coll_risk[k, :, :ns] = u.collateral_risk
        damp[k, :ns] = u.damp
        delta[cols] = u.delta
        is_lin[cols] = u.is_lin
        if u.n_buckets:
            bucket[cols] = np.asarray(u.bucket, dtype=np.int64) + bucket_off[k]
            rates.append(np.asarray(u.roll_rate, dtype=np.float64))
        bucket_off[k + 1] = bucket_off[k] + u.n_buckets
        if u.n_groups:
            g = np.asarray(u.group, dtype=np.int64)
            group[cols] = np.where(g >= 0, g + n_groups, -1)
            n_groups += u.n_groups
        bt = getattr(u, "bound", None)
        if bt is not None and bt.bounded:
            b_on[k] = True
            b_coin[k] = bt.coin_margin
            b_usd[k] = bt.usd_per_mc
            b_coll[k] = n_coll > 0 and bool(np.any(u.collateral_risk))
            b_exp[cols] = bt.expiry
            b_strike[cols] = bt.strike
            b_call[cols] = bt.is_call
            b_value[cols] = bt.value
            b_settled[cols] = bt.settled
    use_damp = np.array([bool(np.any(u.damp)) for u in units], dtype=np.bool_)
    # what the pass reads of a cell's column, side by side (two cache lines, not eleven)
    colf = np.ascontiguousarray(np.column_stack([delta, va, vb, mark, gw]), dtype=np.float64)
    coli = np.ascontiguousarray(np.column_stack([col_unit, bucket, group, is_lin, b_settled,
                                                 b_exp]), dtype=np.int64)
    return PackedUnits(col_unit, risk, n_scen, coll_risk, damp, use_damp, delta, is_lin, bucket,
                       np.concatenate(rates) if rates else np.zeros(0), bucket_off, group,
                       n_groups, np.ascontiguousarray(gw, dtype=np.float64),
                       np.ascontiguousarray(va, dtype=np.float64),
                       np.ascontiguousarray(vb, dtype=np.float64),
                       np.ascontiguousarray(mark, dtype=np.float64),
                       b_on, b_coin, b_usd, b_coll, b_exp, b_strike, b_call, b_value, b_settled,
                       colf, coli)


def book_pass(packed: PackedUnits, indptr: IntArray, indices: IntArray, data: FloatArray,
              coll: FloatArray, entry: tuple[IntArray, IntArray, FloatArray] | None = None
              ) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
    """Aggregate every account row in one pass (requires Numba).

    Parameters
    ----------
    packed : PackedUnits
        Risk units of the prepared market (:func:`pack_units`).
    indptr, indices, data : ndarray
        CSR arrays of the positions, shape (rows, columns of the prepared book).
    coll : ndarray, shape (rows, collateral currencies)
        Collateral balances (C-contiguous float64).
    entry : (indptr, indices, data), optional
        CSR arrays of the entry notionals (NaN: at the mark; a cell absent from them: 0). When
        given, position values and Greeks are summed in the same pass.

    Returns
    -------
    (ndarray, ndarray or None, ndarray or None)
        Aggregates, shape (len(AGGREGATES), units, rows); position value per row (margin
        currency), shape (rows,); Greek sums, shape (Greeks, rows), in the column order of
        ``packed.gw``. The last two are None without ``entry``.
    """
    if not NUMBA_ENABLED:
        raise RuntimeError("numba is not available")
    n = indptr.size - 1
    parallel = n >= PARALLEL_MIN_ROWS
    p = packed
    n_k = p.gw.shape[1]
    agg = np.empty((len(AGGREGATES), p.n_scen.size, n))
    if entry is None:
        e_ptr, e_idx, e_dat = indptr, indices, np.zeros(0)
        values, gsum = np.empty(0), np.empty((n_k, 0))
    else:
        e_ptr, e_idx, e_dat = entry
        values, gsum = np.empty(n), np.empty((n_k, n))
    _rows(parallel, numba.get_num_threads() if parallel else 1, p.n_groups, indptr, indices,
          data, e_ptr, e_idx, e_dat, entry is not None, p.risk, p.n_scen, coll, p.coll_risk,
          p.damp, p.use_damp, p.rate, p.bucket_off, p.b_on, p.b_coin,
          p.b_usd, p.b_coll, p.b_exp, p.b_strike, p.b_call, p.b_value, p.colf, p.coli, agg,
          values, gsum)
    if entry is None:
        return agg, None, None
    return agg, values, gsum


def _row_sums_kernel(indptr: Any, indices: Any, data: Any, ent: Any, weights: Any, a: Any,
                     b: Any, mark: Any) -> tuple[Any, Any]:
    n_rows = indptr.size - 1
    n_k = weights.shape[1]
    sums = np.zeros((n_rows, n_k))
    values = np.zeros(n_rows)
    for r in numba.prange(n_rows):
        v = 0.0
        for k in range(indptr[r], indptr[r + 1]):
            j = indices[k]
            q = data[k]
            e = ent[k]
            if e != e:  # NaN: entry at the mark
                e = q * mark[j]
            v += q * a[j] + e * b[j]
            w = weights[j]
            for c in range(n_k):
                sums[r, c] += q * w[c]
        values[r] = v
    return sums, values


_compiled_sums: dict[bool, Any] = {}


def _get(kernel: Any, cache: dict[bool, Any], parallel: bool) -> Any:
    # Numba's on-disk cache is keyed by the Python function, not by the compile flags, so only
    # the parallel variant is cached: sharing one cache entry between a serial and a parallel
    # build of the same function would hand one of them the other's machine code.
    if parallel not in cache:
        cache[parallel] = numba.njit(parallel=parallel, cache=parallel, nogil=True)(kernel)
    return cache[parallel]


def row_sums(indptr: IntArray, indices: IntArray, data: FloatArray, ent: FloatArray,
             weights: FloatArray, a: FloatArray, b: FloatArray, mark: FloatArray
             ) -> tuple[FloatArray, FloatArray]:
    """Per-row ``positions @ weights`` and position values ``q a + entry b`` in one pass.

    ``ent`` holds the entry notional of each stored cell (NaN: entry at the mark).

    Returns
    -------
    (ndarray, ndarray)
        Sums, shape (rows, weights columns), and values, shape (rows,).
    """
    if not NUMBA_ENABLED:
        raise RuntimeError("numba is not available")
    fn = _get(_row_sums_kernel, _compiled_sums, indptr.size - 1 >= PARALLEL_MIN_ROWS)
    out: tuple[FloatArray, FloatArray] = fn(
        indptr, indices, data, ent, np.ascontiguousarray(weights), a, b, mark)
    return out
