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
from pmargin.liquidation._params import FrozenParams, load_params_file
from pmargin.liquidation.adl import socialised_loss_shares
from pmargin.liquidation.insurance_fund import InsuranceFund
from pmargin.liquidation.ledger import Ledger
from pmargin.liquidation.planner import PlannerParams, load_planner_params, plan_liquidation
from pmargin.market import MarketSnapshot
from pmargin.models.base import MarginModel
from pmargin.portfolio import Portfolio

__all__ = ["CascadeParams", "CascadeResult", "RoundStats", "load_cascade_params", "run_cascade",
           "split_isolated"]

MARKET_ACCOUNT = "external:market"


class CascadeParams(FrozenParams):
    """Parameters of the cascade (``cascade.toml``)."""

    schema_version: int = 1
    name: str = "default"
    source: str = ""
    assumptions: tuple[str, ...] = ()
    impact_k: float = 1.0
    depth_usd_per_pct: float = 20_000_000.0
    max_rounds: int = 15
    insurance_fund_usd: float = 250_000.0
    loss_mode: Literal["adl", "socialise"] = "adl"
    max_positions_per_step: int = 8


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
        bad = fund_used = adl = soc = unc = 0.0
        bankrupt: list[tuple[int, float]] = []
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
            after = model.margin(plan.final, mkt)
            delta_sold += (before_delta - after.greeks.get("delta", 0.0)) * mkt.index_price(
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
            diff = _dec(ledger, after.equity, ccy) - ledger.balance(names[i], ccy)
            if diff > 0:
                ledger.move(MARKET_ACCOUNT, names[i], diff, ccy, "rounding", f"round {rnd}")
            elif diff < 0:
                ledger.move(names[i], MARKET_ACCOUNT, -diff, ccy, "rounding", f"round {rnd}")
            if after.equity < 0:
                bankrupt.append((int(i), -after.equity))
        for i, deficit in bankrupt:
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
                if cp.loss_mode == "adl":
                    taken = _adl_allocate(rest, profits, eq_now, accounts)
                else:
                    taken, _ = socialised_loss_shares(rest, profits, ledger.quantum(ccy))
                total = Decimal(0)
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
                model.margin(accounts[i], mkt).equity))
        impact = -cp.impact_k * delta_sold / cp.depth_usd_per_pct / 100.0
        out.rounds.append(RoundStats(rnd, mkt.index_price(underlying), move, len(liq), stuck,
                                     notional, penalties, bad, fund_used, adl, soc, unc, impact))
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
    gross = np.array([sum(abs(p.quantity) for p in a.positions) for a in accounts], dtype=float)
    prof = np.array([float(p) for p in profits])
    base = np.maximum(equity - prof, 1e-12)
    score = np.where(prof > 0, (prof / base) * (gross / np.maximum(equity, 1e-12)), -np.inf)
    taken = [Decimal(0)] * len(profits)
    rest = loss
    for j in np.argsort(-score, kind="stable"):
        if rest <= 0 or not np.isfinite(score[j]):
            break
        amt = min(profits[j], rest)
        taken[int(j)] = amt
        rest -= amt
    return taken
