"""Smile template: the shape of the Deribit implied-vol surface, to be scaled to an ATM level.

History gives one vol number per day (DVOL, a 30-day ATM-like index, or its proxy); the chains
in ``../shared/data/deribit`` give the shape around it. The template holds, per asset:

* a **term structure** ``term_ratio(T) = ATM(T) / ATM(30 d)`` at node tenors (days), exactly 1
  at 30 days;
* a **smile shape** per node tenor ``shape(x) = IV / ATM-IV`` on nodes of
  ``x = ln(K / F) / sqrt(T)`` (T in ACT/365 years), exactly 1 at ``x = 0``.

A market at ATM level ``a`` (the 30-day ATM vol) gets at node tenor ``T_n`` the smile
``a * term_ratio(T_n) * shape_n(x)``, linear in ``x`` (so in ``k``) between nodes and flat
beyond the outer nodes, and between node tenors the surface interpolates total variance at
fixed ``k`` (the rules of :mod:`pmargin.market.surface`). By construction the ATM vol of the
30-day tenor equals ``a``.

Fit
---
For every snapshot and asset, each expiry's out-of-the-money options (call if ``K >= F``)
give ``k = ln(K/F)`` with ``F`` the option's ``underlying`` and ``T`` from the timestamps on a
365-day year. The expiry's ATM vol is the IV linearly interpolated at ``k = 0`` (expiries
without strikes on both sides of ``F`` are skipped) and the snapshot's 30-day ATM vol is its
ATM total variance interpolated linearly in ``T`` at 30 days. The term ratios are fitted by
penalised least squares as a piecewise-linear function of ``T`` on the node tenors, the shapes
likewise in ``x`` on the ``x`` nodes, from the options whose tenor is nearest (in log) to that
node's. Options with ``x`` outside the node range are left out (the far wings Deribit lists, up
to ``x = 15``, would otherwise pull the outer nodes up; the smile is flat beyond them). Both are
then divided by their value at 30 days / ``x = 0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from pmargin._typing import FloatArray
from pmargin.analytics.history_params import HistoryParams, load_history_params
from pmargin.analytics.series import ASSETS, default_shared
from pmargin.conventions import SECONDS_PER_YEAR, ensure_utc, year_fraction
from pmargin.errors import InvalidInput
from pmargin.market.curves import ForwardCurve
from pmargin.market.surface import Smile, VolSurface

__all__ = ["SmileTemplate", "chain_files", "chain_observations", "fit_template",
           "load_template"]

_COLUMNS = ["timestamp", "underlying", "option_type", "strike", "expiry_datetime",
            "implied_volatility", "currency"]
_DAY_YEARS = 86400.0 / SECONDS_PER_YEAR


@dataclass(frozen=True, eq=False)
class SmileTemplate:
    """Term structure and smile shapes of one asset, relative to the 30-day ATM vol.

    Attributes
    ----------
    asset : str
        Coin.
    term_days : ndarray, shape (n_t,)
        Node tenors in days, strictly increasing, holding 30.
    term_ratio : ndarray, shape (n_t,)
        ATM vol at each node tenor / ATM vol at 30 days (exactly 1 at 30).
    x_nodes : ndarray, shape (n_x,)
        Nodes of ``x = ln(K/F)/sqrt(T)``, strictly increasing, holding 0.
    shape : ndarray, shape (n_t, n_x)
        IV / ATM IV at each node tenor and ``x`` node (exactly 1 at ``x = 0``).
    n_options : int
        Options the template was fitted on (0 for a hand-made one).
    sources : tuple of str
        Chain files it was fitted on.

    Raises
    ------
    InvalidInput
        On inconsistent shapes, non-positive ratios, or a ratio of 30 days / ``x = 0`` that is
        not 1.
    """

    asset: str
    term_days: FloatArray
    term_ratio: FloatArray
    x_nodes: FloatArray
    shape: FloatArray
    n_options: int = 0
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        t = np.asarray(self.term_days, dtype=np.float64)
        r = np.asarray(self.term_ratio, dtype=np.float64)
        x = np.asarray(self.x_nodes, dtype=np.float64)
        s = np.asarray(self.shape, dtype=np.float64)
        if t.ndim != 1 or t.size == 0 or np.any(np.diff(t) <= 0) or 30.0 not in t:
            raise InvalidInput("template.term_days", t.tolist(),
                               "must be strictly increasing and hold 30")
        if x.ndim != 1 or x.size < 2 or np.any(np.diff(x) <= 0) or 0.0 not in x:
            raise InvalidInput("template.x_nodes", x.tolist(),
                               "must be strictly increasing and hold 0")
        if r.shape != t.shape or s.shape != (t.size, x.size):
            raise InvalidInput("template.shape", s.shape,
                               f"must be ({t.size}, {x.size}) with term_ratio of ({t.size},)")
        if not (np.all(np.isfinite(r)) and np.all(r > 0) and np.all(np.isfinite(s))
                and np.all(s > 0)):
            raise InvalidInput("template.shape", self.asset, "ratios must be positive and finite")
        if r[np.searchsorted(t, 30.0)] != 1.0 or np.any(s[:, np.searchsorted(x, 0.0)] != 1.0):
            raise InvalidInput("template.term_ratio", self.asset,
                               "must be exactly 1 at 30 days and at x = 0")
        for name, arr in (("term_days", t), ("term_ratio", r), ("x_nodes", x), ("shape", s)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @classmethod
    def flat(cls, asset: str, params: HistoryParams | None = None) -> SmileTemplate:
        """A template without smile or term structure (every vol equals the ATM level).

        Parameters
        ----------
        asset : str
            Coin.
        params : HistoryParams, optional
            Node grids (default: the shipped ``history.toml``).

        Returns
        -------
        SmileTemplate
            Ratios all 1.
        """
        p = (params or load_history_params()).template
        t = np.array(p.term_nodes_days)
        x = np.array(p.x_nodes)
        return cls(str(asset).upper(), t, np.ones_like(t), x, np.ones((t.size, x.size)))

    def node_vols(self, atm30: float) -> FloatArray:
        """Vols at every node, shape ``(n_t, n_x)``: ``atm30 * term_ratio * shape``."""
        return float(atm30) * self.term_ratio[:, None] * self.shape

    def surface(self, underlying: str, when: datetime, atm30: float,
                forward_curve: ForwardCurve) -> VolSurface:
        """The vol surface at ATM level ``atm30`` (one smile per node tenor).

        Parameters
        ----------
        underlying : str
            Coin.
        when : datetime
            Valuation time (aware UTC); node ``n`` expires at ``when + term_days[n]`` days.
        atm30 : float
            30-day ATM vol (decimal).
        forward_curve : ForwardCurve
            Forwards of the node expiries (strikes are ``F exp(x sqrt(T))``).

        Returns
        -------
        VolSurface
            Surface whose 30-day ATM vol is exactly ``atm30``.
        """
        if not (math.isfinite(atm30) and atm30 > 0.0):
            raise InvalidInput("atm_vol", atm30, "must be positive and finite")
        w = ensure_utc(when, "when")
        vols = self.node_vols(atm30)
        smiles = []
        for n, days in enumerate(self.term_days):
            expiry = w + timedelta(days=float(days))
            tau = year_fraction(w, expiry)
            fwd = forward_curve.forward(expiry)
            strikes = fwd * np.exp(self.x_nodes * math.sqrt(tau))
            smiles.append(Smile(expiry, tau, fwd, strikes, vols[n]))
        return VolSurface(underlying, w, smiles, forward_curve)

    def vols(self, atm30: float | FloatArray, taus: FloatArray, log_moneyness: FloatArray
             ) -> FloatArray:
        """Template vols at times to expiry and log-moneyness (the surface's own rules).

        Parameters
        ----------
        atm30 : float or ndarray
            30-day ATM level (scalar, or one per point: the surface is linear in it).
        taus : ndarray
            Times to expiry in ACT/365 years.
        log_moneyness : ndarray
            ``ln(K/F)``, broadcast against ``taus``.

        Returns
        -------
        ndarray
            Implied vols (decimals), broadcast shape.
        """
        t0 = datetime(2000, 1, 1, tzinfo=UTC)
        unit = self.surface(self.asset, t0, 1.0, ForwardCurve(self.asset, 1.0, t0))
        t, k = np.broadcast_arrays(np.asarray(taus, dtype=np.float64),
                                   np.asarray(log_moneyness, dtype=np.float64))
        return np.asarray(atm30, dtype=np.float64) * unit.vol(t, np.exp(k), 1.0)


def chain_files(shared: Path | None = None) -> list[Path]:
    """Deribit chain snapshots in ``shared/data/deribit`` (sorted by time).

    Raises
    ------
    InvalidInput
        If the folder has none (field ``shared``).
    """
    root = default_shared(shared)
    files = sorted((root / "data" / "deribit").glob("deribit_options_snapshot_*.csv.gz"))
    if not files:
        raise InvalidInput("shared", str(root), "has no data/deribit/*.csv.gz option chains")
    return files


def chain_observations(path: Path, asset: str) -> pd.DataFrame:
    """Out-of-the-money options of one chain snapshot, with their ATM and 30-day ATM vols.

    Parameters
    ----------
    path : Path
        A Deribit snapshot CSV (``../shared/data/deribit`` format).
    asset : str
        ``"BTC"`` or ``"ETH"``.

    Returns
    -------
    DataFrame
        One row per option used: ``time`` (snapshot, UTC), ``tau`` (ACT/365 years),
        ``forward``, ``strike``, ``k`` (= ln(K/F)), ``iv``, ``atm`` (the expiry's ATM vol),
        ``atm30`` (the snapshot's 30-day ATM vol), ``index_price`` (median of the rows, USD).
        Empty if the snapshot cannot give a 30-day ATM vol.
    """
    df = pd.read_csv(path, usecols=[*_COLUMNS, "index_price"])
    df = df[df["currency"] == asset]
    if df.empty:
        return pd.DataFrame()
    when = pd.to_datetime(df["timestamp"].iloc[0], utc=True)
    exp = pd.to_datetime(df["expiry_datetime"], utc=True)
    tau = (exp - when).dt.total_seconds().to_numpy() / SECONDS_PER_YEAR
    fwd = df["underlying"].to_numpy(dtype=np.float64)
    strike = df["strike"].to_numpy(dtype=np.float64)
    iv = df["implied_volatility"].to_numpy(dtype=np.float64)
    is_call = (df["option_type"] == "call").to_numpy()
    otm = (is_call == (strike >= fwd)) & np.isfinite(iv) & (iv > 0) & (tau > 0)
    obs = pd.DataFrame({"tau": tau[otm], "forward": fwd[otm], "strike": strike[otm],
                        "k": np.log(strike[otm] / fwd[otm]), "iv": iv[otm],
                        "expiry": exp.to_numpy()[otm]})
    atm: dict[object, float] = {}
    for e, g in obs.groupby("expiry"):
        k = g["k"].to_numpy()
        if k.min() < 0.0 < k.max() or 0.0 in k:
            order = np.argsort(k)
            atm[e] = float(np.interp(0.0, k[order], g["iv"].to_numpy()[order]))
    obs["atm"] = obs["expiry"].map(atm)
    obs = obs[obs["atm"].notna()]
    terms = obs.groupby("expiry").agg(tau=("tau", "first"), atm=("atm", "first"))
    terms = terms.sort_values("tau")
    t30 = 30.0 * _DAY_YEARS
    tt = terms["tau"].to_numpy()
    if tt.size == 0 or not (tt[0] <= t30 <= tt[-1]):
        return pd.DataFrame()
    w = terms["atm"].to_numpy() ** 2 * tt
    atm30 = math.sqrt(float(np.interp(t30, tt, w)) / t30)
    obs["atm30"] = atm30
    obs["time"] = when
    obs["index_price"] = float(df["index_price"].median())
    return obs.drop(columns="expiry").reset_index(drop=True)


def _hat_basis(nodes: FloatArray, xs: FloatArray) -> FloatArray:
    """Piecewise-linear interpolation weights, shape (len(xs), len(nodes)); xs clamped."""
    x = np.clip(xs, nodes[0], nodes[-1])
    j = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, nodes.size - 2)
    u = (x - nodes[j]) / (nodes[j + 1] - nodes[j])
    b = np.zeros((x.size, nodes.size))
    rows = np.arange(x.size)
    b[rows, j] = 1.0 - u
    b[rows, j + 1] += u
    return b


def _fit_piecewise(nodes: FloatArray, xs: FloatArray, ys: FloatArray, smoothing: float
                   ) -> FloatArray:
    """Penalised least-squares piecewise-linear fit (values at ``nodes``)."""
    b = _hat_basis(nodes, xs)
    n = nodes.size
    d2 = np.diff(np.eye(n), n=2, axis=0)
    lam = math.sqrt(smoothing * max(xs.size, 1))
    a = np.vstack([b, lam * d2, 1e-9 * np.eye(n)])
    rhs = np.concatenate([ys, np.zeros(d2.shape[0]), 1e-9 * np.ones(n)])
    coef, *_ = np.linalg.lstsq(a, rhs, rcond=None)
    return np.asarray(coef, dtype=np.float64)


def fit_template(asset: str, chains: Sequence[Path] | Iterable[Path],
                 params: HistoryParams | None = None) -> SmileTemplate:
    """Fit the smile template of one asset on Deribit chain snapshots.

    Parameters
    ----------
    asset : str
        ``"BTC"`` or ``"ETH"``.
    chains : iterable of Path
        Snapshot files (``../shared/data/deribit`` format).
    params : HistoryParams, optional
        Node grids, smoothing, minimum tenor (default: the shipped ``history.toml``).

    Returns
    -------
    SmileTemplate
        The fitted template (see the module docstring for the method).

    Raises
    ------
    InvalidInput
        If no snapshot gives usable options for ``asset`` (field ``chains``).
    """
    p = (params or load_history_params()).template
    a = str(asset).upper()
    files = list(chains)
    frames = [chain_observations(Path(f), a) for f in files]
    obs = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(
        not f.empty for f in frames) else pd.DataFrame()
    if obs.empty:
        raise InvalidInput("chains", [str(f) for f in files][:3],
                           f"no usable {a} options (need expiries around 30 days)")
    obs = obs[obs["tau"] >= p.min_tau_days * _DAY_YEARS]
    tdays = np.array(p.term_nodes_days)
    xnodes = np.array(p.x_nodes)
    # term structure: one point per (snapshot, expiry)
    terms = obs.drop_duplicates(["time", "tau"])
    tr = _fit_piecewise(tdays, terms["tau"].to_numpy() / _DAY_YEARS,
                        (terms["atm"] / terms["atm30"]).to_numpy(), p.smoothing)
    tr = tr / tr[np.searchsorted(tdays, 30.0)]
    # shapes: options assigned to the nearest node tenor in log
    tau_days = obs["tau"].to_numpy() / _DAY_YEARS
    node = np.argmin(np.abs(np.log(tau_days)[:, None] - np.log(tdays)[None, :]), axis=1)
    x = obs["k"].to_numpy() / np.sqrt(obs["tau"].to_numpy())
    ratio = (obs["iv"] / obs["atm"]).to_numpy()
    inside = (x >= xnodes[0]) & (x <= xnodes[-1])
    node = np.where(inside, node, -1)
    shape = np.full((tdays.size, xnodes.size), np.nan)
    zero = int(np.searchsorted(xnodes, 0.0))
    for n in range(tdays.size):
        m = node == n
        if m.sum() >= xnodes.size:
            c = _fit_piecewise(xnodes, x[m], ratio[m], p.smoothing)
            shape[n] = c / c[zero]
    fitted = np.flatnonzero(~np.isnan(shape[:, 0]))
    if fitted.size == 0:
        raise InvalidInput("chains", len(files), f"too few {a} options to fit a smile")
    for n in range(tdays.size):  # nodes without data take the nearest fitted node's shape
        if np.isnan(shape[n, 0]):
            shape[n] = shape[fitted[np.argmin(np.abs(fitted - n))]]
    shape = np.maximum(shape, 0.05)
    shape[:, zero] = 1.0
    tr = np.maximum(tr, 0.05)
    tr[np.searchsorted(tdays, 30.0)] = 1.0
    return SmileTemplate(a, tdays, tr, xnodes, shape, n_options=len(obs),
                         sources=tuple(Path(f).name for f in files))


@lru_cache(maxsize=8)
def _template_cached(asset: str, root: Path) -> SmileTemplate:
    return fit_template(asset, chain_files(root))


def load_template(asset: str, shared: Path | None = None) -> SmileTemplate:
    """The template of ``asset`` fitted on every chain in ``shared/data/deribit`` (cached).

    Parameters
    ----------
    asset : str
        ``"BTC"`` or ``"ETH"``.
    shared : Path, optional
        The shared folder (default ``$PMARGIN_SHARED`` or ``../shared``).

    Returns
    -------
    SmileTemplate
        The fitted template.
    """
    a = str(asset).strip().upper()
    if a not in ASSETS:
        raise InvalidInput("asset", asset, f"has no chains (known: {', '.join(ASSETS)})")
    return _template_cached(a, default_shared(shared).resolve())
