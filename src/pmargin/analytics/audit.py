"""Stress auditor: standardised scenarios and the liquidation-proximity curve of a book.

One set of documented scenarios (``analytics/audit.toml``: a crash with vols up, a rally with
vols up, a skew twist, a BTC/ETH decorrelation, a stablecoin de-peg, a liquidity haircut) is
applied to a book under each margin methodology. Every figure comes from the book engine: one
preparation per market (scenario or curve point) and every account at once.

Definitions (per methodology and scenario)
------------------------------------------
* **Active accounts**: accounts holding at least one position (collateral-only and empty
  accounts can never be under maintenance margin).
* **Under MM**: health :data:`~pmargin.models.health.HealthState.LIQUIDATION` or worse after the
  shock (for isolated margin, the worst position decides, as everywhere in pmargin).
* **Share of equity under MM**: the pre-shock equity (USD, floored at 0) of the accounts under
  MM over that of all active accounts.
* **Share of open interest under MM**: the pre-shock gross notional (USD; ``sum |q| x index``,
  options in contracts of one coin) of those accounts over the book's.
* **Loss beyond own collateral** of an account: ``max(0, -equity)`` after the shock, or the
  sum of negative position equities under isolated margin (``isolated_deficit``); with a
  liquidity haircut ``h``, an account under MM also pays ``h x gross notional`` to close out,
  and its loss is ``max(loss, h x notional - equity)``.
* **Cover-1 / Cover-2**: the largest one / two account losses beyond own collateral, against
  the insurance fund (CPMI-IOSCO PFMI, Principle 4's "cover 1 / cover 2" of the largest
  participants' defaults, here applied to accounts).
* **Proximity curve**: share of active accounts and of open interest under MM for index moves
  from ``curve.min_move`` to ``curve.max_move`` (every underlying moved alike, vols sticky to
  strike).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from pmargin._typing import BoolArray, FloatArray, IntArray
from pmargin.analytics.efficiency import gross_notional
from pmargin.analytics.settings import FrozenSettings, load_settings
from pmargin.analytics.shocks import MarketShock, shocked_market
from pmargin.book import Book
from pmargin.engine import BookEngine
from pmargin.errors import InvalidInput
from pmargin.liquidation.cascade import load_cascade_params
from pmargin.market import MarketSnapshot
from pmargin.models import load_model
from pmargin.models.base import MarginModel
from pmargin.models.health import HealthState
from pmargin.models.result import BookMarginResult

__all__ = [
    "AuditParams",
    "AuditReport",
    "AuditScenario",
    "CurveParams",
    "ProximityCurve",
    "ScenarioOutcome",
    "book_exposure",
    "curve_markets",
    "load_audit_params",
    "proximity_curve",
    "run_audit",
    "scenario_outcome",
]


class AuditScenario(FrozenSettings):
    """One standardised scenario of ``audit.toml``."""

    name: str = Field(min_length=1)
    description: str
    spot_move: dict[str, float]
    """Relative index move per underlying (underlyings the market lacks are ignored)."""
    vol_shift: float = Field(gt=-1.0)
    skew_twist: float
    collateral_prices: dict[str, float]
    liquidity_haircut: float = Field(ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check_moves(self) -> AuditScenario:
        for u, m in self.spot_move.items():
            if m <= -1.0:
                raise ValueError(f"spot_move.{u} = {m} must be above -1")
        for c, p in self.collateral_prices.items():
            if p <= 0.0:
                raise ValueError(f"collateral_prices.{c} = {p} must be positive")
        return self

    def shock(self, market: MarketSnapshot) -> MarketShock:
        """The market shock of this scenario, restricted to the market's underlyings."""
        have = set(market.underlyings)
        return MarketShock({u: m for u, m in self.spot_move.items() if u.upper() in have},
                           self.vol_shift, self.skew_twist, dict(self.collateral_prices))


class CurveParams(FrozenSettings):
    """Index moves of the liquidation-proximity curve."""

    min_move: float = Field(gt=-1.0)
    max_move: float
    points: int = Field(ge=2)

    @model_validator(mode="after")
    def _order(self) -> CurveParams:
        if self.max_move <= self.min_move:
            raise ValueError(f"max_move {self.max_move} must exceed min_move {self.min_move}")
        return self

    def moves(self) -> FloatArray:
        """The moves, evenly spaced, ``(points,)``."""
        return np.linspace(self.min_move, self.max_move, self.points)


