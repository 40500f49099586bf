"""Surgical liquidation planner: the least costly trades that bring an account back to health.

Currently implemented
---------------------
* Greedy search: at each step every candidate reduction (a fraction of one position, or the same
  fraction of every position) is margined with the real model in one vectorised book
  computation; the candidate with the largest shortfall reduction per unit of cost is taken.
* Cost: execution against the liquidity model (bid/ask from the market where known, plus size
  impact against depth) and the liquidation penalty (to the insurance fund).
* No over-liquidation: the step that restores health is shrunk by bisection to the smallest size
  that does; the plan stops as soon as the account is healthy.
* Never increases maintenance margin: candidates that raise MM (unwinding a hedge) are excluded.
* Optional delta-hedge-first: trade the perpetual against the net delta before unwinding.

The target is ``equity >= MM x (1 + buffer)`` (or ``equity >= IM``). An account whose shortfall
cannot be reduced without raising MM is reported ``stuck`` (for an auction or a takeover).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from pmargin._typing import FloatArray
from pmargin.book import Book
from pmargin.instruments import parse_instrument
from pmargin.liquidation._params import FrozenParams, load_params_file
from pmargin.liquidation.liquidity import LiquidityParams, closing_cost
from pmargin.market import MarketSnapshot
from pmargin.models.base import MarginModel
from pmargin.portfolio import Portfolio, Position

__all__ = ["LiquidationPlan", "PlanStep", "PlannerParams", "load_planner_params",
           "plan_liquidation"]


class PlannerParams(FrozenParams):
    """Parameters of the planner (``planner.toml``)."""

    schema_version: int = 1
    name: str
    source: str
    assumptions: tuple[str, ...] = ()
    target: Literal["maintenance", "initial"]
    buffer: float
    max_positions_per_step: int
    max_steps: int
    bisection_iterations: int
    penalty_rate: float
    delta_hedge_first: bool


def load_planner_params(path: str | Path | None = None) -> PlannerParams:
    """Load the planner parameters (shipped ``planner.toml`` or a user file)."""
    return load_params_file(PlannerParams, "planner.toml", path)


@dataclass(frozen=True)
class PlanStep:
    """One liquidation trade and the account's state after it (margin currency).

    ``trades`` lists ``(instrument, signed quantity, execution price USD)``; a pro-rata step
    trades every position.
    """

    label: str
    trades: tuple[tuple[str, float, float], ...]
    slippage: float
    penalty: float
    equity: float
    initial_margin: float
    maintenance_margin: float
    target: float


@dataclass
class LiquidationPlan:
    """The plan for one account."""

    account_id: str
    model: str
    margin_currency: str
    before_equity: float
    before_initial_margin: float
    before_maintenance_margin: float
    before_target: float
    steps: list[PlanStep] = field(default_factory=list)
    final: Portfolio | None = None
    stuck: bool = False

    @property
    def healthy(self) -> bool:
        """Whether the account meets the target after the plan."""
        if not self.steps:
            return self.before_equity >= self.before_target
        return self.steps[-1].equity >= self.steps[-1].target

    @property
    def needed(self) -> bool:
        """Whether the account was below target before the plan."""
        return self.before_equity < self.before_target

    @property
    def total_penalty(self) -> float:
        """Penalties paid (margin currency)."""
        return sum(s.penalty for s in self.steps)

    @property
    def total_slippage(self) -> float:
        """Execution cost against the mark (margin currency)."""
        return sum(s.slippage for s in self.steps)

    @property
    def liquidated_notional_usd(self) -> float:
        """Underlying notional traded, USD (set by the planner)."""
        return self._notional

    _notional: float = 0.0


@dataclass
class _State:
    positions: dict[str, float]
    collateral: dict[str, float]
    avg: dict[str, float | None]


def _portfolio(base: Portfolio, st: _State) -> Portfolio:
    pos = tuple(Position(parse_instrument(n), q, st.avg.get(n)) for n, q in st.positions.items()
                if q != 0.0)
    return Portfolio(base.margin_currency, pos, dict(st.collateral), (), base.account_id)


def plan_liquidation(
    portfolio: Portfolio,
    market: MarketSnapshot,
    model: MarginModel,
    params: PlannerParams | None = None,
    liquidity: LiquidityParams | None = None,
) -> LiquidationPlan:
    """Plan the least costly reduction that restores an account's health.

    Parameters
    ----------
    portfolio : Portfolio
        The account (open orders are ignored: they are cancelled before liquidation).
    market : MarketSnapshot
        Market data (marks, bid/ask for the liquidity model).
    model : MarginModel
        Margin model that judges health after each step.
    params : PlannerParams, optional
        Planner parameters (shipped defaults if omitted).
    liquidity : LiquidityParams, optional
        Liquidity model parameters (shipped defaults if omitted).

    Returns
    -------
    LiquidationPlan
        Steps with sizes, prices and margins after each; ``final`` is the account afterwards.
    """
    p = params or load_planner_params()
    mc = portfolio.margin_currency
    p_mc = market.collateral_price(mc)
    st = _State(dict(portfolio.net_positions()), dict(portfolio.collateral),
                {x.instrument.name: x.avg_price for x in portfolio.positions})
    base = portfolio.with_orders(())
    first = _figures(model, _portfolio(base, st), market)

    def target_of(im: float, mm: float) -> float:
        return im if p.target == "initial" else mm * (1.0 + p.buffer)

    plan = LiquidationPlan(portfolio.account_id, model.name, mc, first.equity,
                           first.initial_margin, first.maintenance_margin,
                           target_of(first.initial_margin, first.maintenance_margin))
    equity, mm = first.equity, first.maintenance_margin
    target = plan.before_target
    notional = 0.0

    def trade_costs(trades: Sequence[tuple[str, float]]) -> tuple[list[float], float, float, float]:
        """Execution prices (USD), slippage and penalty (margin currency), underlying notional."""
        prices: list[float] = []
        slip = 0.0
        pen = 0.0
        und = 0.0
        for name, dq in trades:
            inst = parse_instrument(name)
            mark = market.mark_price(inst)
            bid, ask = market.quote(inst)
            cc = closing_cost(-dq, mark, bid, ask, kind=inst.kind.value, params=liquidity)
            px = float(cc.execution_price)
            prices.append(px)
            slip += abs(dq) * abs(px - mark) / p_mc
            u_notional = abs(dq) * market.index_price(inst.underlying)
            und += u_notional
            pen += p.penalty_rate * u_notional / p_mc
        return prices, slip, pen, und

    def candidates(kind: str) -> list[tuple[str, list[tuple[str, float]]]]:
        live = {n: q for n, q in st.positions.items() if q != 0.0}
        out: list[tuple[str, list[tuple[str, float]]]] = []
        if kind == "hedge":
            if not live:
                return out
            perp = f"{base_underlying(live)}-PERPETUAL"
            delta = float(model.margin_figures(_portfolio(base, st), market).greeks["delta"][0])
            if abs(delta) > 1e-12:
                out.append((f"hedge delta with {perp}", [(perp, -delta)]))
            return out
        # Each candidate is judged on a full close (its ratio of shortfall reduction to cost);
        # the step that restores health is then shrunk to the smallest size that does.
        if len(live) <= p.max_positions_per_step:
            for name, q in live.items():
                out.append((f"close {name}", [(name, -q)]))
        if len(live) > 1:
            out.append(("close every position pro rata", [(n, -q) for n, q in live.items()]))
        return out

    def evaluate(cands: list[tuple[str, list[tuple[str, float]]]]
                 ) -> tuple[FloatArray, FloatArray, FloatArray, list[tuple[list[float], float,
                                                                             float, float]]]:
        pfs = []
        costs = []
        for _, trades in cands:
            prices, slip, pen, und = trade_costs(trades)
            nst = _State(dict(st.positions), dict(st.collateral), dict(st.avg))
            for name, dq in trades:
                nst.positions[name] = nst.positions.get(name, 0.0) + dq
                if abs(nst.positions[name]) < 1e-12:
                    nst.positions[name] = 0.0
            pfs.append(_portfolio(base, nst))
            costs.append((prices, slip, pen, und))
        book = Book.from_portfolios(pfs, margin_currency=mc)
        res = model.compute(book, market)
        # Closing at the mark is value-neutral (the position's value becomes cash); only the
        # execution cost and the penalty change equity. Cash in the margin currency carries no
        # margin, so IM and MM of the candidate do not depend on that cash.
        eq = np.array([equity - c[1] - c[2] for c in costs])
        return eq, res.initial_margin, res.maintenance_margin, costs

    def apply(label: str, trades: list[tuple[str, float]], cost: tuple[list[float], float, float,
                                                                         float],
              eq: float, im_: float, mm_: float) -> None:
        nonlocal equity, mm, target, notional
        prices, slip, pen, und = cost
        for name, dq in trades:
            st.positions[name] = st.positions.get(name, 0.0) + dq
            if abs(st.positions[name]) < 1e-12:
                st.positions[name] = 0.0
        # the cash effect: equity moves to eq (closing at mark is value-neutral; costs are paid)
        model_eq = float(model.margin_figures(_portfolio(base, st), market).equity[0])
        st.collateral[mc] = st.collateral.get(mc, 0.0) + (eq - model_eq)
        equity, mm, target = eq, mm_, target_of(im_, mm_)
        notional += und
        plan.steps.append(PlanStep(label, tuple((n, dq, px) for (n, dq), px in
                                                zip(trades, prices, strict=True)),
                                   slip, pen, eq, im_, mm_, target))

    phases = ["hedge", "unwind"] if p.delta_hedge_first else ["unwind"]
    for phase in phases:
        for _ in range(p.max_steps):
            if equity >= target or not any(q != 0.0 for q in st.positions.values()):
                break
            cands = candidates(phase)
            if not cands:
                break
            eq, im, mm_c, costs = evaluate(cands)
            tgt = np.array([target_of(a, b) for a, b in zip(im, mm_c, strict=True)])
            short_before = max(0.0, target - equity)
            short_after = np.maximum(0.0, tgt - eq)
            gain = short_before - short_after
            cost = np.array([c[1] + c[2] for c in costs])
            ok = (mm_c <= mm * (1 + 1e-12) + 1e-12) & (gain > 1e-12 * max(1.0, abs(target)))
            if not ok.any():
                if phase == "unwind":
                    # No trade reduces the shortfall by more than it costs: the account cannot
                    # be saved (its equity is gone). Close everything so that no risk is left.
                    live = [(n, -q) for n, q in st.positions.items() if q != 0.0]
                    e_all, i_all, m_all, c_all = evaluate([("close every position", live)])
                    if m_all[0] <= mm * (1 + 1e-12) + 1e-12:
                        apply("close every position (account cannot be restored)", live,
                              c_all[0], float(e_all[0]), float(i_all[0]), float(m_all[0]))
                    else:
                        plan.stuck = True
                break
            score = np.where(ok, gain / np.maximum(cost, 1e-12 * max(1.0, abs(target))), -np.inf)
            k = int(np.argmax(score))
            label, trades = cands[k]
            if phase == "hedge" or short_after[k] <= 0.0:
                trades, cost_k, eq_k, im_k, mm_k = _shrink(
                    trades, evaluate, target_of, p.bisection_iterations,
                    (costs[k], float(eq[k]), float(im[k]), float(mm_c[k])))
                if short_after[k] <= 0.0 or phase == "unwind":
                    apply(label, trades, cost_k, eq_k, im_k, mm_k)
                else:  # a hedge that does not restore health alone: keep it whole
                    apply(label, trades, costs[k], float(eq[k]), float(im[k]), float(mm_c[k]))
                break
            apply(label, trades, costs[k], float(eq[k]), float(im[k]), float(mm_c[k]))
    plan.final = _portfolio(base, st)
    plan._notional = notional
    return plan


@dataclass(frozen=True)
class _Figures:
    equity: float
    initial_margin: float
    maintenance_margin: float


def _figures(model: MarginModel, pf: Portfolio, market: MarketSnapshot) -> _Figures:
    r = model.margin_figures(pf, market)
    return _Figures(float(r.equity[0]), float(r.initial_margin[0]),
                    float(r.maintenance_margin[0]))


def base_underlying(positions: dict[str, float]) -> str:
    """Underlying of the largest position (the perpetual used for a delta hedge)."""
    name = max(positions, key=lambda n: abs(positions[n]))
    return parse_instrument(name).underlying


def _shrink(trades: list[tuple[str, float]], evaluate: object, target_of: object,
            iterations: int, best: tuple[tuple[list[float], float, float, float], float, float,
                                         float]) -> tuple[list[tuple[str, float]],
                                                          tuple[list[float], float, float, float],
                                                          float, float, float]:
    """Smallest multiple ``s`` in (0, 1] of ``trades`` that still restores health (bisection)."""
    ev = evaluate  # type: ignore[assignment]
    tg = target_of  # type: ignore[assignment]
    lo, hi = 0.0, 1.0
    cost, eq, im, mm = best
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        scaled = [(n, dq * mid) for n, dq in trades]
        e, i, m, c = ev([("", scaled)])  # type: ignore[operator]
        if e[0] >= tg(i[0], m[0]):  # type: ignore[operator]
            hi = mid
            cost, eq, im, mm = c[0], float(e[0]), float(i[0]), float(m[0])
        else:
            lo = mid
    return [(n, dq * hi) for n, dq in trades], cost, eq, im, mm
