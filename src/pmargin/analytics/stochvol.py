r"""Stochastic-volatility stress: Heston and Bates calibrated to an option chain.

Joint index/vol paths over the margin period of risk, and the tail they imply for portfolios
and books.

Models (risk-neutral, zero rates, forward :math:`F_t` of the index):

.. math::

    dF_t/F_t = \sqrt{v_t}\,dW_t + (e^{J}-1)\,dN_t - \lambda\bar k\,dt,\qquad
    dv_t = \kappa(\theta - v_t)\,dt + \sigma\sqrt{v_t}\,dZ_t,\quad d\langle W,Z\rangle=\rho\,dt

with :math:`N` a Poisson process of intensity :math:`\lambda`, :math:`J\sim N(\nu,\delta^2)` and
:math:`\bar k = e^{\nu+\delta^2/2}-1` (Bates); Heston is :math:`\lambda = 0`.

Calibration uses QuantLib (``HestonModel`` / ``BatesModel`` with ``AnalyticHestonEngine`` /
``BatesEngine``, ``HestonModelHelper``, Levenberg-Marquardt); the fit is reported per expiry as
the RMSE and the largest error of implied vols.

Simulation: the QE scheme of Andersen (2008) for the variance (quadratic branch for
:math:`\psi\le\psi_c`, exponential branch above), with his central discretisation
(:math:`\gamma_1=\gamma_2=1/2`) of the log forward and the jumps added per step; seeded
(``numpy.random.default_rng``) and reproducible.

Revaluation: each path's horizon state :math:`(F_T, v_T)` revalues every instrument of a book
by Black-76 (options at the moved forward, vol multiplied by :math:`\sqrt{v_T/v_0}`), converted
to the margin currency exactly as the grid models convert their scenarios. Losses are in the
margin currency; the expected shortfall at ``es_level`` is compared with the grid models'
initial margin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from pmargin._typing import FloatArray
from pmargin.analytics.settings import FrozenSettings, load_settings
from pmargin.book import Book
from pmargin.errors import InvalidInput
from pmargin.instruments import parse_instrument
from pmargin.market import MarketSnapshot
from pmargin.models.base import MarginModel
from pmargin.models.valuation import KIND_OPTION, build_table
from pmargin.pricing import black76

__all__ = [
    "BatesParams",
    "Calibration",
    "ExpiryFit",
    "HestonParams",
    "OptionQuote",
    "Paths",
    "StochVolSettings",
    "TailComparison",
    "book_tail",
    "calibrate",
    "chain_quotes",
    "expected_shortfall",
    "load_stochvol_settings",
    "model_vols",
    "path_pnl",
    "simulate",
]


class StochVolSettings(FrozenSettings):
    """Settings of ``stochvol.toml``."""

    schema_version: int = 1
    name: str
    source: str
    assumptions: tuple[str, ...] = ()
    min_days: float = Field(gt=0)
    max_days: float = Field(gt=0)
    min_moneyness: float = Field(gt=0)
    max_moneyness: float = Field(gt=0)
    max_options_per_expiry: int = Field(ge=3)
    mpor_days: float = Field(gt=0)
    steps_per_day: int = Field(ge=1)
    paths: int = Field(ge=100)
    seed: int = Field(ge=0)
    es_level: float = Field(gt=0.5, lt=1.0)
    qe_psi_critical: float = Field(ge=1.0, le=2.0)


def load_stochvol_settings(path: str | Path | None = None) -> StochVolSettings:
    """Load ``stochvol.toml`` (or a user file)."""
    return load_settings(StochVolSettings, "stochvol", path)


@dataclass(frozen=True)
class HestonParams:
    """Heston parameters (per year).

    Initial variance ``v0``, mean reversion ``kappa``, long-run variance ``theta``, vol of
    variance ``sigma``, correlation ``rho``.
    """

    v0: float
    kappa: float
    theta: float
    sigma: float
    rho: float

    def __post_init__(self) -> None:
        for k in ("v0", "kappa", "theta", "sigma"):
            v = getattr(self, k)
            if not math.isfinite(v) or v <= 0:
                raise InvalidInput(k, v, "must be positive and finite")
        if not math.isfinite(self.rho) or abs(self.rho) >= 1:
            raise InvalidInput("rho", self.rho, "must be in (-1, 1)")


@dataclass(frozen=True)
class BatesParams(HestonParams):
    """Heston plus lognormal jumps.

    Intensity ``lam`` (per year), mean ``nu`` and standard deviation ``delta`` of the log jump.
    """

    lam: float = 0.0
    nu: float = 0.0
    delta: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not math.isfinite(self.lam) or self.lam < 0:
            raise InvalidInput("lam", self.lam, "must be non-negative and finite")
        if not math.isfinite(self.nu):
            raise InvalidInput("nu", self.nu, "must be finite")
        if not math.isfinite(self.delta) or self.delta < 0:
            raise InvalidInput("delta", self.delta, "must be non-negative and finite")


@dataclass(frozen=True)
class OptionQuote:
    """A calibration target: whole days to expiry, strike and forward (USD), implied vol."""

    days: int
    strike: float
    forward: float
    vol: float


def chain_quotes(market: MarketSnapshot, underlying: str,
                 settings: StochVolSettings | None = None) -> list[OptionQuote]:
    """Out-of-the-money option marks of one underlying usable as calibration targets.

    Parameters
    ----------
    market : MarketSnapshot
        A chain (e.g. a Deribit snapshot).
    underlying : str
        Coin.
    settings : StochVolSettings, optional
        Filters (default: shipped).

    Returns
    -------
    list of OptionQuote
        Per expiry, up to ``max_options_per_expiry`` strikes closest to the forward (in
        log-moneyness), one quote per strike (the OTM side; inverse before linear).
    """
    s = settings or load_stochvol_settings()
    rows: dict[tuple[int, float], OptionQuote] = {}
    for name in market.instrument_names:
        inst = parse_instrument(name)
        if (not inst.is_option or inst.underlying != underlying.upper()
                or inst.expiry is None or inst.strike is None):
            continue
        tau = market.tau(inst.expiry)
        days = round(tau * 365.0)
        if not s.min_days <= tau * 365.0 <= s.max_days:
            continue
        fwd = market.forward(inst.underlying, inst.expiry)
        k = inst.strike
        if not s.min_moneyness <= k / fwd <= s.max_moneyness:
            continue
        if inst.is_call != (k >= fwd):
            continue
        key = (days, k)
        if key in rows and not inst.is_inverse:
            continue
        rows[key] = OptionQuote(days, k, fwd, market.instrument_vol(inst))
    out: list[OptionQuote] = []
    for d in sorted({k[0] for k in rows}):
        qs = sorted((q for (dd, _), q in rows.items() if dd == d),
                    key=lambda q: abs(math.log(q.strike / q.forward)))
        out += sorted(qs[: s.max_options_per_expiry], key=lambda q: q.strike)
    if not out:
        raise InvalidInput("market", market.source,
                           f"has no {underlying} options usable for calibration")
    return out


@dataclass(frozen=True)
class ExpiryFit:
    """Fit of one expiry: whole days, options, RMSE and largest error of implied vol (decimal)."""

    days: int
    options: int
    iv_rmse: float
    iv_max_error: float


@dataclass
class Calibration:
    """A calibrated model and its fit."""

    model: str
    params: HestonParams
    fit: list[ExpiryFit] = field(default_factory=list)
    iv_rmse: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"model": self.model, "params": self.params.__dict__, "iv_rmse": self.iv_rmse,
                "fit": [f.__dict__ for f in self.fit]}


def _ql_setup(valuation: datetime, spot: float, quotes: Sequence[OptionQuote]) -> Any:
    import QuantLib as ql  # type: ignore[import-untyped]

    today = ql.Date(valuation.day, valuation.month, valuation.year)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    r_ts = ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, dc))
    fwd_by_day = {q.days: q.forward for q in quotes}
    days = sorted(fwd_by_day)
    rates = [-math.log(fwd_by_day[d] / spot) / (d / 365.0) for d in days]
    dates = [today] + [today + d for d in days]
    q_ts = ql.YieldTermStructureHandle(ql.ZeroCurve(dates, [rates[0], *rates], dc))
    return ql, today, r_ts, q_ts


def _helpers(ql: Any, r_ts: Any, q_ts: Any, spot: float, quotes: Sequence[OptionQuote]
             ) -> list[Any]:
    cal = ql.NullCalendar()
    return [ql.HestonModelHelper(ql.Period(q.days, ql.Days), cal, spot, q.strike,
                                 ql.QuoteHandle(ql.SimpleQuote(q.vol)), r_ts, q_ts,
                                 ql.BlackCalibrationHelper.ImpliedVolError)
            for q in quotes]


def _build(ql: Any, r_ts: Any, q_ts: Any, spot: float, p: HestonParams) -> tuple[Any, Any]:
    s0 = ql.QuoteHandle(ql.SimpleQuote(spot))
    if isinstance(p, BatesParams):
        proc = ql.BatesProcess(r_ts, q_ts, s0, p.v0, p.kappa, p.theta, p.sigma, p.rho,
                               p.lam, p.nu, p.delta)
        model = ql.BatesModel(proc)
        return model, ql.BatesEngine(model)
    proc = ql.HestonProcess(r_ts, q_ts, s0, p.v0, p.kappa, p.theta, p.sigma, p.rho)
    model = ql.HestonModel(proc)
    return model, ql.AnalyticHestonEngine(model)


def _params_of(model: Any, jumps: bool) -> HestonParams:
    x = [float(v) for v in model.params()]
    # QuantLib's order: theta, kappa, sigma, rho, v0 (Heston), then nu, delta, lambda (Bates)
    theta, kappa, sigma, rho, v0 = x[:5]
    if jumps:
        nu, delta, lam = x[5:8]
        return BatesParams(v0, kappa, theta, sigma, rho, lam, nu, abs(delta))
    return HestonParams(v0, kappa, theta, sigma, rho)


def model_vols(valuation: datetime, spot: float, quotes: Sequence[OptionQuote],
               params: HestonParams) -> FloatArray:
    """Implied vols of a Heston/Bates model at the quotes' expiries and strikes, ``(n,)``.

    Parameters
    ----------
    valuation : datetime
        Valuation date (its calendar day is QuantLib's evaluation date).
    spot : float
        Index (USD).
    quotes : sequence of OptionQuote
        Expiries, strikes and forwards (their ``vol`` is ignored).
    params : HestonParams or BatesParams
        Model parameters.

    Returns
    -------
    ndarray
        Black implied vols (decimal) of the model prices.
    """
    ql, _, r_ts, q_ts = _ql_setup(valuation, spot, quotes)
    _model, engine = _build(ql, r_ts, q_ts, spot, params)
    out = []
    for h in _helpers(ql, r_ts, q_ts, spot, quotes):
        h.setPricingEngine(engine)
        out.append(h.impliedVolatility(h.modelValue(), 1e-10, 1000, 1e-4, 10.0))
    return np.asarray(out, np.float64)


def calibrate(valuation: datetime, spot: float, quotes: Sequence[OptionQuote],
              jumps: bool = False, initial: HestonParams | None = None,
              max_iterations: int = 2000) -> Calibration:
    """Calibrate Heston (or Bates with ``jumps``) to implied vols with QuantLib.

    Parameters
    ----------
    valuation : datetime
        Valuation time (QuantLib works on its calendar day).
    spot : float
        Index (USD).
    quotes : sequence of OptionQuote
        Targets (:func:`chain_quotes`).
    jumps : bool
        Bates instead of Heston.
    initial : HestonParams, optional
        Starting point (default: ATM variance for ``v0`` and ``theta``, ``kappa = 2``,
        ``sigma = 1``, ``rho = -0.3``; jumps ``lam = 1``, ``nu = -0.1``, ``delta = 0.1``).
    max_iterations : int
        Levenberg-Marquardt iterations.

    Returns
    -------
    Calibration
        Parameters and the fit per expiry (implied-vol errors of the calibrated model).
    """
    if not quotes:
        raise InvalidInput("quotes", 0, "need at least one option")
    if not math.isfinite(spot) or spot <= 0:
        raise InvalidInput("spot", spot, "must be positive and finite")
    ql, _, r_ts, q_ts = _ql_setup(valuation, spot, quotes)
    atm = min(quotes, key=lambda q: abs(math.log(q.strike / q.forward))).vol
    start = initial or (BatesParams(atm**2, 2.0, atm**2, 1.0, -0.3, 1.0, -0.1, 0.1) if jumps
                        else HestonParams(atm**2, 2.0, atm**2, 1.0, -0.3))
    if jumps and not isinstance(start, BatesParams):
        start = BatesParams(start.v0, start.kappa, start.theta, start.sigma, start.rho,
                            1.0, -0.1, 0.1)
    model, engine = _build(ql, r_ts, q_ts, spot, start)
    helpers = _helpers(ql, r_ts, q_ts, spot, quotes)
    for h in helpers:
        h.setPricingEngine(engine)
    lm = ql.LevenbergMarquardt(1e-10, 1e-10, 1e-10)
    model.calibrate(helpers, lm, ql.EndCriteria(max_iterations, 200, 1e-10, 1e-10, 1e-10))
    params = _params_of(model, jumps)
    fitted = model_vols(valuation, spot, quotes, params)
    market = np.array([q.vol for q in quotes])
    err = fitted - market
    days = np.array([q.days for q in quotes])
    fit = [ExpiryFit(int(d), int((days == d).sum()),
                     float(np.sqrt(np.mean(err[days == d] ** 2))),
                     float(np.max(np.abs(err[days == d])))) for d in np.unique(days)]
    return Calibration("bates" if jumps else "heston", params, fit,
                       float(np.sqrt(np.mean(err**2))))


@dataclass(frozen=True)
class Paths:
    """Simulated horizon states: forward ratio ``F_T / F_0`` and variance ``v_T``, ``(n,)``."""

    ratio: FloatArray
    variance: FloatArray
    horizon_years: float


def simulate(params: HestonParams, horizon_years: float, steps: int, paths: int, seed: int,
             psi_critical: float = 1.5) -> Paths:
    """Simulate the forward ratio and the variance at the horizon (QE scheme, seeded).

    Parameters
    ----------
    params : HestonParams or BatesParams
        Dynamics (jumps when ``BatesParams`` with ``lam > 0``).
    horizon_years : float
        Horizon (years).
    steps : int
        Time steps.
    paths : int
        Number of paths.
    seed : int
        Seed of ``numpy.random.default_rng``.
    psi_critical : float
        QE switching value (Andersen: 1.5).

    Returns
    -------
    Paths
        ``F_T / F_0`` and ``v_T`` per path.
    """
    if not math.isfinite(horizon_years) or horizon_years <= 0:
        raise InvalidInput("horizon_years", horizon_years, "must be positive")
    if steps < 1 or paths < 1:
        raise InvalidInput("steps/paths", (steps, paths), "must be at least 1")
    rng = np.random.default_rng(seed)
    p = params
    dt = horizon_years / steps
    e = math.exp(-p.kappa * dt)
    k0 = -p.rho * p.kappa * p.theta * dt / p.sigma
    g1 = g2 = 0.5
    k1 = g1 * dt * (p.kappa * p.rho / p.sigma - 0.5) - p.rho / p.sigma
    k2 = g2 * dt * (p.kappa * p.rho / p.sigma - 0.5) + p.rho / p.sigma
    k3 = g1 * dt * (1 - p.rho**2)
    k4 = g2 * dt * (1 - p.rho**2)
    jumps = isinstance(p, BatesParams) and p.lam > 0
    lam = p.lam if isinstance(p, BatesParams) else 0.0
    nu = p.nu if isinstance(p, BatesParams) else 0.0
    dl = p.delta if isinstance(p, BatesParams) else 0.0
    comp = lam * (math.exp(nu + 0.5 * dl * dl) - 1.0) * dt
    v = np.full(paths, p.v0)
    x = np.zeros(paths)
    for _ in range(steps):
        m = p.theta + (v - p.theta) * e
        s2 = (v * p.sigma**2 * e * (1 - e) / p.kappa
              + p.theta * p.sigma**2 * (1 - e) ** 2 / (2 * p.kappa))
        psi = s2 / (m * m)
        u = rng.random(paths)
        z = rng.standard_normal(paths)
        v_new = np.empty(paths)
        quad = psi <= psi_critical
        if quad.any():
            ip = 2.0 / psi[quad]
            b2 = ip - 1.0 + np.sqrt(ip) * np.sqrt(ip - 1.0)
            a = m[quad] / (1.0 + b2)
            v_new[quad] = a * (np.sqrt(b2) + z[quad]) ** 2
        ex = ~quad
        if ex.any():
            pp = (psi[ex] - 1.0) / (psi[ex] + 1.0)
            beta = (1.0 - pp) / m[ex]
            ue = u[ex]
            v_new[ex] = np.where(ue <= pp, 0.0,
                                 np.log((1.0 - pp) / np.maximum(1.0 - ue, 1e-300)) / beta)
        z2 = rng.standard_normal(paths)
        x += k0 + k1 * v + k2 * v_new + np.sqrt(np.maximum(k3 * v + k4 * v_new, 0.0)) * z2
        if jumps:
            n = rng.poisson(lam * dt, paths)
            x += n * nu + np.sqrt(n) * dl * rng.standard_normal(paths) - comp
        v = v_new
    return Paths(np.exp(x), v, horizon_years)


def path_pnl(book: Book, market: MarketSnapshot, underlying: str, paths: Paths,
             v0: float) -> FloatArray:
    """P&L per unit of every column of ``book`` on every path, margin currency, ``(I, P)``.

    Columns of other underlyings than ``underlying`` carry no P&L (they do not move).

    Parameters
    ----------
    book : Book
        Its columns and margin currency.
    market : MarketSnapshot
        Base market.
    underlying : str
        The simulated coin.
    paths : Paths
        Horizon states.
    v0 : float
        Initial variance of the dynamics (vols scale by ``sqrt(v_T / v0)``).

    Returns
    -------
    ndarray
        P&L per unit held, shape ``(n_instruments, n_paths)``.
    """
    t = build_table(book.instruments, market, book.margin_currency)
    u = underlying.upper()
    mine = np.asarray(t.underlying == u)
    r = paths.ratio[None, :]
    f = t.forward[:, None]
    f_s = f * np.where(mine[:, None], r, 1.0)
    inv = t.inverse[:, None]
    v_s = np.where(inv, 1.0 - f / f_s, f_s)
    v_0 = np.where(inv, 0.0, f)
    v_0 = np.broadcast_to(v_0, v_s.shape).copy()
    opt = t.kind == KIND_OPTION
    if opt.any():
        o = np.flatnonzero(opt)
        scale = np.where(mine[o][:, None], np.sqrt(np.maximum(paths.variance, 0.0) / v0)[None, :],
                         1.0)
        tau_s = np.maximum(t.tau[o] - paths.horizon_years, 0.0)[:, None]
        sig = np.maximum(t.vol[o][:, None] * scale, 1e-4)
        args = (f_s[o], t.strike[o][:, None], tau_s, sig, t.is_call[o][:, None])
        v_s[o] = np.where(t.inverse[o][:, None], black76.inverse_price(*args),
                          black76.price(*args))
        v_0[o] = t.settle_value()[o][:, None]
    idx = market.index_price(u)
    mc = book.margin_currency.upper()
    p_mc0 = t.mc_price
    p_mc = np.full(r.shape, p_mc0) * (r if mc == u else 1.0)
    settle_s = np.where(inv, np.where(mine[:, None], idx * r, t.settle_price[:, None]),
                        t.settle_price[:, None])
    settle_0 = t.settle_price[:, None]
    out = v_s * settle_s / p_mc - v_0 * settle_0 / p_mc0
    return np.asarray(out)


@dataclass(frozen=True)
class TailComparison:
    """Tail of the simulated losses against a grid model's requirement, per account.

    Amounts in the margin currency; ``(n_accounts,)`` arrays.
    """

    model: str
    dynamics: str
    es: FloatArray
    worst_loss: FloatArray
    initial_margin: FloatArray
    active: FloatArray

    def summary(self) -> dict[str, float]:
        """Share of active accounts whose IM is below the ES, and sums (margin currency)."""
        act = self.active > 0
        n = max(int(act.sum()), 1)
        return {
            "accounts": float(act.sum()),
            "share_im_below_es": float((self.initial_margin[act] < self.es[act]).sum()) / n,
            "share_im_below_worst": float(
                (self.initial_margin[act] < self.worst_loss[act]).sum()) / n,
            "sum_es": float(self.es[act].sum()),
            "sum_worst_loss": float(self.worst_loss[act].sum()),
            "sum_initial_margin": float(self.initial_margin[act].sum()),
        }


def expected_shortfall(losses: FloatArray, level: float) -> FloatArray:
    """Expected shortfall of losses along the last axis: mean of the worst ``1 - level``.

    Parameters
    ----------
    losses : ndarray, shape (..., n_paths)
        Losses (positive = loss).
    level : float
        Confidence level in (0, 1).

    Returns
    -------
    ndarray, shape (...)
        Mean of the ``ceil(n (1 - level))`` largest losses.
    """
    n = losses.shape[-1]
    k = max(1, math.ceil(n * (1.0 - level) - 1e-9))
    part = np.partition(losses, n - k, axis=-1)[..., n - k:]
    return np.asarray(part.mean(axis=-1))


def book_tail(book: Book, market: MarketSnapshot, underlying: str, paths: Paths, v0: float,
              models: Sequence[MarginModel], level: float, dynamics: str,
              chunk: int = 2000) -> list[TailComparison]:
    """ES and worst loss of every account on the paths, against each model's IM.

    Parameters
    ----------
    book : Book
        Accounts (collateral in the margin currency carries no margin-currency P&L; other
        collateral currencies are refused).
    market : MarketSnapshot
        Base market.
    underlying : str
        Simulated coin.
    paths : Paths
        Horizon states.
    v0 : float
        Initial variance of the dynamics.
    models : sequence of MarginModel
        Grid models compared.
    level : float
        ES confidence level.
    dynamics : str
        Label (``heston``, ``bates``).
    chunk : int
        Accounts per chunk (memory ``chunk x paths`` floats).

    Returns
    -------
    list of TailComparison
        One per model (the ES and worst losses are the same for every model).
    """
    other = [i for i, c in enumerate(book.collateral_currencies)
             if c.upper() != book.margin_currency.upper()]
    if other and np.any(book.collateral[:, other] != 0):
        raise InvalidInput("book.collateral_currencies", book.collateral_currencies,
                           "only margin-currency collateral is supported by the tail")
    risk = path_pnl(book, market, underlying, paths, v0)
    pos = book.positions.tocsr()
    n = book.n_accounts
    es = np.zeros(n)
    worst = np.zeros(n)
    for s in range(0, n, chunk):
        pnl = np.asarray(pos[s:s + chunk] @ risk)
        loss = -pnl
        es[s:s + chunk] = expected_shortfall(loss, level)
        worst[s:s + chunk] = loss.max(axis=1)
    active = (np.diff(pos.indptr) > 0).astype(np.float64)
    out = []
    for m in models:
        res = m.compute(book, market)
        out.append(TailComparison(m.name, dynamics, es, worst, res.initial_margin, active))
    return out