class AuditParams(FrozenSettings):
    """The auditor's settings (``audit.toml``)."""

    schema_version: int = 1
    name: str
    source: str
    assumptions: tuple[str, ...] = ()
    models: tuple[str, ...] = Field(min_length=1)
    curve: CurveParams
    scenarios: tuple[AuditScenario, ...] = Field(min_length=1)


def load_audit_params(path: str | Path | None = None) -> AuditParams:
    """Load the auditor's scenarios (shipped ``audit.toml`` or a user file)."""
    return load_settings(AuditParams, "audit", path)


@dataclass(frozen=True)
class BookExposure:
    """Pre-shock exposure of every account (USD).

    Attributes
    ----------
    active : ndarray of bool, shape (n_accounts,)
        Account holds at least one position.
    gross_notional_usd : ndarray, shape (n_accounts,)
        ``sum |q| x index`` of the account's positions.
    equity_usd : ndarray, shape (n_accounts,)
        Equity at the base market.
    """

    active: BoolArray
    gross_notional_usd: FloatArray
    equity_usd: FloatArray


def book_exposure(book: Book, market: MarketSnapshot, base: BookMarginResult) -> BookExposure:
    """Active flags, gross notional and equity (USD) of every account before a shock."""
    nnz = np.diff(book.positions.tocsr().indptr)
    return BookExposure(nnz > 0, gross_notional(book, market), base.equity * base.mc_usd)


def _under_mm(res: BookMarginResult) -> BoolArray:
    return np.asarray(res.health >= HealthState.LIQUIDATION.value)


def _share(num: float, den: float) -> float:
    return float(num / den) if den > 0 else 0.0


@dataclass(frozen=True)
class ScenarioOutcome:
    """What one scenario does to a book under one methodology (USD amounts).

    Attributes
    ----------
    scenario, model : str
        Names.
    accounts_under_mm : int
        Active accounts under maintenance margin after the shock.
    share_accounts_under_mm, share_equity_under_mm, share_open_interest_under_mm : float
        Shares in [0, 1] (see the module notes).
    losses_beyond_collateral_usd : float
        Sum over accounts of the loss beyond their own collateral.
    accounts_with_losses_beyond_collateral : int
        Accounts with a positive such loss.
    cover1_usd, cover2_usd : float
        Largest one and two account losses beyond own collateral.
    insurance_fund_usd : float
        Fund they are compared with.
    cover1_covered, cover2_covered : bool
        Whether the fund covers them.
    """

    scenario: str
    model: str
    accounts_under_mm: int
    share_accounts_under_mm: float
    share_equity_under_mm: float
    share_open_interest_under_mm: float
    losses_beyond_collateral_usd: float
    accounts_with_losses_beyond_collateral: int
    cover1_usd: float
    cover2_usd: float
    insurance_fund_usd: float
    cover1_covered: bool
    cover2_covered: bool


def account_losses_beyond_collateral(res: BookMarginResult, notional_usd: FloatArray,
                                     haircut: float) -> FloatArray:
    """Loss beyond own collateral of every account after a shock, USD, ``(n_accounts,)``.

    Parameters
    ----------
    res : BookMarginResult
        Margins at the shocked market.
    notional_usd : ndarray, shape (n_accounts,)
        Gross notional charged by the liquidity haircut.
    haircut : float
        Close-out cost as a fraction of gross notional, for accounts under MM.

    Returns
    -------
    ndarray
        Non-negative USD amounts.
    """
    eq = res.equity * res.mc_usd
    deficit = res.components.get("isolated_deficit")
    loss = (np.maximum(0.0, -eq) if deficit is None
            else np.asarray(deficit, np.float64) * res.mc_usd)
    if haircut > 0.0:
        cost = np.where(_under_mm(res), haircut * notional_usd, 0.0)
        loss = np.maximum(loss, cost - eq)
    return np.asarray(np.maximum(loss, 0.0), dtype=np.float64)


