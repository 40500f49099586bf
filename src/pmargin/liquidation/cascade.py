"""Liquidation cascade: shock a book, liquidate, let liquidations move the price, repeat.

The book is a :class:`~pmargin.book.Book`. Each round margins every account at the current price
in one book computation, plans the liquidation of *every* account below maintenance margin in
one vectorised pass (:func:`pmargin.liquidation.planner.plan_book`), executes it (penalties to
the insurance fund, execution costs to the market), covers bankruptcies from the fund and then
by auto-deleveraging (:mod:`pmargin.liquidation.adl`: the bankrupt account's largest position
closed against profitable opposite holders at the bankruptcy price, then cash in ADL order) or
socialised loss, and moves the index by ``-impact_k * net liquidated delta notional / depth``
per cent. It stops when no account is in liquidation. Every cash flow is a double-entry
:class:`~pmargin.liquidation.ledger.Ledger` transfer in Decimal; the ledger balance of every
account equals its model equity after each round.

The ledger is lazy (:class:`_Accounts`): an account enters it the first time money moves for
it (liquidated, bankrupt, or paying ADL or a socialised loss), with an opening balance equal to
its equity at the round's settlement, which is exactly the balance the eager ledger (every
account opened at the start and settled every round against the market) would give it then. An
account no money moved for keeps its equity as its balance (the round's market P&L settled
against the rest of the market) without a posting: the balances, the conservation error (exactly
0) and the ledger-equity check are those of the eager ledger, at the cost of the accounts
touched instead of the whole book per round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from pmargin._typing import FloatArray, IntArray
from pmargin.book import Book
from pmargin.liquidation._params import FrozenParams, load_params_file
from pmargin.liquidation.adl import (
    adl_cash_shares,
    auto_deleverage,
    rank_accounts,
    socialised_loss_shares,
)
from pmargin.liquidation.insurance_fund import InsuranceFund
from pmargin.liquidation.ledger import Ledger
from pmargin.liquidation.planner import PlannerParams, load_planner_params, plan_book
from pmargin.market import MarketSnapshot
from pmargin.models.base import MarginModel
from pmargin.portfolio import Portfolio

__all__ = ["CascadeParams", "CascadeResult", "RoundStats", "load_cascade_params", "run_cascade"]

MARKET_ACCOUNT = "external:market"


class CascadeParams(FrozenParams):
    """Parameters of the cascade (``cascade.toml``)."""

    schema_version: int = 1
    name: str = "default"
    source: str = ""
    assumptions: tuple[str, ...] = ()
    impact_k: float
    depth_usd_per_pct: float
    max_rounds: int
    insurance_fund_usd: float
    loss_mode: Literal["adl", "socialise"]
    max_positions_per_step: int
    max_round_move: float
    """Largest index move one round of liquidations can cause (fraction of the price)."""


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
    final_book: Book | None = None
    """The accounts at the end of the cascade."""

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


def _dec(ledger: Ledger, x: float, ccy: str) -> Decimal:
    return ledger.quantize(Decimal(repr(float(x))), ccy)


def _post(ledger: Ledger, payer: str, payee: str, amount: Decimal, ccy: str, reason: str,
          ref: str) -> None:
    """Move a signed amount: positive from payer to payee, negative the other way."""
    if amount > 0:
        ledger.move(payer, payee, amount, ccy, reason, ref)
    elif amount < 0:
        ledger.move(payee, payer, -amount, ccy, reason, ref)


def _with_margin_cash(book: Book) -> Book:
    """The book with a collateral column for its margin currency (added at zero if missing)."""
    if book.margin_currency in book.collateral_currencies:
        return book
    coll = np.hstack([book.collateral, np.zeros((book.n_accounts, 1))])
    return Book(book.margin_currency, book.account_ids, book.instruments, book.positions,
                book.entry_notional, [*book.collateral_currencies, book.margin_currency], coll,
                book.orders)


def _replace_rows(book: Book, rows: IntArray, sub: Book) -> Book:
    """The book with ``rows`` replaced by the accounts of ``sub`` (columns extended if needed)."""
    n_i = sub.n_instruments
    pos, ent = book.positions, book.entry_notional
    if n_i > book.n_instruments:
        pad = sp.csr_matrix((book.n_accounts, n_i - book.n_instruments))
        pos = sp.csr_matrix(sp.hstack([pos, pad]))
        ent = sp.csr_matrix(sp.hstack([ent, pad]))
    keep = np.ones(book.n_accounts, dtype=bool)
    keep[rows] = False
    kept = np.flatnonzero(keep)
    order = np.concatenate([kept, rows])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    new_pos = sp.csr_matrix(sp.vstack([pos[kept], sub.positions]))[inverse]
    new_ent = sp.csr_matrix(sp.vstack([ent[kept], sub.entry_notional]))[inverse]
    coll = book.collateral.copy()
    k = [sub.collateral_currencies.index(c) for c in book.collateral_currencies]
    coll[rows] = sub.collateral[:, k]
    return Book(book.margin_currency, book.account_ids, sub.instruments, sp.csr_matrix(new_pos),
                sp.csr_matrix(new_ent), book.collateral_currencies, coll, book.orders)


def _copy(book: Book) -> Book:
    """A copy of the book whose arrays the cascade may change in place."""
    return Book(book.margin_currency, list(book.account_ids), list(book.instruments),
                sp.csr_matrix(book.positions, copy=True),
                sp.csr_matrix(book.entry_notional, copy=True), list(book.collateral_currencies),
                book.collateral.copy(), book.orders)


def _set_quantity(book: Book, row: int, col: int, qty: float) -> None:
    """Set the position of ``row`` in ``col`` to ``qty`` in place (entry scaled pro rata).

    The cell must be stored (the account holds the position); a zero is left explicit until
    the caller eliminates zeros.
    """
    for m, scale in ((book.positions, None), (book.entry_notional, True)):
        lo, hi = m.indptr[row], m.indptr[row + 1]
        hit = np.flatnonzero(m.indices[lo:hi] == col)
        if hit.size == 0:
            continue
        k = lo + int(hit[0])
        if scale is None:
            old = float(m.data[k])
            m.data[k] = qty
        elif old != 0.0:
            m.data[k] = m.data[k] * qty / old


def _ledger_floats(ledger: Ledger, values: FloatArray, ccy: str) -> FloatArray:
    """``float(_dec(ledger, x, ccy))`` of every value, converting only where it can differ.

    ``repr`` of a float has at most 17 significant digits: for ``|x| >= 10**(17 - k)`` (quantum
    ``10**-k``) its last digit is at or above the quantum, so ``x`` is on the grid and the
    Decimal is ``x`` exactly; only smaller non-zero values are converted.
    """
    out = np.array(values, dtype=np.float64, copy=True)
    k = -int(ledger.quantum(ccy).normalize().as_tuple().exponent)
    idx = np.flatnonzero((np.abs(out) < 10.0 ** (17 - k)) & (out != 0.0))
    for j in idx.tolist():
        out[j] = float(_dec(ledger, float(out[j]), ccy))
    return out


class _Accounts:
    """The accounts of a cascade in a lazy ledger (module doc).

    ``settled`` is every account's model equity at the last settlement; ``opened`` marks the
    accounts in the ledger, whose balance is their own.
    """

    def __init__(self, ledger: Ledger, names: list[str], ccy: str) -> None:
        self.ledger, self.names, self.ccy = ledger, names, ccy
        self.settled: FloatArray | None = None
        self.opened = np.zeros(len(names), dtype=bool)

    def touch(self, rows: Any) -> None:
        """Open the accounts of ``rows`` not in the ledger yet at their settled balance.

        Balances add up, so an account may be touched after a posting to it (before any read).
        """
        if self.settled is None:
            raise RuntimeError("an account was touched before the first settlement")
        for i in np.unique(np.asarray(rows, dtype=np.int64)).tolist():
            if not self.opened[i]:
                self.opened[i] = True
                d = _dec(self.ledger, float(self.settled[i]), self.ccy)
                if d != 0:
                    self.ledger.opening(self.names[i], self.ccy, d)

    def settle(self, equity: FloatArray, ref: str) -> None:
        """Settle the round's market P&L: the opened accounts by posting, the others in place."""
        self.settled = np.array(equity, dtype=np.float64, copy=True)
        ledger, ccy = self.ledger, self.ccy
        for i in np.flatnonzero(self.opened).tolist():
            name = self.names[i]
            diff = _dec(ledger, equity[i], ccy) - ledger.balance(name, ccy)
            _post(ledger, MARKET_ACCOUNT, name, diff, ccy, "market P&L", ref)

    def balances(self) -> FloatArray:
        """Every account's ledger balance as a float (the eager ledger's figures)."""
        if self.settled is None:
            raise RuntimeError("no settlement yet")
        out = _ledger_floats(self.ledger, self.settled, self.ccy)
        for i in np.flatnonzero(self.opened).tolist():
            out[i] = float(self.ledger.balance(self.names[i], self.ccy))
        return out


