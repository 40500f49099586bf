"""Fused composition of portfolio margin (Numba): add-ons, floors, IM/MM and the loss-bound cap.

The Numba twin of :meth:`pmargin.models.portfolio_margin.PortfolioMarginModel._unit_core` (the
NumPy specification) summed over the risk units as ``_core`` sums them: from the per-unit
aggregates of :func:`pmargin.models._pm_kernels.book_pass` it computes, row by row, every
component (roll, delta and naked-short shocks, perpetual contingency, minimum delta and minimum
charge floors, loss-bound relief), IM and MM. Every operation is the NumPy one in the same order
(``np.maximum``/``np.minimum`` NaN semantics included), so the numbers are equal, bit for bit
(``tests/models/test_pm_compose.py``). It replaces about thirty array passes over the accounts
with one, and for one account (a what-if) thirty NumPy calls with one compiled call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pmargin._numba import NUMBA_ENABLED, numba
from pmargin._typing import BoolArray, FloatArray, IntArray

__all__ = ["COMPONENTS", "PackedTerms", "compose", "pack_terms"]

COMPONENTS = ("worst_case", "roll_shock", "delta_shock", "naked_short", "perp_contingency",
              "min_delta", "min_charge", "loss_bound_relief")
"""Components :func:`compose` writes, in the order of its component axis."""

PARALLEL_MIN_ROWS = 2048
"""Below this many rows the rows are composed in order on the calling thread."""


@dataclass(frozen=True)
class PackedTerms:
    """The add-on parameters of each risk unit, as arrays (one entry per unit).

    ``*_on`` flags say whether a unit has the term; the rates are those of its
    ``UnderlyingPMParams``. ``ds_thr`` is ``threshold_usd / index`` (computed once, as the NumPy
    path does), ``tier_upper``/``tier_mult`` the minimum-charge tiers padded with ``n_tiers``.
    ``mm_from_im`` and ``factor`` are the model's composition.
    """

    c2m: FloatArray
    index: FloatArray
    ds_on: BoolArray
    ds_thr: FloatArray
    ds_inc: FloatArray
    ds_max: FloatArray
    nk_on: BoolArray
    nk_rate: FloatArray
    pp_on: BoolArray
    pp_rate: FloatArray
    md_on: BoolArray
    md_net: FloatArray
    md_hedged: FloatArray
    mc_on: BoolArray
    mc_rate: FloatArray
    n_tiers: IntArray
    tier_upper: FloatArray
    tier_mult: FloatArray
    cap_on: BoolArray
    mm_from_im: bool
    factor: float
    reported: tuple[int, ...]
    """Positions in :data:`COMPONENTS` of the components this model reports: all but the
    minimum-delta and minimum-charge floors when no unit has them."""


def pack_terms(units: Sequence[Any], mode: str, factor: float) -> PackedTerms:
    """Lay out the add-on parameters of ``units`` (risk units of a prepared market).

    Parameters
    ----------
    units : sequence of RiskUnit
        Risk units, in the order of :func:`pmargin.models._pm_kernels.book_pass`'s unit axis.
    mode : {"mm_from_im", "im_from_mm"}
        Composition mode of the model.
    factor : float
        Composition factor.

    Returns
    -------
    PackedTerms
        Arrays for :func:`compose`.
    """
    n = len(units)
    z = np.zeros(n)
    f = np.zeros(n, np.bool_)
    t = {k: z.copy() for k in ("c2m", "index", "ds_thr", "ds_inc", "ds_max", "nk_rate",
                               "pp_rate", "md_net", "md_hedged", "mc_rate")}
    on = {k: f.copy() for k in ("ds_on", "nk_on", "pp_on", "md_on", "mc_on", "cap_on")}
    width = max((len(u.params.min_charge.tiers) for u in units
                 if u.params.min_charge is not None), default=0)
    n_tiers = np.zeros(n, np.int64)
    upper = np.zeros((n, width))
    mult = np.zeros((n, width))
    for k, u in enumerate(units):
        p = u.params
        t["c2m"][k] = u.coin_to_mc
        t["index"][k] = u.index
        if p.delta_shock is not None:
            on["ds_on"][k] = True
            t["ds_thr"][k] = p.delta_shock.threshold_usd / u.index
            t["ds_inc"][k] = p.delta_shock.m_inc
            t["ds_max"][k] = p.delta_shock.max_delta_shock
        if p.naked_short is not None:
            on["nk_on"][k] = True
            t["nk_rate"][k] = p.naked_short.rate
        if p.perp_contingency is not None:
            on["pp_on"][k] = True
            t["pp_rate"][k] = p.perp_contingency.rate
        if p.min_delta is not None:
            on["md_on"][k] = True
            t["md_net"][k] = p.min_delta.net_rate
            t["md_hedged"][k] = p.min_delta.hedged_rate
        if p.min_charge is not None:
            on["mc_on"][k] = True
            t["mc_rate"][k] = p.min_charge.rate
            tiers = p.min_charge.tiers
            n_tiers[k] = len(tiers)
            for i, (up, m) in enumerate(tiers):
                upper[k, i] = up
                mult[k, i] = m
        on["cap_on"][k] = u.bound is not None and u.bound.bounded
    absent = {"min_delta": not on["md_on"].any(), "min_charge": not on["mc_on"].any()}
    reported = tuple(i for i, k in enumerate(COMPONENTS) if not absent.get(k, False))
    return PackedTerms(t["c2m"], t["index"], on["ds_on"], t["ds_thr"], t["ds_inc"],
                       t["ds_max"], on["nk_on"], t["nk_rate"], on["pp_on"], t["pp_rate"],
                       on["md_on"], t["md_net"], t["md_hedged"], on["mc_on"], t["mc_rate"],
                       n_tiers, upper, mult, on["cap_on"], mode == "mm_from_im", float(factor),
                       reported)


def _maximum(a: float, b: float) -> float:
    """``np.maximum`` of two scalars (NaN if either is NaN)."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a >= b else b


