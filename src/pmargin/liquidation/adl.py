r"""Auto-deleveraging (ADL) and socialised loss.

When a bankrupt position cannot be closed in the market and the insurance fund cannot absorb the
loss, exchanges either close it against profitable opposite positions (ADL, BitMEX and the many
venues that copied its ranking) or spread the loss over the winners (socialised loss, Deribit's
and Crypto.com's rule: pro rata to profits).

Currently implemented
---------------------
* BitMEX ADL ranking, vectorised over candidate accounts (:func:`adl_scores`,
  :func:`rank_adl`): :math:`\text{PnL\%} \times L` for winners, :math:`\text{PnL\%} / L`
  for losers, longs and shorts queued separately.
* :func:`auto_deleverage`: close a bankrupt position against the opposite queue at the
  bankruptcy price, with the cash flows posted to the ledger.
* :func:`socialised_loss_shares` and :func:`socialise_loss`: pro-rata loss allocation in Decimal,
  exact sum (largest-remainder residue rule), capped at each profit, the excess reported as
  unallocated bad debt.

References
----------
BitMEX, "What is Auto-Deleveraging",
https://support.bitmex.com/hc/en-gb/articles/18589621443357-What-is-Auto-Deleveraging;
Crypto.com, "Insurance fund and socialised loss mechanism",
https://help.crypto.com/en/articles/4894442-insurance-fund-and-socialised-loss-mechanism;
Deribit, "The Deribit insurance fund and socialised loss system".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, localcontext

import numpy as np
from numpy.typing import ArrayLike

from pmargin._typing import BoolArray, FloatArray, IntArray
from pmargin.errors import InvalidInput
from pmargin.liquidation.ledger import (
    Ledger,
    Transfer,
    allocate_pro_rata,
    as_decimal,
    exact_sum,
    floor_to_quantum,
    socialised_account,
)

__all__ = [
    "ADLFill",
    "ADLRanking",
    "ADLResult",
    "SocialisedLoss",
    "adl_cash_shares",
    "adl_scores",
    "auto_deleverage",
    "effective_leverage",
    "pnl_fraction",
    "rank_accounts",
    "rank_adl",
    "socialise_loss",
    "socialised_loss_shares",
]


# ----------------------------------------------------------------------------- ranking
def _float_array(value: ArrayLike, field: str) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(field, value, "must be numeric") from exc
    return arr


def _aligned(quantity: ArrayLike, **named: ArrayLike) -> tuple[FloatArray, dict[str, FloatArray]]:
    """``quantity`` and the named arrays as float arrays, all one-dimensional of one length."""
    q = _float_array(quantity, "quantity")
    arrays = {name: _float_array(value, name) for name, value in named.items()}
    if q.ndim != 1:
        raise InvalidInput("quantity", q.shape, "must be one-dimensional")
    for name, arr in arrays.items():
        if arr.shape != q.shape:
            raise InvalidInput(name, arr.shape, f"must have the shape of quantity {q.shape}")
    return q, arrays

def pnl_fraction(mark_value: ArrayLike, entry_value: ArrayLike) -> FloatArray:
    """Return BitMEX's PnL%: ``(mark_value - entry_value) / |entry_value|``.

    Parameters
    ----------
    mark_value : array_like of shape (n,)
        Signed position value at mark (negative for shorts).
    entry_value : array_like of shape (n,)
        Signed position value at the average entry price.

    Returns
    -------
    ndarray of shape (n,)
        PnL as a fraction of the entry value; NaN where the entry value is zero or an input is
        not finite.
    """
    mark = _float_array(mark_value, "mark_value")
    entry = _float_array(entry_value, "entry_value")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (mark - entry) / np.abs(entry)
    return np.where(np.isfinite(out), out, np.nan)


def effective_leverage(mark_value: ArrayLike, equity: ArrayLike) -> FloatArray:
    """Return BitMEX's effective leverage ``|MarkValue| / (MarkValue - BankruptValue)``.

    Parameters
    ----------
    mark_value : array_like of shape (n,)
        Signed position value at mark.
    equity : array_like of shape (n,)
        ``MarkValue - BankruptValue``: the margin backing the position at mark. For an account
        holding a portfolio, its equity.

    Returns
    -------
    ndarray of shape (n,)
        Leverage; NaN where ``equity <= 0`` (the account is itself bankrupt) or an input is not
        finite.
    """
    mark = _float_array(mark_value, "mark_value")
    eq = _float_array(equity, "equity")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.abs(mark) / eq
    valid = (eq > 0) & np.isfinite(out)
    return np.where(valid, out, np.nan)


def adl_scores(mark_value: ArrayLike, entry_value: ArrayLike, equity: ArrayLike) -> FloatArray:
    r"""Return BitMEX ADL ranking scores (higher is deleveraged first).

    Parameters
    ----------
    mark_value : array_like of shape (n,)
        Signed position value at mark.
    entry_value : array_like of shape (n,)
        Signed position value at the average entry price.
    equity : array_like of shape (n,)
        ``MarkValue - BankruptValue`` (account equity for portfolios).

    Returns
    -------
    ndarray of shape (n,)
        Scores; NaN for accounts that cannot be ranked (zero entry value, non-positive equity,
        non-finite input). A losing position with zero mark value scores ``-inf``.

    Notes
    -----
    .. math::

        \text{score} = \begin{cases}
            \text{PnL\%} \cdot L & \text{PnL\%} > 0 \\
            \text{PnL\%} / L & \text{PnL\%} \le 0
        \end{cases}

    with :math:`\text{PnL\%} = (MV - EV) / |EV|` and :math:`L = |MV| / (MV - BV)`.
    """
    return _combine(pnl_fraction(mark_value, entry_value), effective_leverage(mark_value, equity))


def _combine(pnl: FloatArray, lev: FloatArray) -> FloatArray:
    # BitMEX: PnL% x L for winners, PnL% / L for losers; NaN where either is unknown
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(pnl > 0, pnl * lev, np.where(pnl < 0, pnl / lev, 0.0))
    score = np.where(np.isnan(pnl) | np.isnan(lev), np.nan, score)
    return np.asarray(score, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class ADLRanking:
    """ADL scores and queues of a set of candidate accounts.

    Parameters
    ----------
    scores : ndarray of shape (n,)
        :func:`adl_scores` (NaN = not rankable).
    pnl : ndarray of shape (n,)
        PnL% of each candidate.
    leverage : ndarray of shape (n,)
        Effective leverage of each candidate.
    side : ndarray of shape (n,)
        +1 long, -1 short, 0 flat.
    """

    scores: FloatArray
    pnl: FloatArray
    leverage: FloatArray
    side: IntArray

    @property
    def profitable(self) -> BoolArray:
        """Whether each candidate has a positive PnL%."""
        return np.asarray(self.pnl > 0, dtype=np.bool_)

    def queue(self, side: int, *, profitable_only: bool = True) -> IntArray:
        """Return the candidates of ``side`` in deleveraging order.

        Parameters
        ----------
        side : {1, -1}
            +1 for the long queue, -1 for the short queue.
        profitable_only : bool
            Keep only candidates with positive PnL%.

        Returns
        -------
        ndarray of shape (k,)
            Indices into the candidate arrays, highest score first; equal scores keep input order.

        Raises
        ------
        InvalidInput
            If ``side`` is not +1 or -1.
        """
        if side not in (1, -1):
            raise InvalidInput("side", side, "must be +1 (long) or -1 (short)")
        eligible = (self.side == side) & ~np.isnan(self.scores)
        if profitable_only:
            eligible &= self.pnl > 0
        idx = np.flatnonzero(eligible)
        order = np.argsort(-self.scores[idx], kind="stable")
        return np.asarray(idx[order], dtype=np.int64)

    def order(self, *, profitable_only: bool = True) -> IntArray:
        """Return every rankable candidate, both sides together, highest score first.

        Parameters
        ----------
        profitable_only : bool
            Keep only candidates with positive PnL%.

        Returns
        -------
        ndarray of shape (k,)
            Indices, highest score first; equal scores keep input order.
        """
        eligible = ~np.isnan(self.scores)
        if profitable_only:
            eligible &= self.pnl > 0
        idx = np.flatnonzero(eligible)
        order = np.argsort(-self.scores[idx], kind="stable")
        return np.asarray(idx[order], dtype=np.int64)


def rank_adl(
    quantity: ArrayLike, mark_value: ArrayLike, entry_value: ArrayLike, equity: ArrayLike
) -> ADLRanking:
    """Rank candidate accounts for ADL, longs and shorts separately.

    Parameters
    ----------
    quantity : array_like of shape (n,)
        Signed position of each candidate in the instrument (its sign is the side).
    mark_value : array_like of shape (n,)
        Signed position value at mark.
    entry_value : array_like of shape (n,)
        Signed position value at entry.
    equity : array_like of shape (n,)
        ``MarkValue - BankruptValue`` (account equity for portfolios).

    Returns
    -------
    ADLRanking
        Scores and the per-side queues.

    Raises
    ------
    InvalidInput
        If the arrays are not one-dimensional of the same length.
    """
    q, arrays = _aligned(quantity, mark_value=mark_value, entry_value=entry_value,
                         equity=equity)
    side = np.sign(np.nan_to_num(q)).astype(np.int64)
    return ADLRanking(
        scores=adl_scores(arrays["mark_value"], arrays["entry_value"], arrays["equity"]),
        pnl=pnl_fraction(arrays["mark_value"], arrays["entry_value"]),
        leverage=effective_leverage(arrays["mark_value"], arrays["equity"]),
        side=side,
    )


def rank_accounts(
    quantity: ArrayLike, equity: ArrayLike, start_equity: ArrayLike, gross_value: ArrayLike
) -> ADLRanking:
    r"""Rank whole accounts for ADL: BitMEX's ranking applied to portfolios.

    Parameters
    ----------
    quantity : array_like of shape (n,)
        Signed position of each account in the instrument being deleveraged (its sign is the
        queue); zeros where only the account ranking is wanted.
    equity : array_like of shape (n,)
        Account equity now (``MarkValue - BankruptValue`` of the portfolio).
    start_equity : array_like of shape (n,)
        Equity at the start of the period (the "entry value" of the portfolio).
    gross_value : array_like of shape (n,)
        Gross position value (sum of absolute notionals, same unit as equity).

    Returns
    -------
    ADLRanking
        ``PnL% = (E - E0) / |E0|`` (:func:`pnl_fraction`), ``L = gross / E``
        (:func:`effective_leverage`) and the BitMEX score of each account.

    Raises
    ------
    InvalidInput
        If the arrays are not one-dimensional of the same length.
    """
    q, arrays = _aligned(quantity, equity=equity, start_equity=start_equity,
                         gross_value=gross_value)
    pnl = pnl_fraction(arrays["equity"], arrays["start_equity"])
    lev = effective_leverage(arrays["gross_value"], arrays["equity"])
    return ADLRanking(
        scores=_combine(pnl, lev),
        pnl=pnl,
        leverage=lev,
        side=np.sign(np.nan_to_num(q)).astype(np.int64),
    )


def adl_cash_shares(
    loss: Decimal, caps: Sequence[Decimal], order: ArrayLike
) -> tuple[dict[int, Decimal], Decimal]:
    """Take a loss from accounts in ADL order, each at most its cap (its profit).

    Parameters
    ----------
    loss : Decimal
        Non-negative loss to collect.
    caps : sequence of Decimal of length n
        Most each account gives (its profit; non-positive caps give nothing).
    order : array_like of int
        Account indices in deleveraging order (e.g. :meth:`ADLRanking.order`).

    Returns
    -------
    shares : dict of int to Decimal
        Amount taken from each account that gives something (index into ``caps``).
    unallocated : Decimal
        What the accounts could not cover.

    Raises
    ------
    InvalidInput
        If ``loss`` is negative or not a Decimal.
    """
    as_decimal(loss, "loss")
    if loss < 0:
        raise InvalidInput("loss", loss, "must be non-negative")
    shares: dict[int, Decimal] = {}
    rest = loss
    for j in np.asarray(order, dtype=np.int64).tolist():
        if rest <= 0:
            break
        amount = min(as_decimal(caps[j], f"caps[{j}]"), rest)
        if amount > 0:
            shares[j] = amount
            rest -= amount
    return shares, rest


# ----------------------------------------------------------------------------- deleveraging
@dataclass(frozen=True, slots=True)
class ADLFill:
    """One forced close of a candidate against the bankrupt position.

    Parameters
    ----------
    account : str
        Candidate (counterparty) account.
    candidate : int
        Index of the candidate in the input arrays.
    rank : int
        Position in the queue (0 = first).
    score : float
        ADL score of the candidate.
    quantity : Decimal
        Signed quantity the candidate trades (opposite sign to its position: a short buys back).
    price : Decimal
        Execution price (the bankruptcy price).
    cash : Decimal
        Cash received by the candidate (negative: paid), ``-quantity * (price - settled_price) *
        contract_size`` rounded to the currency quantum.
    """

    account: str
    candidate: int
    rank: int
    score: float
    quantity: Decimal
    price: Decimal
    cash: Decimal


@dataclass(frozen=True, slots=True)
class ADLResult:
    """Outcome of :func:`auto_deleverage`.

    Parameters
    ----------
    bankrupt_account : str
        Account whose position was closed.
    fills : tuple of ADLFill
        Forced closes in queue order.
    filled : Decimal
        Absolute quantity closed.
    unfilled : Decimal
        Absolute quantity left (the queue ran out).
    transfers : tuple of Transfer
        Postings made to the ledger.
    """

    bankrupt_account: str
    fills: tuple[ADLFill, ...]
    filled: Decimal
    unfilled: Decimal
    transfers: tuple[Transfer, ...]


def auto_deleverage(
    ledger: Ledger,
    *,
    bankrupt_account: str,
    quantity: Decimal,
    bankruptcy_price: Decimal,
    currency: str,
    accounts: Sequence[str],
    positions: Sequence[Decimal],
    mark_value: ArrayLike,
    entry_value: ArrayLike,
    equity: ArrayLike,
    contract_size: Decimal = Decimal(1),
    settled_price: Decimal = Decimal(0),
    profitable_only: bool = True,
    ranking: ADLRanking | None = None,
    max_cash: Sequence[Decimal] | None = None,
    ref: str = "",
) -> ADLResult:
    """Close a bankrupt position against opposite-side candidates in ADL order.

    Parameters
    ----------
    ledger : Ledger
        Ledger receiving the cash flows (posted atomically).
    bankrupt_account : str
        Account holding the position to close.
    quantity : Decimal
        Signed position to close (positive: the bankrupt account is long and sells).
    bankruptcy_price : Decimal
        Price at which every forced close executes.
    currency : str
        Settlement currency of the cash flows.
    accounts : sequence of str of length n
        Ledger accounts of the candidates.
    positions : sequence of Decimal of length n
        Signed positions of the candidates in the same instrument.
    mark_value, entry_value, equity : array_like of shape (n,)
        Ranking inputs, see :func:`rank_adl`.
    contract_size : Decimal
        Underlying units per contract.
    settled_price : Decimal
        Price already settled in cash: 0 for premium-settled instruments (options, spot; the
        buyer pays ``price * quantity``), the last settlement or mark price for variation-margined
        futures and perpetuals (only ``price - settled_price`` changes hands).
    profitable_only : bool
        Walk only candidates with positive PnL% (default), else every rankable candidate.
    ranking : ADLRanking, optional
        A ranking to walk instead of the one from ``mark_value``, ``entry_value`` and
        ``equity`` (e.g. :func:`rank_accounts` for whole portfolios; its ``side`` must be the
        candidates' sides).
    max_cash : sequence of Decimal of length n, optional
        Most each candidate may pay (its profit): a candidate closes at most
        ``max_cash / |P_b - P_s| c`` units, and what it pays is rounded down so it never
        exceeds the cap; the rest of the quantity goes to the next candidates.
    ref : str
        Reference stamped on the postings.

    Returns
    -------
    ADLResult
        Fills, the unfilled remainder and the postings.

    Raises
    ------
    InvalidInput
        If an amount is not a Decimal, the lengths differ, an account repeats or the bankrupt
        account is among the candidates.

    Notes
    -----
    Candidates on the opposite side are walked in :meth:`ADLRanking.queue` order; each closes
    ``min(remaining, |position|)`` at the bankruptcy price. Cash per fill, from the buyer to the
    seller, is :math:`|q| (P_b - P_s) c`, rounded half-even to the currency quantum (its sign
    decides the direction).
    """
    as_decimal(quantity, "quantity")
    as_decimal(bankruptcy_price, "bankruptcy_price")
    as_decimal(contract_size, "contract_size")
    as_decimal(settled_price, "settled_price")
    if quantity == 0:
        raise InvalidInput("quantity", quantity, "must be non-zero")
    if not contract_size > 0:
        raise InvalidInput("contract_size", contract_size, "must be positive")
    n = len(accounts)
    if len(positions) != n:
        raise InvalidInput("positions", len(positions), f"must have one entry per account ({n})")
    if len(set(accounts)) != n:
        raise InvalidInput("accounts", list(accounts), "must not repeat")
    if bankrupt_account in accounts:
        raise InvalidInput("accounts", bankrupt_account, "must not include the bankrupt account")
    pos = [as_decimal(p, f"positions[{i}]") for i, p in enumerate(positions)]
    if ranking is None:
        ranking = rank_adl([float(p) for p in pos], mark_value, entry_value, equity)
    elif ranking.scores.shape != (n,):
        raise InvalidInput("ranking", ranking.scores.shape, f"must rank the {n} candidates")
    caps = None
    if max_cash is not None:
        if len(max_cash) != n:
            raise InvalidInput("max_cash", len(max_cash), f"must have one entry per account ({n})")
        caps = [as_decimal(c, f"max_cash[{i}]") for i, c in enumerate(max_cash)]
    bankrupt_side = 1 if quantity > 0 else -1
    queue = ranking.queue(-bankrupt_side, profitable_only=profitable_only)
    unit_cash = abs(bankruptcy_price - settled_price) * contract_size

    remaining = abs(quantity)
    fills: list[ADLFill] = []
    transfers: list[Transfer] = []
    with localcontext(ledger.decimal_context()):
        for rank, i in enumerate(queue.tolist()):
            if remaining == 0:
                break
            take = min(remaining, abs(pos[i]))
            if caps is not None and unit_cash > 0:
                take = min(take, max(caps[i], Decimal(0)) / unit_cash)
            if take <= 0:
                continue
            remaining -= take
            # the candidate trades against its position: a short buys (+take), a long sells
            traded = take if pos[i] < 0 else -take
            if caps is None:
                value = ledger.quantize(
                    take * (bankruptcy_price - settled_price) * contract_size, currency
                )
            else:  # rounded towards zero: a capped candidate never pays more than its cap
                value = ledger.quantize(
                    take * (bankruptcy_price - settled_price) * contract_size,
                    currency,
                    ROUND_DOWN,
                )
            buyer, seller = (
                (accounts[i], bankrupt_account) if traded > 0 else (bankrupt_account, accounts[i])
            )
            if value > 0:
                transfers.append(Transfer(buyer, seller, value, currency, "adl close", ref))
            elif value < 0:
                transfers.append(Transfer(seller, buyer, -value, currency, "adl close", ref))
            cash = -value if traded > 0 else value
            fills.append(
                ADLFill(
                    accounts[i], i, rank, float(ranking.scores[i]), traded, bankruptcy_price, cash
                )
            )
    posted = ledger.post_many(transfers)
    filled = exact_sum([abs(quantity), -remaining])
    return ADLResult(bankrupt_account, tuple(fills), filled, remaining, posted)


# ----------------------------------------------------------------------------- socialised loss
def socialised_loss_shares(
    loss: Decimal, profits: Sequence[Decimal], quantum: Decimal
) -> tuple[list[Decimal], Decimal]:
    r"""Split a loss pro rata to positive profits, capped at each profit.

    Parameters
    ----------
    loss : Decimal
        Non-negative loss to allocate, a multiple of ``quantum``.
    profits : sequence of Decimal
        Profit of each account over the period; non-positive profits bear nothing, and
        profits are floored to the grid first so no account pays more than it made.
    quantum : Decimal
        Currency quantum.

    Returns
    -------
    shares : list of Decimal
        Amount taken from each account (multiples of ``quantum``, ``0 <= share_i <= p_i``).
    unallocated : Decimal
        Bad debt left over when the loss exceeds the total profit.

    Raises
    ------
    InvalidInput
        If an argument is not a Decimal, or ``loss`` is negative or off the grid.

    Notes
    -----
    With :math:`P = \sum_i p_i^+`: if :math:`L \ge P` every profit is taken and
    :math:`L - P` is unallocated; otherwise :math:`s_i = L p_i^+ / P` rounded by the
    largest-remainder rule of :func:`~pmargin.liquidation.ledger.allocate_pro_rata`, so that
    :math:`\sum_i s_i = L` exactly.
    """
    as_decimal(loss, "loss")
    if loss < 0:
        raise InvalidInput("loss", loss, "must be non-negative")
    if floor_to_quantum(loss, quantum) != loss:
        raise InvalidInput("loss", loss, f"is not a multiple of the quantum {quantum}")
    weights = [
        max(floor_to_quantum(as_decimal(p, f"profits[{i}]"), quantum), Decimal(0))
        for i, p in enumerate(profits)
    ]
    total = exact_sum(weights)
    if loss >= total:
        return weights, exact_sum([loss, -total])
    return allocate_pro_rata(loss, weights, quantum), Decimal(0)


@dataclass(frozen=True, slots=True)
class SocialisedLoss:
    """Outcome of :func:`socialise_loss`.

    Parameters
    ----------
    loss : Decimal
        Loss to allocate.
    beneficiary : str
        Account that received the collected amounts.
    shares : dict of str to Decimal
        Amount taken from each account (zero entries kept).
    allocated : Decimal
        Sum of the shares.
    unallocated : Decimal
        Bad debt that could not be allocated (``loss - allocated``).
    transfers : tuple of Transfer
        Postings made to the ledger.
    """

    loss: Decimal
    beneficiary: str
    shares: dict[str, Decimal]
    allocated: Decimal
    unallocated: Decimal
    transfers: tuple[Transfer, ...]


def socialise_loss(
    ledger: Ledger,
    *,
    loss: Decimal,
    currency: str,
    accounts: Sequence[str],
    profits: Sequence[Decimal],
    beneficiary: str | None = None,
    ref: str = "",
) -> SocialisedLoss:
    """Collect a loss from profitable accounts, pro rata to their profits.

    Parameters
    ----------
    ledger : Ledger
        Ledger receiving the postings (posted atomically).
    loss : Decimal
        Non-negative loss on the currency quantum grid.
    currency : str
        Currency.
    accounts : sequence of str of length n
        Candidate accounts.
    profits : sequence of Decimal of length n
        Their profits over the period (Deribit: that day's winners).
    beneficiary : str, optional
        Account credited with the collections: the bankrupt account, or by default the clearing
        account ``socialised:<currency>`` that carries pending losses.
    ref : str
        Reference.

    Returns
    -------
    SocialisedLoss
        Shares, allocated and unallocated amounts and postings.

    Raises
    ------
    InvalidInput
        If the lengths differ, an account repeats or is the beneficiary, or an amount is invalid.
    """
    target = beneficiary if beneficiary is not None else socialised_account(currency)
    if len(profits) != len(accounts):
        raise InvalidInput(
            "profits", len(profits), f"must have one entry per account ({len(accounts)})"
        )
    if len(set(accounts)) != len(accounts):
        raise InvalidInput("accounts", list(accounts), "must not repeat")
    if target in accounts:
        raise InvalidInput("beneficiary", target, "must not be one of the accounts")
    shares, unallocated = socialised_loss_shares(loss, profits, ledger.quantum(currency))
    transfers = [
        Transfer(a, target, s, currency, "socialised loss", ref)
        for a, s in zip(accounts, shares, strict=True)
        if s > 0
    ]
    posted = ledger.post_many(transfers)
    return SocialisedLoss(
        loss=loss,
        beneficiary=target,
        shares=dict(zip(accounts, shares, strict=True)),
        allocated=exact_sum([loss, -unallocated]),
        unallocated=unallocated,
        transfers=posted,
    )