def scenario_outcome(scenario: str, model: str, res: BookMarginResult, exposure: BookExposure,
                     haircut: float, fund_usd: float) -> ScenarioOutcome:
    """Summarise a shocked book result (see :class:`ScenarioOutcome`)."""
    act = exposure.active
    under = _under_mm(res) & act
    loss = account_losses_beyond_collateral(res, exposure.gross_notional_usd, haircut)
    loss = np.where(act, loss, 0.0)
    top = np.sort(loss)[::-1]
    c1 = float(top[0]) if top.size else 0.0
    c2 = float(top[:2].sum()) if top.size else 0.0
    pos_eq = np.maximum(exposure.equity_usd, 0.0)
    return ScenarioOutcome(
        scenario, model, int(under.sum()),
        _share(float(under.sum()), float(act.sum())),
        _share(float(pos_eq[under].sum()), float(pos_eq[act].sum())),
        _share(float(exposure.gross_notional_usd[under].sum()),
               float(exposure.gross_notional_usd[act].sum())),
        float(loss.sum()), int((loss > 0).sum()), c1, c2, fund_usd,
        c1 <= fund_usd, c2 <= fund_usd)


@dataclass(frozen=True)
class ProximityCurve:
    """Liquidation-proximity curve of one methodology.

    Attributes
    ----------
    model : str
        Model name.
    moves : ndarray, shape (n_points,)
        Relative index moves.
    accounts_under_mm : ndarray of int, shape (n_points,)
        Active accounts under MM at each move.
    share_accounts : ndarray, shape (n_points,)
        Their share of active accounts.
    share_open_interest : ndarray, shape (n_points,)
        Their share of the book's pre-move gross notional.
    """

    model: str
    moves: FloatArray
    accounts_under_mm: IntArray
    share_accounts: FloatArray
    share_open_interest: FloatArray


def curve_markets(market: MarketSnapshot, moves: FloatArray) -> list[MarketSnapshot]:
    """The market after each index move (every underlying alike, vols sticky to strike).

    Built once and shared by every methodology of an audit.

    Parameters
    ----------
    market : MarketSnapshot
        Base market.
    moves : ndarray, shape (n_points,)
        Relative moves, each finite and above -1.

    Returns
    -------
    list of MarketSnapshot
        One market per move (the base market itself for a move of 0).
    """
    out = []
    for m in np.asarray(moves, np.float64):
        if not np.isfinite(m) or m <= -1.0:
            raise InvalidInput("moves", float(m), "each move must be finite and above -1")
        out.append(market.bumped({u: float(m) for u in market.underlyings}) if m != 0.0
                   else market)
    return out


def proximity_curve(engine: BookEngine, markets: Sequence[MarketSnapshot], moves: FloatArray,
                    exposure: BookExposure) -> tuple[ProximityCurve, list[BoolArray]]:
    """Share of accounts and of open interest under MM for each index move.

    One preparation per move (:meth:`BookEngine.update_market`), every account at once. The
    engine is left at the last market.

    Parameters
    ----------
    engine : BookEngine
        Engine holding the book and the model.
    markets : sequence of MarketSnapshot
        The market at each move (:func:`curve_markets`).
    moves : ndarray, shape (n_points,)
        The moves (labels of ``markets``).
    exposure : BookExposure
        Pre-move exposure of the book's accounts.

    Returns
    -------
    ProximityCurve
        The curve.
    list of ndarray of bool
        Accounts under MM at each move, ``(n_accounts,)`` each (for checks).
    """
    if len(markets) != len(moves):
        raise InvalidInput("markets", len(markets), f"must be one per move ({len(moves)})")
    act = exposure.active
    n_act = float(act.sum())
    oi = exposure.gross_notional_usd
    oi_total = float(oi[act].sum())
    counts: list[int] = []
    sh_a: list[float] = []
    sh_oi: list[float] = []
    flags: list[BoolArray] = []
    for mkt in markets:
        res = engine.update_market(mkt)
        under = _under_mm(res) & act
        flags.append(under)
        counts.append(int(under.sum()))
        sh_a.append(_share(float(under.sum()), n_act))
        sh_oi.append(_share(float(oi[under].sum()), oi_total))
    return ProximityCurve(engine.model.name, np.asarray(moves, np.float64),
                          np.asarray(counts, np.int64), np.asarray(sh_a), np.asarray(sh_oi)), flags


