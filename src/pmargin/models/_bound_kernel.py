"""Numba twin of :func:`pmargin.models.loss_bound.loss_bound` (one loop over the rows).

The NumPy function is the specification; ``tests/models/test_loss_bound.py`` asserts both agree
(to rounding: the sums run in a different order). Used by the portfolio-margin model when Numba
is available (the package's switch in :mod:`pmargin.models._pm_kernels`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pmargin._numba import NUMBA_ENABLED, numba
from pmargin._typing import FloatArray, IntArray
from pmargin.models.loss_bound import BoundTerms

__all__ = ["loss_bound_rows"]


def _kernel_py(indptr: Any, indices: Any, data: Any, colmap: Any, rows: Any, expiry: Any,
               strike: Any, is_call: Any, value: Any, settled: Any, coin: bool,
               usd_per_mc: float, blocks: int) -> Any:  # pragma: no cover - compiled by numba
    n = rows.size
    out = np.zeros(n)
    width = 0
    for r in range(n):
        width = max(width, indptr[rows[r] + 1] - indptr[rows[r]])
    # rows are cut into contiguous blocks, one scratch space per block; each row's bound depends
    # on that row alone, so the result does not depend on the number of blocks or threads
    for b in _prange(blocks):
        ks = np.empty(width, np.int64)
        qs = np.empty(width)
        done = np.zeros(width, np.bool_)
        for r in range(b * n // blocks, (b + 1) * n // blocks):
            _row(r, rows[r], indptr, indices, data, colmap, expiry, strike, is_call, value,
                 settled, coin, usd_per_mc, ks, qs, done, out)
    return out


def _row_py(r: int, a: int, indptr: Any, indices: Any, data: Any, colmap: Any, expiry: Any,
            strike: Any, is_call: Any, value: Any, settled: Any, coin: bool, usd_per_mc: float,
            ks: Any, qs: Any, done: Any, out: Any) -> None:  # pragma: no cover - compiled by numba
    m = 0
    unbounded = False
    for p in range(indptr[a], indptr[a + 1]):
        k = colmap[indices[p]]
        q = data[p]
        if k < 0 or q == 0.0 or settled[k]:
            continue
        if expiry[k] < 0:
            unbounded = True
            break
        ks[m] = k
        qs[m] = q
        done[m] = False
        m += 1
    if unbounded:
        out[r] = np.inf
        return
    total = 0.0
    for i0 in range(m):
        if done[i0]:
            continue
        e = expiry[ks[i0]]
        v = 0.0
        slope = 0.0
        calls = 0.0
        at_zero = 0.0
        near0 = 0.0
        scale = 0.0
        for i in range(i0, m):
            k = ks[i]
            if expiry[k] != e:
                continue
            q = qs[i]
            v += q * value[k]
            scale += abs(q) * strike[k]
            if is_call[k]:
                slope += q
                calls += abs(q)
            else:
                at_zero += q * strike[k]
                near0 -= q
        lowest = np.inf
        for j in range(i0, m):
            kj = ks[j]
            if expiry[kj] != e:
                continue
            s = strike[kj]
            pay = 0.0
            for i in range(i0, m):
                k = ks[i]
                if expiry[k] != e:
                    continue
                if is_call[k]:
                    pay += qs[i] * max(s - strike[k], 0.0)
                else:
                    pay += qs[i] * max(strike[k] - s, 0.0)
            if coin:
                pay = pay / s
            lowest = min(lowest, pay)
        for i in range(i0, m):
            if expiry[ks[i]] == e:
                done[i] = True
        if coin:
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
    out[r] = total


def loss_bound_rows(indptr: IntArray, indices: IntArray, data: FloatArray, colmap: IntArray,
                    terms: BoundTerms, rows: IntArray) -> FloatArray | None:
    """Same contract as :func:`~pmargin.models.loss_bound.loss_bound`; None without Numba."""
    if not NUMBA_ENABLED:
        return None
    if not terms.bounded:
        return np.full(rows.size, np.inf)
    rows = np.asarray(rows, np.int64)
    blocks = max(1, min(rows.size // 512, 8 * int(numba.get_num_threads())))
    # a small call (a what-if, one account) runs in order on the calling thread: starting the
    # thread pool costs more than the rows
    kernel = _kernel if rows.size >= _PARALLEL_ROWS else _serial_kernel()
    return np.asarray(kernel(
        indptr, indices, data, colmap, rows, terms.expiry, terms.strike, terms.is_call,
        terms.value, terms.settled, terms.coin_margin, float(terms.usd_per_mc), blocks))


_PARALLEL_ROWS = 2048
"""Fewest rows run on the thread pool (as the fused book pass, models/_pm_kernels.py)."""

_serial: list[Any] = []


def _serial_kernel() -> Any:
    # Numba's disk cache is keyed by the Python function, not the compile flags: only the
    # parallel build is cached; the serial one (prange runs as range) compiles once per process
    if not _serial:
        _serial.append(numba.njit(cache=False, nogil=True)(_kernel_py))
    return _serial[0]


if NUMBA_ENABLED:  # pragma: no branch - compiled lazily, on first call
    _prange = numba.prange
    _row = numba.njit(cache=True, nogil=True)(_row_py)
    _kernel = numba.njit(parallel=True, cache=True, nogil=True)(_kernel_py)