def _minimum(a: float, b: float) -> float:
    """``np.minimum`` of two scalars (NaN if either is NaN)."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a <= b else b


def _compose_py(parallel: bool, agg: Any, c2m: Any, index: Any, ds_on: Any, ds_thr: Any,
                ds_inc: Any, ds_max: Any, nk_on: Any, nk_rate: Any, pp_on: Any, pp_rate: Any,
                md_on: Any, md_net: Any, md_hedged: Any, mc_on: Any, mc_rate: Any,
                n_tiers: Any, tier_upper: Any, tier_mult: Any, cap_on: Any, mm_from_im: bool,
                factor: float, im: Any, mm: Any, comps: Any) -> None:
    """IM, MM and components of every row (see the module docstring).

    The first unit's figures are written, the other units' added (the NumPy path adds them to
    zeros: the same numbers but for the sign of a zero). ``comps`` may be the first unit's
    aggregates themselves (``agg[:, 0, :]``): a row's aggregates are read before its outputs are
    written.
    """
    n_units = c2m.size
    n_rows = im.size

    def one_row(r: int) -> None:
        for u in range(n_units):
            c = c2m[u]
            worst = agg[0, u, r]
            roll = agg[1, u, r] * c
            ds = 0.0
            if ds_on[u]:
                ad = abs(agg[2, u, r])
                pct = _maximum(0.0, ad - ds_thr[u])
                pct = _minimum(ds_max[u], ds_inc[u] * pct)
                ds = (pct * ad) * c
            nk = (agg[3, u, r] * nk_rate[u]) * c if nk_on[u] else 0.0
            pp = (agg[4, u, r] * pp_rate[u]) * c if pp_on[u] else 0.0
            risk = worst + (((roll + ds) + nk) + pp)
            md = 0.0
            if md_on[u]:
                lo = agg[5, u, r]
                sh = agg[6, u, r]
                hedged = _minimum(lo, sh)
                md = (md_net[u] * abs(lo - sh) + md_hedged[u] * hedged) * c
                risk = _maximum(risk, md)
            mc = 0.0
            if mc_on[u]:
                raw = mc_rate[u] * abs(agg[2, u, r]) * index[u]
                tiered = 0.0
                lower = 0.0
                for i in range(n_tiers[u]):
                    upper = tier_upper[u, i]
                    x = _minimum(_maximum(raw - lower, 0.0), upper - lower)
                    tiered += x * tier_mult[u, i]
                    lower = upper
                mc = tiered * c / index[u]
                risk = _maximum(risk, mc)
            if mm_from_im:
                i_u = risk
                m_u = factor * risk
            else:
                i_u = factor * risk
                m_u = risk
            relief = 0.0
            if cap_on[u] and i_u > 0.0:
                cap = agg[7, u, r]
                relief = _maximum(i_u - cap, 0.0)
                i_u = _minimum(i_u, cap)
                m_u = _minimum(m_u, cap)
            if u == 0:  # the outputs may share memory with unit 0's aggregates (read above)
                im[r] = i_u
                mm[r] = m_u
                comps[0, r] = worst
                comps[1, r] = roll
                comps[2, r] = ds
                comps[3, r] = nk
                comps[4, r] = pp
                comps[5, r] = md
                comps[6, r] = mc
                comps[7, r] = relief
            else:
                im[r] += i_u
                mm[r] += m_u
                comps[0, r] += worst
                comps[1, r] += roll
                comps[2, r] += ds
                comps[3, r] += nk
                comps[4, r] += pp
                if md_on[u]:
                    comps[5, r] += md
                if mc_on[u]:
                    comps[6, r] += mc
                comps[7, r] += relief

    if parallel:
        for r in numba.prange(n_rows):
            one_row(r)
    else:
        for r in range(n_rows):
            one_row(r)


if NUMBA_ENABLED:  # pragma: no branch - compiled lazily, on first call
    # nogil: the pass touches only arrays, so the service's readers and writers (other threads)
    # keep running while one thread composes a book
    _maximum = numba.njit(inline="always", cache=True)(_maximum)
    _minimum = numba.njit(inline="always", cache=True)(_minimum)
    _compose = numba.njit(parallel=True, cache=True, nogil=True)(_compose_py)


def compose(terms: PackedTerms, agg: FloatArray
            ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """IM, MM and components of every row from the fused pass's aggregates (requires Numba).

    Parameters
    ----------
    terms : PackedTerms
        Add-on parameters of the units (:func:`pack_terms`).
    agg : ndarray, shape (len(AGGREGATES), units, rows)
        Output of :func:`pmargin.models._pm_kernels.book_pass`; the first unit's aggregates
        are overwritten by the components (the third output is a view of them).

    Returns
    -------
    (ndarray, ndarray, ndarray)
        IM and MM, shape (rows,), margin currency; components, shape (len(COMPONENTS), rows),
        summed over the units.
    """
    if not NUMBA_ENABLED:
        raise RuntimeError("numba is not available")
    if agg.ndim != 3 or agg.shape[0] != len(COMPONENTS):
        raise ValueError(f"agg must have shape ({len(COMPONENTS)}, units, rows), got {agg.shape}")
    n = agg.shape[2]
    if agg.shape[1] == 0:  # no risk unit: nothing is charged
        return np.zeros(n), np.zeros(n), np.zeros((len(COMPONENTS), n))
    im = np.empty(n)
    mm = np.empty(n)
    # the components overwrite the first unit's aggregates (no new 8 x rows array: for a
    # million accounts that is 64 MB less to allocate and fault in)
    comps = agg[:, 0, :]
    t = terms
    _compose(n >= PARALLEL_MIN_ROWS, agg, t.c2m, t.index, t.ds_on, t.ds_thr, t.ds_inc,
             t.ds_max, t.nk_on, t.nk_rate, t.pp_on, t.pp_rate, t.md_on, t.md_net, t.md_hedged,
             t.mc_on, t.mc_rate, t.n_tiers, t.tier_upper, t.tier_mult, t.cap_on, t.mm_from_im,
             t.factor, im, mm, comps)
    return im, mm, comps
