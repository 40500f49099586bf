"""Fused per-account aggregation for portfolio margin (Numba), one pass over the CSR rows.

For every account row and one risk unit it accumulates, in a single pass over the row's
positions: the scenario P&L vector (positions @ risk + collateral @ collateral risk), the net
coin delta per expiry bucket, the net quantity per (expiry, strike) group, the gross futures
notional and the long/short delta sums; then it applies the extended-scenario dampener and
takes the worst loss. The pure NumPy implementation in :mod:`pmargin.models.portfolio_margin` is
the specification; tests assert both agree.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from pmargin._numba import NUMBA_ENABLED, numba
from pmargin._typing import FloatArray, IntArray

__all__ = ["NUMBA_ENABLED", "row_sums", "unit_aggregates"]


def _kernel(indptr: Any, indices: Any, data: Any, colmap: Any, risk: Any, coll: Any,
            coll_risk: Any, damp: Any, use_damp: bool, delta: Any, bucket: Any, n_buckets: int,
            rate: Any, group: Any, n_groups: int, is_lin: Any, n_threads: int
            ) -> tuple[Any, Any, Any, Any, Any, Any, Any]:
    n_rows = indptr.size - 1
    n_s = risk.shape[1]
    n_c = coll.shape[1]
    worst = np.zeros(n_rows)
    roll = np.zeros(n_rows)
    net = np.zeros(n_rows)
    naked = np.zeros(n_rows)
    gross = np.zeros(n_rows)
    longd = np.zeros(n_rows)
    shortd = np.zeros(n_rows)
    pnl_s = np.zeros((n_threads, n_s))
    bucket_s = np.zeros((n_threads, max(n_buckets, 1)))
    group_s = np.zeros((n_threads, max(n_groups, 1)))
    for r in numba.prange(n_rows):
        tid = numba.get_thread_id()  # type: ignore[attr-defined]
        pnl = pnl_s[tid]
        nb = bucket_s[tid]
        ng = group_s[tid]
        for s in range(n_s):
            pnl[s] = 0.0
        for b in range(n_buckets):
            nb[b] = 0.0
        nd = 0.0
        g_lin = 0.0
        ld = 0.0
        sd = 0.0
        for k in range(indptr[r], indptr[r + 1]):
            j = colmap[indices[k]]
            if j < 0:
                continue
            q = data[k]
            row = risk[j]
            for s in range(n_s):
                pnl[s] += q * row[s]
            dq = q * delta[j]
            nd += dq
            if dq > 0:
                ld += dq
            else:
                sd -= dq
            if n_buckets > 0:
                nb[bucket[j]] += dq
            if n_groups > 0 and group[j] >= 0:
                ng[group[j]] += q
            if is_lin[j]:
                g_lin += abs(q)
        for c in range(n_c):
            bal = coll[r, c]
            if bal != 0.0:
                crow = coll_risk[c]
                for s in range(n_s):
                    pnl[s] += bal * crow[s]
        m = 0.0
        for s in range(n_s):
            v = pnl[s]
            if use_damp:
                a = abs(v) - damp[s]
                v = 0.0 if a <= 0.0 else (a if v > 0 else -a)
            if s == 0 or v < m:
                m = v
        worst[r] = -m if m < 0.0 else 0.0
        rl = 0.0
        for b in range(n_buckets):
            rl += abs(nb[b]) * rate[b]
        roll[r] = rl
        if n_groups > 0:
            nk = 0.0
            for k in range(indptr[r], indptr[r + 1]):
                j = colmap[indices[k]]
                if j >= 0 and group[j] >= 0:
                    gv = ng[group[j]]
                    if gv < 0.0:
                        nk -= gv
                    ng[group[j]] = 0.0
            naked[r] = nk
        net[r] = nd
        gross[r] = g_lin
        longd[r] = ld
        shortd[r] = sd
    return worst, roll, net, naked, gross, longd, shortd


_compiled: dict[bool, Any] = {}
PARALLEL_MIN_ROWS = 2048
"""Below this many rows the serial kernel is used (thread wake-up costs more than it saves)."""


def _get(kernel: Any, cache: dict[bool, Any], parallel: bool) -> Any:
    # Numba's on-disk cache is keyed by the Python function's qualified name and bytecode, not
    # by the compile flags, so the serial variant is a copy of the function under its own
    # qualified name: each variant has its own cache file, compiled once per install.
    if parallel not in cache:
        fn = kernel
        if not parallel:
            fn = types.FunctionType(kernel.__code__, kernel.__globals__, kernel.__name__,
                                    kernel.__defaults__, kernel.__closure__)
            fn.__qualname__ = f"{kernel.__qualname__}_serial"
        # a kernel loaded from the cache does not start Numba's threading layer, which
        # numba.get_thread_id() needs even in the serial build: start it here
        numba.get_num_threads()
        cache[parallel] = numba.njit(parallel=parallel, cache=True)(fn)
    return cache[parallel]


def unit_aggregates(indptr: IntArray, indices: IntArray, data: FloatArray, colmap: IntArray,
                    risk: FloatArray, coll: FloatArray, coll_risk: FloatArray, damp: FloatArray,
                    delta: FloatArray, bucket: IntArray, n_buckets: int, rate: FloatArray,
                    group: IntArray, n_groups: int, is_lin: np.ndarray
                    ) -> tuple[FloatArray, ...]:
    """Run the fused kernel (requires Numba; see module docstring for the outputs).

    Returns
    -------
    tuple of ndarray
        ``worst, roll, net_delta, naked, gross_linear, long_delta, short_delta`` per row.
    """
    if not NUMBA_ENABLED:
        raise RuntimeError("numba is not available")
    parallel = indptr.size - 1 >= PARALLEL_MIN_ROWS
    fn = _get(_kernel, _compiled, parallel)
    n_threads = numba.get_num_threads() if parallel else 1
    return tuple(fn(
        indptr, indices, data, colmap, np.ascontiguousarray(risk), np.ascontiguousarray(coll),
        np.ascontiguousarray(coll_risk), damp, bool(np.any(damp)), delta, bucket, n_buckets,
        rate, group, n_groups, is_lin, n_threads))


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