@dataclass
class ModelAudit:
    """Base figures of one methodology (USD)."""

    model: str
    initial_margin_usd: float
    maintenance_margin_usd: float
    accounts_under_mm: int
    share_accounts_under_mm: float


@dataclass
class AuditReport:
    """The audit of one book: per methodology, the base, every scenario and the curve."""

    accounts: int
    active_accounts: int
    gross_notional_usd: float
    equity_usd: float
    insurance_fund_usd: float
    market_source: str
    params_name: str
    base: list[ModelAudit] = field(default_factory=list)
    outcomes: list[ScenarioOutcome] = field(default_factory=list)
    curves: list[ProximityCurve] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (arrays as lists)."""
        return {
            "accounts": self.accounts,
            "active_accounts": self.active_accounts,
            "gross_notional_usd": self.gross_notional_usd,
            "equity_usd": self.equity_usd,
            "insurance_fund_usd": self.insurance_fund_usd,
            "market_source": self.market_source,
            "params": self.params_name,
            "base": [asdict(b) for b in self.base],
            "scenarios": [asdict(o) for o in self.outcomes],
            "curves": [{"model": c.model, "moves": c.moves.tolist(),
                        "accounts_under_mm": c.accounts_under_mm.tolist(),
                        "share_accounts": c.share_accounts.tolist(),
                        "share_open_interest": c.share_open_interest.tolist()}
                       for c in self.curves],
            "seconds": dict(self.seconds),
        }


def _models(names: Sequence[str] | None, params: AuditParams) -> list[MarginModel]:
    return [load_model(n) for n in (names if names else params.models)]


def run_audit(book: Book, market: MarketSnapshot, models: Sequence[str] | None = None,
              params: AuditParams | None = None, insurance_fund_usd: float | None = None,
              curve: bool = True) -> AuditReport:
    """Run every scenario and the proximity curve on ``book`` under each methodology.

    Parameters
    ----------
    book : Book
        Accounts (any margin currency the models accept).
    market : MarketSnapshot
        Base market.
    models : sequence of str, optional
        Model names (default: ``params.models``).
    params : AuditParams, optional
        Scenarios (default: the shipped ``audit.toml``).
    insurance_fund_usd : float, optional
        Fund for Cover-1/Cover-2 (default: ``insurance_fund_usd`` of ``cascade.toml``).
    curve : bool
        Compute the proximity curve.

    Returns
    -------
    AuditReport
        Base figures, scenario outcomes and curves.
    """
    import time

    p = params or load_audit_params()
    fund = (load_cascade_params().insurance_fund_usd if insurance_fund_usd is None
            else float(insurance_fund_usd))
    if not np.isfinite(fund) or fund < 0:
        raise InvalidInput("insurance_fund_usd", fund, "must be finite and non-negative")
    mdls = _models(models, p)
    shocked = {s.name: shocked_market(market, s.shock(market)) for s in p.scenarios}
    moves = p.curve.moves()
    along = curve_markets(market, moves) if curve else []
    report: AuditReport | None = None
    for model in mdls:
        t0 = time.perf_counter()
        engine = BookEngine(model, book, market)
        base = engine.result
        exposure = book_exposure(book, market, base)
        if report is None:
            report = AuditReport(book.n_accounts, int(exposure.active.sum()),
                                 float(exposure.gross_notional_usd.sum()),
                                 float(exposure.equity_usd.sum()), fund, market.source, p.name)
        under0 = _under_mm(base) & exposure.active
        report.base.append(ModelAudit(
            model.name, float(base.initial_margin.sum() * base.mc_usd),
            float(base.maintenance_margin.sum() * base.mc_usd), int(under0.sum()),
            _share(float(under0.sum()), float(exposure.active.sum()))))
        for s in p.scenarios:
            res = engine.update_market(shocked[s.name])
            report.outcomes.append(scenario_outcome(s.name, model.name, res, exposure,
                                                    s.liquidity_haircut, fund))
        t1 = time.perf_counter()
        report.seconds[f"{model.name}:scenarios"] = t1 - t0
        if curve:
            c, _ = proximity_curve(engine, along, moves, exposure)
            report.curves.append(c)
            report.seconds[f"{model.name}:curve"] = time.perf_counter() - t1
    assert report is not None
    return report
