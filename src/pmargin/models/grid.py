"""Scenario grids built from preset parameters, and the shocked volatilities they imply.

A grid is a struct of arrays over scenarios: relative price move, vol direction, weight, whether
the scenario is an extended (tail) one, the range-edge move used to re-express extended coin P&L,
and the USD dampener of extended scenarios.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pmargin._typing import BoolArray, FloatArray, IntArray
from pmargin.models.params import UnderlyingPMParams, VolShockParams
from pmargin.scenarios import (
    SkewShockParams,
    skew_multipliers,
    tail_weight,
    term_scale,
    vol_multiplier_down,
    vol_multiplier_up,
)

__all__ = ["VOL_DOWN", "VOL_NONE", "VOL_SKEW_ABS", "VOL_SKEW_LINEAR", "VOL_UP", "ScenarioGrid",
           "build_grid", "shocked_vol"]

VOL_NONE, VOL_UP, VOL_DOWN, VOL_SKEW_LINEAR, VOL_SKEW_ABS = 0, 1, 2, 3, 4
_MODE = {"none": VOL_NONE, "up": VOL_UP, "down": VOL_DOWN, "skew linear": VOL_SKEW_LINEAR,
         "skew abs": VOL_SKEW_ABS}
_MODE_NAME = {v: k for k, v in _MODE.items()}


@dataclass(frozen=True)
class ScenarioGrid:
    """Scenarios of one underlying.

    Attributes
    ----------
    names : list of str
        Readable labels, e.g. ``"-16% vol up"``.
    move : ndarray
        Relative move of index, forwards and marks.
    vol_mode : ndarray of int
        ``VOL_NONE``, ``VOL_UP`` or ``VOL_DOWN``.
    weight : ndarray
        Multiplier on the scenario P&L.
    extended : ndarray of bool
        Tail scenario flags.
    edge_move : ndarray
        ``sign(move) * price_range`` for extended scenarios, else ``move``.
    dampener_usd : ndarray
        USD amount by which an extended scenario's account P&L is moved toward zero.
    horizon_days : float
        Time shift of every scenario.
    """

    names: list[str]
    move: FloatArray
    vol_mode: IntArray
    weight: FloatArray
    extended: BoolArray
    edge_move: FloatArray
    dampener_usd: FloatArray
    horizon_days: float

    @property
    def size(self) -> int:
        """Number of scenarios."""
        return int(self.move.size)

    def vol_names(self) -> list[str]:
        """Vol direction of each scenario as text."""
        return [_MODE_NAME[int(v)] for v in self.vol_mode]


def _label(move: float, mode: int) -> str:
    return f"{move * 100:+.4g}% vol {_MODE_NAME[mode]}"


def build_grid(params: UnderlyingPMParams) -> ScenarioGrid:
    """Build the scenario grid of one underlying.

    Parameters
    ----------
    params : UnderlyingPMParams
        Parameters of the underlying.

    Returns
    -------
    ScenarioGrid
        Standard scenarios (ordered by price move, then vol direction as listed in
        ``vol_scenarios``) followed by the extended ones.
    """
    g = params.grid
    moves: list[float] = []
    modes: list[int] = []
    weights: list[float] = []
    names: list[str] = []
    if g.explicit is not None:
        for sc in g.explicit:
            moves.append(sc.price_shock)
            modes.append(_MODE[sc.vol])
            weights.append(sc.weight)
            names.append(sc.name or _label(sc.price_shock, _MODE[sc.vol]))
    else:
        assert g.buckets is not None
        for k in range(-g.buckets, g.buckets + 1):
            m = k * g.price_range / g.buckets
            for v in g.vol_scenarios:
                moves.append(m)
                modes.append(_MODE[v])
                weights.append(1.0)
                names.append(_label(m, _MODE[v]))
    if g.skew is not None:
        for mode in (VOL_SKEW_LINEAR, VOL_SKEW_ABS):
            moves.append(0.0)
            modes.append(mode)
            weights.append(1.0)
            names.append(_MODE_NAME[mode])
    n_std = len(moves)
    damp = [0.0] * n_std
    edge = list(moves)
    if g.extended is not None:
        e = g.extended
        w = tail_weight(np.asarray(e.moves), g.price_range, e.factor)
        for m, wt in zip(e.moves, w, strict=True):
            moves.append(m)
            modes.append(_MODE[e.vol])
            weights.append(float(wt))
            names.append("ext " + _label(m, _MODE[e.vol]))
            excess = max(abs(m) / g.price_range, 1.0) - 1.0
            damp.append(excess * e.dampener_usd)
            edge.append(float(np.sign(m)) * g.price_range if e.range_edge_conversion else m)
    ext = np.zeros(len(moves), bool)
    ext[n_std:] = True
    return ScenarioGrid(
        names=names,
        move=np.asarray(moves, np.float64),
        vol_mode=np.asarray(modes, np.int64),
        weight=np.asarray(weights, np.float64),
        extended=ext,
        edge_move=np.asarray(edge, np.float64),
        dampener_usd=np.asarray(damp, np.float64),
        horizon_days=g.horizon_days,
    )


def shocked_vol(vol: FloatArray, tau: FloatArray, mode: IntArray, p: VolShockParams,
                log_moneyness: FloatArray | None = None,
                skew: SkewShockParams | None = None) -> FloatArray:
    """Shocked implied vols of options (rows) under scenarios (columns).

    Parameters
    ----------
    vol, tau : ndarray, shape (n,)
        Mark vol and time to expiry (years) of each option.
    mode : ndarray of int, shape (s,)
        Vol direction of each scenario.
    p : VolShockParams
        Shock rule.
    log_moneyness : ndarray, shape (n,), optional
        ``ln(K/F)`` of each option (needed by skew scenarios).
    skew : SkewShockParams, optional
        Skew rule of the grid (Derive's wing rotation, :func:`skew_multipliers`).

    Returns
    -------
    ndarray, shape (n, s)
        Shocked vols, floored at ``min_vol`` (and at ``min_vol_up`` for up shocks);
        unshocked scenarios keep the mark vol.
    """
    scale = term_scale(tau * 365.0, short_power=p.short_power, long_power=p.long_power,
                       floor_days=p.floor_days, pivot_days=p.pivot_days,
                       short_inclusive=p.short_inclusive)[:, None]
    v = vol[:, None]
    if p.kind == "multiplicative":
        up = v * vol_multiplier_up(p.up, scale)
        down = v * vol_multiplier_down(p.down, scale)
    else:
        up = v + p.up * scale
        down = v - p.down * scale
    up = np.maximum(up, p.min_vol_up)
    m = mode[None, :]
    shocked = np.where(m == VOL_UP, up, down)
    if skew is not None and log_moneyness is not None:
        lin, ab = skew_multipliers(tau, log_moneyness, skew)
        shocked = np.where(m == VOL_SKEW_LINEAR, v * np.maximum(lin, 0.0)[:, None], shocked)
        shocked = np.where(m == VOL_SKEW_ABS, v * np.maximum(ab, 0.0)[:, None], shocked)
    shocked = np.maximum(shocked, p.min_vol)
    return np.asarray(np.where(m == VOL_NONE, v, shocked))