class _LazyDecimals(Sequence[Decimal]):
    """Decimal view of a float array, converted on access (only the accounts walked)."""

    def __init__(self, ledger: Ledger, values: FloatArray, ccy: str) -> None:
        self.ledger, self.values, self.ccy = ledger, values, ccy

    def __len__(self) -> int:
        return int(self.values.size)

    def __getitem__(self, j: int) -> Decimal:  # type: ignore[override]
        x = float(self.values[j])
        return _dec(self.ledger, x, self.ccy) if x > 0 else Decimal(0)


def run_cascade(
    portfolios: Sequence[Portfolio] | Book,
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
    portfolios : Book or sequence of Portfolio
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
    if isinstance(portfolios, Book):
        book = portfolios
    else:
        if not portfolios:
            return CascadeResult(label, model.name, shock)
        book = Book.from_portfolios(list(portfolios))
    if book.n_accounts == 0:
        return CascadeResult(label, model.name, shock)
    book = _with_margin_cash(_copy(book))
    ccy = book.margin_currency
    km = book.collateral_currencies.index(ccy)
    ledger = Ledger()
    fund = InsuranceFund(ledger, ccy)
    idx0 = market.index_price(underlying)
    n = book.n_accounts
    fund.deposit(_dec(ledger, cp.insurance_fund_usd / market.collateral_price(ccy), ccy))
    # equity before the shock: only ADL needs it (profits since the start), so it is computed
    # when a round first needs it, on the opening book (rounds replace the book, never change it)
    eq0 = _OpeningEquity(model, book, market)
    names = [f"account:{a}" for a in book.account_ids]
    accts = _Accounts(ledger, names, ccy)
    out = CascadeResult(label, model.name, shock, accounts=n)
    move = shock
    for rnd in range(cp.max_rounds):
        ref = f"round {rnd}"
        mkt = market.bumped({underlying: move})
        rate = mkt.collateral_price(ccy)
        prep = model.prepare(book, mkt)
        res = model.evaluate(prep, book)
        # settle the round's market P&L against the rest of the market
        accts.settle(res.equity, ref)
        has_pos = np.diff(book.positions.indptr) > 0
        liq = np.flatnonzero((res.equity < res.maintenance_margin) & has_pos)
        stats = _Round()
        if liq.size:
            n_cols = book.n_instruments
            book = _liquidate(book, liq, mkt, model, pp, res.greeks["delta"], ledger, fund,
                              accts, underlying, rate, ref, stats, out, prep)
            if book.n_instruments != n_cols:  # a delta hedge added a perpetual column
                prep = model.prepare(book, mkt)
            bankrupt = [(int(i), d) for i, d in stats.bankrupt]
            if bankrupt:
                book = _cover_bankruptcies(book, bankrupt, mkt, model, prep, cp, ledger, fund,
                                           accts, eq0, km, rate, ref, stats)
        impact = -cp.impact_k * stats.delta_sold / cp.depth_usd_per_pct / 100.0
        impact = float(np.clip(impact, -cp.max_round_move, cp.max_round_move))
        out.rounds.append(RoundStats(rnd, mkt.index_price(underlying), move, int(liq.size),
                                     stats.stuck, stats.notional, stats.penalties, stats.bad,
                                     stats.fund_used, stats.adl, stats.soc, stats.unc, impact,
                                     stats.adl_pos))
        if stats.executed == 0:
            break
        move = (1.0 + move) * (1.0 + impact) - 1.0
    if out.rounds and liq.size == 0 and out.rounds[-1].move_from_start == move:
        final = res  # the last round changed nothing: its margin is the final one
    else:
        final = model.compute(book, market.bumped({underlying: move}))
        if not out.rounds or out.rounds[-1].move_from_start != move:
            # max_rounds ended the cascade after a round that moved the index: settle that move
            # too, so that the ledger holds the final equity (it missed the last impact's P&L)
            accts.settle(final.equity, "final")
    bal = accts.balances()
    out.final_index = idx0 * (1.0 + move)
    out.final_move = move
    out.conservation_error = ledger.conservation_error(ccy)
    out.ledger_equity_max_error = float(np.max(np.abs(bal - final.equity))) if n else 0.0
    out.final_book = book
    return out


class _OpeningEquity:
    """Model equity of the opening book at the opening market, computed on first use."""

    def __init__(self, model: MarginModel, book: Book, market: MarketSnapshot) -> None:
        self.model, self.book, self.market = model, book, market
        self.value: FloatArray | None = None

    def __call__(self) -> FloatArray:
        if self.value is None:
            self.value = np.array(self.model.compute(self.book, self.market).equity, copy=True)
        return self.value


@dataclass
class _Round:
    """Running figures of one round (USD)."""

    notional: float = 0.0
    penalties: float = 0.0
    delta_sold: float = 0.0
    bad: float = 0.0
    fund_used: float = 0.0
    adl: float = 0.0
    soc: float = 0.0
    unc: float = 0.0
    adl_pos: float = 0.0
    executed: int = 0
    stuck: int = 0
    bankrupt: list[tuple[int, float]] = field(default_factory=list)
    plan_trades: dict[int, tuple[int, float]] = field(default_factory=dict)


def _liquidate(book: Book, liq: IntArray, mkt: MarketSnapshot, model: MarginModel,
               pp: PlannerParams, delta_before: FloatArray, ledger: Ledger, fund: InsuranceFund,
               accts: _Accounts, underlying: str, rate: float, ref: str, stats: _Round,
               out: CascadeResult, prep: Any) -> Book:
    """Plan and execute every account in ``liq`` at once; post penalties and costs."""
    ccy = book.margin_currency
    names = accts.names
    bp = plan_book(book.subset(liq), mkt, model, pp, prepared=prep)
    executed = bp.executed
    for i in liq[~executed]:
        out.stuck_accounts.add(book.account_ids[int(i)])
    stats.stuck = int((~executed).sum())
    stats.executed = int(executed.sum())
    rows = liq[executed]
    k_exec = np.flatnonzero(executed)
    accts.touch(rows)
    book = _replace_rows(book, rows, bp.book.subset(k_exec))
    index_cols = np.array([mkt.index_price(inst.underlying) for inst in bp.book.instruments])
    stats.delta_sold = float(np.sum(delta_before[rows] - bp.delta[k_exec])) * mkt.index_price(
        underlying)
    stats.notional = float(bp.notional_usd[k_exec].sum())
    big_col, big_qty = bp.largest_trades(index_cols)
    for i, k in zip(rows.tolist(), k_exec.tolist(), strict=True):
        name = names[i]
        pen = _dec(ledger, bp.penalty[k], ccy)
        slip = _dec(ledger, bp.slippage[k], ccy)
        if pen > 0:
            fund.receive_penalty(name, pen, ref=ref)
            stats.penalties += float(pen) * rate
        if slip > 0:
            ledger.move(name, MARKET_ACCOUNT, slip, ccy, "liquidation execution cost", ref)
        # align the ledger with the model's equity after the plan (rounding of costs)
        after = float(bp.equity[k])
        diff = _dec(ledger, after, ccy) - ledger.balance(name, ccy)
        _post(ledger, MARKET_ACCOUNT, name, diff, ccy, "rounding", ref)
        if after < 0:
            stats.bankrupt.append((i, -after))
            stats.plan_trades[i] = (int(big_col[k]), float(big_qty[k]))
    return book


def _cover_bankruptcies(book: Book, bankrupt: list[tuple[int, float]], mkt: MarketSnapshot,
                        model: MarginModel, prep: Any, cp: CascadeParams, ledger: Ledger,
                        fund: InsuranceFund, accts: _Accounts, opening: _OpeningEquity, km: int,
                        rate: float, ref: str, stats: _Round) -> Book:
    """Insurance fund first, then ADL (positions, then cash in ADL order) or socialised loss."""
    ccy = book.margin_currency
    names = accts.names
    quantum = ledger.quantum(ccy)
    eq_now: FloatArray | None = None
    gross: FloatArray | None = None
    closed: set[int] = set()
    held = _Holdings(book)
    for i, deficit in bankrupt:
        d = _dec(ledger, deficit, ccy)
        stats.bad += float(d) * rate
        cov = fund.cover_bankruptcy(names[i], d, ref=ref)
        stats.fund_used += float(cov.covered) * rate
        rest = cov.uncovered
        if rest > 0:
            if eq_now is None or gross is None:
                eq_now = accts.balances()
                gross = _gross_value(book, mkt)
            eq0 = opening()
            profit = np.maximum(eq_now - eq0, 0.0)
            profit[i] = 0.0
            total = Decimal(0)
            if cp.loss_mode == "adl":
                col, trade = stats.plan_trades.get(i, (-1, 0.0))
                paid = _adl_close_positions(held, ledger, rest, profit, eq_now, eq0, gross, i,
                                            col, trade, names, ref)
                accts.touch(list(paid))  # they were settled this round: balance = their equity
                for j, amount in paid.items():
                    profit[j] -= float(amount)
                    eq_now[j] -= float(amount)
                    total += amount
                    closed.add(j)
                stats.adl_pos += float(total) * rate
                winners = np.flatnonzero(profit > 0)
                ranking = rank_accounts(np.zeros(winners.size), eq_now[winners], eq0[winners],
                                        gross[winners])
                local, _ = adl_cash_shares(rest - total,
                                           _LazyDecimals(ledger, profit[winners], ccy),
                                           ranking.order())
                taken = {int(winners[j]): a for j, a in local.items()}
            else:
                winners = np.flatnonzero(profit > 0)
                shares, _ = socialised_loss_shares(
                    rest, [_dec(ledger, float(profit[j]), ccy) for j in winners], quantum)
                taken = {int(j): a for j, a in zip(winners, shares, strict=True) if a > 0}
            coll = book.collateral
            accts.touch(list(taken))
            for j, amt in taken.items():
                ledger.move(names[j], names[i], amt, ccy, cp.loss_mode, ref)
                coll[j, km] -= float(amt)
                eq_now[j] -= float(amt)
                total += amt
            if cp.loss_mode == "adl":
                stats.adl += float(total) * rate
            else:
                stats.soc += float(total) * rate
            stats.unc += float(rest - total) * rate
            eq_now[i] = float(ledger.balance(names[i], ccy))
        # the bankrupt account's cash now holds what the fund and the others paid in
        book.collateral[i, km] += float(ledger.balance(names[i], ccy)) + deficit
    if closed:
        # the value of the positions closed by ADL becomes cash: model equity = ledger balance
        changed = np.array(sorted(closed), dtype=np.int64)
        sub = book.subset(changed)
        sub.positions.eliminate_zeros()
        model_eq = model.evaluate(prep, sub).equity
        bal = np.array([float(ledger.balance(names[j], ccy)) for j in changed])
        book.collateral[changed, km] += bal - model_eq
        book.positions.eliminate_zeros()
    return book


def _gross_value(book: Book, mkt: MarketSnapshot) -> FloatArray:
    """Gross notional of each account in its margin currency (sum of |q| x index)."""
    index = np.array([mkt.index_price(inst.underlying) for inst in book.instruments])
    gross = abs(book.positions) @ index
    return np.asarray(gross, dtype=np.float64) / mkt.collateral_price(book.margin_currency)


class _Holdings:
    """Positions of a book by column (dense per column, cached), changed in place by ADL."""

    def __init__(self, book: Book) -> None:
        self.book = book
        self.csc = sp.csc_matrix(book.positions)
        self.columns: dict[int, FloatArray] = {}

    def column(self, col: int) -> FloatArray:
        """Signed position of every account in ``col``."""
        if col not in self.columns:
            self.columns[col] = np.asarray(self.csc[:, col].toarray(), dtype=np.float64).ravel()
        return self.columns[col]

    def set(self, row: int, col: int, qty: float) -> None:
        """Set one position (the book's matrices and the cache)."""
        _set_quantity(self.book, row, col, qty)
        self.column(col)[row] = qty


def _adl_close_positions(held_by: _Holdings, ledger: Ledger, loss: Decimal, profit: FloatArray,
                         equity: FloatArray, start_equity: FloatArray, gross: FloatArray,
                         bankrupt: int, col: int, trade: float, names: list[str], ref: str
                         ) -> dict[int, Decimal]:
    """Close the bankrupt position against profitable opposite holders (:mod:`adl`).

    The bankrupt account's position in column ``col`` was closed by ``trade``; the accounts
    holding the opposite side (the sign of ``trade``) are ranked by
    :func:`~pmargin.liquidation.adl.rank_accounts` (``gross`` = their gross notional) and
    closed at the bankruptcy price, i.e. each pays ``loss / Q`` per unit closed (``Q`` the
    quantity they can absorb), at most its profit
    (:func:`~pmargin.liquidation.adl.auto_deleverage` with ``max_cash``). Their positions are
    reduced in place (``held_by`` and its book); returns what each paid.
    """
    if col < 0 or trade == 0.0 or loss <= 0:
        return {}
    ccy = held_by.book.margin_currency
    held = held_by.column(col).copy()
    side = np.sign(trade)
    eligible = (np.sign(held) == side) & (profit > 0)
    eligible[bankrupt] = False
    cand = np.flatnonzero(eligible)
    if cand.size == 0:
        return {}
    q_total = min(abs(trade), float(np.abs(held[cand]).sum()))
    per_unit = loss / Decimal(repr(q_total))
    ranking = rank_accounts(held[cand], equity[cand], start_equity[cand], gross[cand])
    # the bankrupt account's closed position had the sign opposite to its closing trade
    quantity = Decimal(repr(q_total)) * (-1 if trade > 0 else 1)
    settled = Decimal(0)
    bankruptcy_price = settled + (per_unit if quantity > 0 else -per_unit)
    res = auto_deleverage(
        ledger, bankrupt_account=names[bankrupt], quantity=quantity,
        bankruptcy_price=bankruptcy_price, currency=ccy,
        accounts=[names[j] for j in cand], positions=[Decimal(repr(float(held[j]))) for j in cand],
        mark_value=np.zeros(cand.size), entry_value=np.zeros(cand.size),
        equity=equity[cand], settled_price=settled, ranking=ranking,
        max_cash=[_dec(ledger, float(profit[j]), ccy) for j in cand], ref=ref)
    paid: dict[int, Decimal] = {}
    for fill in res.fills:
        j = int(cand[fill.candidate])
        held_by.set(j, col, float(held[j]) + float(fill.quantity))
        paid[j] = -fill.cash
    return paid
