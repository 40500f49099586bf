"""Liquidation cascade: shock a book, liquidate, let liquidations move the price, repeat.

Each round margins every account at the current price, plans a surgical liquidation for every
account below maintenance margin (:mod:`pmargin.liquidation.planner`), executes it (penalties to
the insurance fund, execution costs to the market), covers bankruptcies from the fund and then
by auto-deleveraging or socialised loss, and moves the index by
``-impact_k * net liquidated delta notional / depth`` per cent. It stops when no account is in
liquidation. Every cash flow is a double-entry :class:`~pmargin.liquidation.ledger.Ledger`
transfer in Decimal; the ledger balance of every account equals its model equity after each round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pmargin.book import Book
from pmargin.instruments import parse_instrument
from pmargin.liquidation._params import FrozenParams, load_params_file
from pmargin.liquidation.adl import socialised_loss_shares
from pmargin.liquidation.insurance_fund import InsuranceFund
from pmargin.liquidation.ledger import Ledger
from pmargin.liquidation.planner import PlannerParams, load_planner_params, plan_liquidation
from pmargin.market import MarketSnapshot
from pmargin.models.base import MarginModel
from pmargin.portfolio import Portfolio, Position

__all__ = ["CascadeParams", "CascadeResult", "RoundStats", "load_cascade_params", "run_cascade",
           "split_isolated"]

MARKET_ACCOUNT = "external:market"


class CascadeParams(FrozenParams):
    """Parameters of the cascade (``cascade.toml``)."""

    schema_version: int = 1
    name: str
    source: str
    assumptions: tuple[str, ...] = ()
    impact_k: float
    depth_usd_per_pct: float
    max_rounds: int
    insurance_fund_usd: float
    loss_mode: Literal["adl", "socialise"]
    max_positions_per_step: int


def load_cascade_params(path: str | Path | None = None) -> CascadeParams:
    """Load the cascade parameters (shipped ``cascade.toml`` or a user file)."""
    return load_params_file(CascadeParams, "cascade.toml", path)


@dataclass(frozen=True)
class RoundStats:
    """What happened in one round (USD at that round's index)."""

    round: int
    index: float
    move_from_start: float
    accounts_in_liquidation: int
    accounts_stuck: int
    liquidated_notional_usd: float
    penalties_usd: float
    bad_debt_usd: float
    insurance_fund_used_usd: float
    adl_usd: float
    socialised_usd: float
    uncovered_usd: float
    price_impact: float
    adl_position_usd: float = 0.0
    """Part of ``adl_usd`` taken by closing opposite positions at the bankruptcy price."""


@dataclass
class CascadeResult:
    """Outcome of a cascade simulation."""

    label: str
    model: str
    shock: float
    rounds: list[RoundStats] = field(default_factory=list)
    conservation_error: Decimal = Decimal(0)
    final_index: float = 0.0
    accounts: int = 0
    ledger_equity_max_error: float = 0.0
    stuck_accounts: set[str] = field(default_factory=set)
    final_move: float = 0.0

    def total(self, key: str) -> float:
        """Sum of a per-round figure over rounds."""
        return float(sum(getattr(r, key) for r in self.rounds))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (keys of ``pmargin stress --json``)."""
        return {
            "label": self.label,
            "model": self.model,
            "shock": self.shock,
            "accounts": self.accounts,
            "rounds": [r.__dict__ for r in self.rounds],
            "liquidated_notional_usd": self.total("liquidated_notional_usd"),
            "bad_debt_usd": self.total("bad_debt_usd"),
            "insurance_fund_used_usd": self.total("insurance_fund_used_usd"),
            "adl_usd": self.total("adl_usd"),
            "adl_position_usd": self.total("adl_position_usd"),
            "socialised_usd": self.total("socialised_usd"),
            "uncovered_usd": self.total("uncovered_usd"),
            "penalties_usd": self.total("penalties_usd"),
            "final_index": self.final_index,
            "final_move": self.final_move,
            "conservation_error": str(self.conservation_error),
            "ledger_equity_max_error": self.ledger_equity_max_error,
            "stuck_accounts": sorted(self.stuck_accounts),
        }


def split_isolated(portfolios: Sequence[Portfolio], market: MarketSnapshot,
                   model: MarginModel) -> list[Portfolio]:
    """Split each account into one sub-account per position (isolated margin).

    Each position's sub-account receives the account's collateral in proportion to that
    position's initial margin at ``market`` (all collateral is allocated; none is shared).
    """
    out: list[Portfolio] = []
    for pf in portfolios:
        if len(pf.positions) <= 1:
            out.append(pf)
            continue
        res = model.margin(pf, market)
        im = res.by_position["initial_margin"].to_numpy()
        w = im / im.sum() if im.sum() > 0 else np.full(im.size, 1.0 / im.size)
        names = list(res.by_position.index)
        for k, pos in enumerate(pf.positions):
            share = float(w[names.index(pos.instrument.name)])
            coll = {c: v * share for c, v in pf.collateral.items()}
            out.append(Portfolio(pf.margin_currency, (pos,), coll, (),
                                 f"{pf.account_id}/{k}"))
    return out


def _dec(ledger: Ledger, x: float, ccy: str) -> Decimal:
    return ledger.quantize(Decimal(repr(float(x))), ccy)


def run_cascade(
    portfolios: Sequence[Portfolio],
    market: MarketSnapshot,
    model: MarginModel,
    shock: float,
    underlying: str = "BTC",
    params: CascadeParams | None = None,
    planner: PlannerParams | None = None,
    label: str = "",
) -> CascadeResult:
    """Simulate a liquidation cascade after a relative shock of ``underlying``.

    Parameters
    ----------
    portfolios : sequence of Portfolio
        Accounts of one margin currency.
    market : MarketSnapshot
        Market before the shock.
    model : MarginModel
        Margin model that decides who is liquidated.
    shock : float
        Initial relative move of the underlying (-0.3 = -30 %).
    underlying : str
        Coin shocked.
    params : CascadeParams, optional
        Cascade parameters.
    planner : PlannerParams, optional
        Planner parameters (its ``max_positions_per_step`` is overridden by the cascade's).
    label : str
        Name of the run (e.g. the margin mode).

    Returns
    -------
    CascadeResult
        Per-round statistics, totals and the ledger's conservation error (exactly 0).
    """
    cp = params or load_cascade_params()
    pp = (planner or load_planner_params()).model_copy(
        update={"max_positions_per_step": cp.max_positions_per_step})
    accounts = list(portfolios)
    if not accounts:
        return CascadeResult(label, model.name, shock)
    ccy = accounts[0].margin_currency
    ledger = Ledger()
    fund = InsuranceFund(ledger, ccy)
    idx0 = market.index_price(underlying)

    def usd_rate(m: MarketSnapshot) -> float:
        return m.collateral_price(ccy)

    fund.deposit(_dec(ledger, cp.insurance_fund_usd / usd_rate(market), ccy))
    start = model.compute(Book.from_portfolios(accounts), market)
    eq0 = start.equity.copy()
    names = [f"account:{a.account_id}" for a in accounts]
    for name, e in zip(names, eq0, strict=True):
        d = _dec(ledger, e, ccy)
        if d != 0:
            ledger.opening(name, ccy, d)
    out = CascadeResult(label, model.name, shock, accounts=len(accounts))
    move = shock
    max_err = 0.0
    for rnd in range(cp.max_rounds):
        mkt = market.bumped({underlying: move})
        rate = usd_rate(mkt)
        res = model.compute(Book.from_portfolios(accounts), mkt)
        # settle the round's market P&L against the rest of the market
        for i, name in enumerate(names):
            diff = _dec(ledger, res.equity[i], ccy) - ledger.balance(name, ccy)
            if diff > 0:
                ledger.move(MARKET_ACCOUNT, name, diff, ccy, "market P&L", f"round {rnd}")
            elif diff < 0:
                ledger.move(name, MARKET_ACCOUNT, -diff, ccy, "market P&L", f"round {rnd}")
        has_pos = np.array([any(p.quantity != 0 for p in a.positions) for a in accounts])
        liq = np.flatnonzero((res.equity < res.maintenance_margin) & has_pos)
        notional = 0.0
        penalties = 0.0
        delta_sold = 0.0
        bad = fund_used = adl = soc = unc = adl_pos = 0.0
        bankrupt: list[tuple[int, float, str, float]] = []
        executed = 0
        stuck = 0
        for li in liq:
            i = int(li)
            pf = accounts[i]
            plan = plan_liquidation(pf, mkt, model, pp)
            if not plan.steps or plan.final is None:
                stuck += 1
                out.stuck_accounts.add(pf.account_id)
                continue
            executed += 1
            before_delta = res.greeks["delta"][i]
            accounts[i] = plan.final
            after = model.margin_figures(plan.final, mkt)
            delta_sold += (before_delta - float(after.greeks["delta"][0])) * mkt.index_price(
                underlying)
            notional += plan.liquidated_notional_usd
            pen = _dec(ledger, plan.total_penalty, ccy)
            slip = _dec(ledger, plan.total_slippage, ccy)
            if pen > 0:
                fund.receive_penalty(names[i], pen, ref=f"round {rnd}")
                penalties += float(pen) * rate
            if slip > 0:
                ledger.move(names[i], MARKET_ACCOUNT, slip, ccy, "liquidation execution cost",
                            f"round {rnd}")
            # align the ledger with the model's equity after the plan (rounding of costs)
            after_equity = float(after.equity[0])
            diff = _dec(ledger, after_equity, ccy) - ledger.balance(names[i], ccy)
            if diff > 0:
                ledger.move(MARKET_ACCOUNT, names[i], diff, ccy, "rounding", f"round {rnd}")
            elif diff < 0:
                ledger.move(names[i], MARKET_ACCOUNT, -diff, ccy, "rounding", f"round {rnd}")
            if after_equity < 0:
                name_x, trade_x = _largest_trade(plan, mkt)
                bankrupt.append((int(i), -after_equity, name_x, trade_x))
        for i, deficit, name_x, trade_x in bankrupt:
            d = _dec(ledger, deficit, ccy)
            bad += float(d) * rate
            cov = fund.cover_bankruptcy(names[i], d, ref=f"round {rnd}")
            fund_used += float(cov.covered) * rate
            rest = cov.uncovered
            if rest > 0:
                eq_now = np.array([float(ledger.balance(n, ccy)) for n in names])
                profit = np.maximum(eq_now - eq0, 0.0)
                profit[i] = 0.0
                profits = [_dec(ledger, x, ccy) if x > 0 else Decimal(0) for x in profit]
                total = Decimal(0)
                if cp.loss_mode == "adl":
                    # close the bankrupt position against the opposite side, at the bankruptcy price
                    closes = _adl_position_closes(rest, profits, eq_now, accounts, i, name_x,
                                                  trade_x, ledger.quantum(ccy))
                    for j, dq, amt in closes:
                        ledger.move(names[j], names[i], amt, ccy, "adl", f"round {rnd}")
                        accounts[j] = _reduce(accounts[j], name_x, dq)
                        _add_cash(accounts, j, float(ledger.balance(names[j], ccy)) - float(
                            model.margin_figures(accounts[j], mkt).equity[0]))
                        profits[j] -= amt
                        total += amt
                        adl_pos += float(amt) * rate
                    # anything the opposite side could not absorb: ADL ranking, in cash
                    taken = _adl_allocate(rest - total, profits, eq_now, accounts)
                else:
                    taken, _ = socialised_loss_shares(rest, profits, ledger.quantum(ccy))
                for j, amt in enumerate(taken):
                    if amt > 0:
                        ledger.move(names[j], names[i], amt, ccy, cp.loss_mode, f"round {rnd}")
                        _add_cash(accounts, j, -float(amt))
                        total += amt
                if cp.loss_mode == "adl":
                    adl += float(total) * rate
                else:
                    soc += float(total) * rate
                unc += float(rest - total) * rate
            # the bankrupt account's cash now holds what the fund and the others paid in
            _add_cash(accounts, i, float(ledger.balance(names[i], ccy)) - float(
                model.margin_figures(accounts[i], mkt).equity[0]))
        impact = -cp.impact_k * delta_sold / cp.depth_usd_per_pct / 100.0
        out.rounds.append(RoundStats(rnd, mkt.index_price(underlying), move, len(liq), stuck,
                                     notional, penalties, bad, fund_used, adl, soc, unc, impact,
                                     adl_pos))
        if executed == 0:
            break
        move = (1.0 + move) * (1.0 + impact) - 1.0
    final_mkt = market.bumped({underlying: move})
    final = model.compute(Book.from_portfolios(accounts), final_mkt)
    for i, name in enumerate(names):
        max_err = max(max_err, abs(float(ledger.balance(name, ccy)) - float(final.equity[i])))
    out.final_index = idx0 * (1.0 + move)
    out.final_move = move
    out.conservation_error = ledger.conservation_error(ccy)
    out.ledger_equity_max_error = max_err
    return out


def _largest_trade(plan: Any, market: MarketSnapshot) -> tuple[str, float]:
    """Instrument and signed quantity of the plan's largest liquidation trade (by notional)."""
    best, size, qty = "", -1.0, 0.0
    for step in plan.steps:
        for name, dq, _ in step.trades:
            inst = parse_instrument(name)
            notional = abs(dq) * market.index_price(inst.underlying)
            if notional > size:
                best, size, qty = name, notional, dq
    return best, qty


def _reduce(pf: Portfolio, name: str, dq: float) -> Portfolio:
    """Portfolio with ``dq`` added to its position in ``name`` (rows of it scaled pro rata)."""
    net = pf.net_positions().get(name, 0.0)
    if net == 0.0:
        return pf
    scale = (net + dq) / net
    rows = tuple(Position(p.instrument, p.quantity * scale, p.avg_price, p.isolated_collateral)
                 if p.instrument.name == name else p for p in pf.positions)
    return pf.with_positions(rows)


def _adl_position_closes(loss: Decimal, profits: list[Decimal], equity: np.ndarray,
                         accounts: list[Portfolio], bankrupt: int, name: str, trade: float,
                         quantum: Decimal) -> list[tuple[int, float, Decimal]]:
    """BitMEX-style ADL of one position: close it against profitable opposite holders.

    The bankrupt account's position in ``name`` was closed by ``trade``; accounts holding the
    opposite side (the same sign as ``trade``) are ranked (profit % x leverage) and forced to
    close part of their position at the bankruptcy price, i.e. each pays ``loss / Q`` per unit
    closed, at most its profit. Returns ``(account, signed quantity closed, payment)``.
    """
    if not name or trade == 0.0 or loss <= 0:
        return []
    held = np.array([a.net_positions().get(name, 0.0) for a in accounts])
    side = np.sign(trade)
    eligible = (np.sign(held) == side) & (np.arange(len(accounts)) != bankrupt) & np.array(
        [p > 0 for p in profits])
    if not eligible.any():
        return []
    q_total = float(min(abs(trade), float(np.abs(held[eligible]).sum())))
    per_unit = loss / Decimal(repr(q_total))
    order = [int(j) for j in _adl_order(profits, equity, accounts) if eligible[int(j)]]
    out: list[tuple[int, float, Decimal]] = []
    left_q = q_total
    left = loss
    for j in order:
        if left_q <= 0 or left <= 0:
            break
        q = float(min(abs(float(held[j])), left_q))
        pay = min(profits[j], left, (per_unit * Decimal(repr(q))).quantize(quantum))
        if pay <= 0:
            continue
        out.append((j, float(-side * q), pay))
        left_q -= q
        left -= pay
    return out


def _adl_order(profits: list[Decimal], equity: np.ndarray, accounts: list[Portfolio]
               ) -> np.ndarray:
    """Accounts by ADL score, highest first (see :func:`_adl_allocate`)."""
    gross = np.array([sum(abs(p.quantity) for p in a.positions) for a in accounts], dtype=float)
    prof = np.array([float(p) for p in profits])
    base = np.maximum(equity - prof, 1e-12)
    score = np.where(prof > 0, (prof / base) * (gross / np.maximum(equity, 1e-12)), -np.inf)
    return np.argsort(-score, kind="stable")


def _add_cash(accounts: list[Portfolio], i: int, amount: float) -> None:
    pf = accounts[i]
    coll = dict(pf.collateral)
    coll[pf.margin_currency] = coll.get(pf.margin_currency, 0.0) + amount
    accounts[i] = pf.with_collateral(coll)


def _adl_allocate(loss: Decimal, profits: list[Decimal], equity: np.ndarray,
                  accounts: list[Portfolio]) -> list[Decimal]:
    """Take ``loss`` from profitable accounts in ADL order (profit % x leverage, highest first).

    Profit % is the account's gain over its starting equity; leverage is its gross position
    size over its equity (BitMEX's ranking applied to whole portfolios). Each account gives at
    most its profit.
    """
    taken = [Decimal(0)] * len(profits)
    rest = loss
    for j in _adl_order(profits, equity, accounts):
        if rest <= 0 or profits[j] <= 0:
            break
        amt = min(profits[j], rest)
        taken[int(j)] = amt
        rest -= amt
    return taken
