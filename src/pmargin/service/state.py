"""The venue in memory: accounts, balances, positions and a book engine per book.

Every change goes through :meth:`VenueState.effect` (compute what an event does, without changing
anything) and :meth:`VenueState.apply` (apply it). The live path persists the effect between the
two; a replay of the log calls them in sequence order and must reach the same state
(:meth:`VenueState.state_hash`).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import scipy.sparse as sp

from pmargin.book import Book
from pmargin.engine import BookEngine
from pmargin.errors import InvalidInput, PmarginError
from pmargin.instruments import InstrumentKind, parse_instrument
from pmargin.market import MarketSnapshot
from pmargin.models import load_model
from pmargin.models.base import MarginModel
from pmargin.service.config import BookConfig, VenueConfig
from pmargin.service.money import from_units, to_units
from pmargin.service.positions import fill_effect

__all__ = ["BookState", "Effect", "HashView", "UnknownAccount", "VenueState", "external",
           "user"]

Posting = tuple[str, str, int]  # (ledger account, currency, signed units)


def user(account: str) -> str:
    """Ledger account of a user account."""
    return f"acct:{account}"


def external(book: str) -> str:
    """Ledger account of money outside the venue (deposits in, withdrawals out)."""
    return f"external:{book}"


def clearing(book: str) -> str:
    """Ledger account of the venue's clearing counterparty (premiums, realised P&L)."""
    return f"clearing:{book}"


def fees(book: str) -> str:
    """Ledger account of collected fees."""
    return f"fees:{book}"


class UnknownAccount(InvalidInput):
    """No account has this id (the API answers 404)."""


@dataclass
class Effect:
    """What one event does: ledger postings and new positions (nothing applied yet)."""

    kind: str
    book: str
    postings: list[Posting] = field(default_factory=list)
    positions: dict[tuple[str, str], tuple[int, Decimal]] = field(default_factory=dict)
    new_account: str | None = None
    market: MarketSnapshot | None = None
    market_digest: str | None = None
    # book id -> (engine, its book's columns, the model's preparation of ``market`` for that
    # book), made by the market check so that applying does not prepare a second time
    prepared: dict[str, tuple[Any, int, Any]] = field(default_factory=dict)

    def check_balanced(self) -> None:
        """Every currency's postings sum to zero (double entry)."""
        tot: dict[str, int] = defaultdict(int)
        for _, ccy, u in self.postings:
            tot[ccy] += u
        bad = {c: u for c, u in tot.items() if u != 0}
        if bad:
            raise AssertionError(f"unbalanced postings {bad}")


@dataclass
class BookState:
    """One book's accounts and its margin engine."""

    cfg: BookConfig
    model: MarginModel
    accounts: list[str] = field(default_factory=list)
    positions: dict[str, dict[str, tuple[int, Decimal]]] = field(default_factory=dict)
    engine: BookEngine | None = None
    dirty: bool = True


class VenueState:
    """All books of the venue, the ledger balances and the market in use."""

    def __init__(self, cfg: VenueConfig) -> None:
        self.cfg = cfg
        self.books: dict[str, BookState] = {
            b.id: BookState(b, load_model(b.model)) for b in cfg.books}
        self.account_book: dict[str, str] = {}
        self.balances: dict[tuple[str, str], int] = defaultdict(int)
        # per-currency sum of every posting applied (== the sum of ``balances``, kept as the
        # postings are applied: the conservation check after a liquidation step is O(1))
        self._totals: dict[str, int] = defaultdict(int)
        self.market: MarketSnapshot | None = None
        self.market_digest: str | None = None
        self.seq = 0
        self._hash: tuple[int, str] | None = None

    # ------------------------------------------------------------------ lookups
    def book_of(self, account: str) -> BookState:
        """Book of an account (:class:`UnknownAccount` if there is none)."""
        try:
            return self.books[self.account_book[account]]
        except KeyError:
            raise UnknownAccount("account", account, "unknown account") from None

    def balance(self, account: str, currency: str) -> Decimal:
        """Ledger balance of a user account in ``currency``."""
        return from_units(self.balances.get((user(account), currency), 0),
                          self.cfg.quantum(currency))

    # ------------------------------------------------------------------ effects
    def effect_account(self, account: str, book: str) -> Effect:
        """Open an account."""
        if book not in self.books:
            raise InvalidInput("book", book, f"unknown book (valid: {sorted(self.books)})")
        if account in self.account_book:
            raise InvalidInput("id", account, "account already exists")
        return Effect("account", book, new_account=account)

    def effect_transfer(self, account: str, currency: str, amount: Decimal,
                        direction: str) -> Effect:
        """Deposit (external -> account) or withdrawal (account -> external)."""
        bs = self.book_of(account)
        allowed = [bs.cfg.margin_currency, *bs.cfg.collateral_currencies]
        if currency not in allowed:
            raise InvalidInput("currency", currency,
                               f"book {bs.cfg.id} takes {sorted(set(allowed))}")
        units = to_units(amount, self.cfg.quantum(currency), "amount")
        if units <= 0:
            raise InvalidInput("amount", str(amount), "must be positive")
        sign = 1 if direction == "deposit" else -1
        if sign < 0 and self.balances.get((user(account), currency), 0) < units:
            raise InvalidInput("amount", str(amount),
                               f"exceeds the {currency} balance {self.balance(account, currency)}")
        return Effect(direction, bs.cfg.id, postings=[
            (user(account), currency, sign * units),
            (external(bs.cfg.id), currency, -sign * units)])

    def effect_fill(self, account: str, instrument: str, quantity: Decimal, price: Decimal,
                    price_currency: str, fee: Decimal) -> Effect:
        """A trade fill: position change, premium or realised cash, fee."""
        bs = self.book_of(account)
        inst = parse_instrument(instrument)
        if inst.kind is InstrumentKind.SPOT:
            raise InvalidInput("instrument", instrument, "spot is collateral: use a transfer")
        if inst.is_inverse and inst.underlying != bs.cfg.margin_currency:
            raise InvalidInput("instrument", instrument,
                               f"book {bs.cfg.id} holds only {bs.cfg.margin_currency} inverse "
                               "instruments")
        want = inst.settle_currency if inst.is_option else "USD"
        if price_currency != want:
            raise InvalidInput("price_currency", price_currency,
                               f"{instrument} is priced in {want}")
        if price <= 0:
            raise InvalidInput("price", str(price), "must be positive")
        if fee < 0:
            raise InvalidInput("fee", str(fee), "must not be negative")
        self._check_listed(inst.name)
        qq = self.cfg.money.quantity_quantum
        dq_units = to_units(quantity, qq, "quantity")
        if dq_units == 0:
            raise InvalidInput("quantity", str(quantity), "must not be zero")
        old_units, old_e = bs.positions.get(account, {}).get(inst.name, (0, Decimal(0)))
        settle = inst.settle_currency
        res = fill_effect(inst, from_units(old_units, qq), old_e, quantity, price,
                          self.cfg.quantum(settle))
        new_units = to_units(res.quantity, qq, "quantity")
        postings: list[Posting] = []
        cash = to_units(res.cash, self.cfg.quantum(settle), "cash")
        if cash:
            postings += [(user(account), settle, cash), (clearing(bs.cfg.id), settle, -cash)]
        mc = bs.cfg.margin_currency
        fee_units = to_units(fee, self.cfg.quantum(mc), "fee")
        if fee_units:
            postings += [(user(account), mc, -fee_units), (fees(bs.cfg.id), mc, fee_units)]
        return Effect("fill", bs.cfg.id, postings=postings,
                      positions={(account, inst.name): (new_units, res.entry)})

    def _check_listed(self, name: str) -> None:
        if self.market is None:
            raise InvalidInput("market", None, "no market yet: post one to /v1/market first")
        if not self.market.is_listed(name):
            raise InvalidInput("instrument", name, "is not listed in the market in use")

    # ------------------------------------------------------------------ apply
    def apply(self, eff: Effect, seq: int) -> None:
        """Apply an effect (already persisted, or being replayed)."""
        eff.check_balanced()
        bs = self.books[eff.book]
        if eff.new_account is not None:
            bs.accounts.append(eff.new_account)
            self.account_book[eff.new_account] = eff.book
            if bs.engine is not None and not bs.dirty:
                _append_account(bs.engine, eff.new_account)  # O(accounts) copy, no re-pricing
            else:
                bs.dirty = True
        if eff.market is not None:
            self.market = eff.market
            self.market_digest = eff.market_digest
            for b in self.books.values():
                if b.engine is not None and not b.dirty:
                    pre = eff.prepared.get(b.cfg.id)
                    if (pre is not None and pre[0] is b.engine
                            and pre[1] == b.engine.book.n_instruments):
                        # the check prepared this very book on this market (under the same
                        # lock): what update_market does, without preparing again
                        b.engine.market = eff.market
                        b.engine.prep = pre[2]
                        b.engine.recompute()
                        continue
                    try:
                        b.engine.update_market(eff.market)
                    except PmarginError:  # a column nobody holds is not priced any more:
                        b.dirty = True    # rebuild from the positions held (checked before)
        touched: set[tuple[str, str]] = set()
        for acct, ccy, units in eff.postings:
            self.balances[(acct, ccy)] += units
            self._totals[ccy] += units
            if acct.startswith("acct:"):
                touched.add((acct[5:], eff.book))
        for (acct, inst), (units, entry) in eff.positions.items():
            row = bs.positions.setdefault(acct, {})
            if units == 0:
                row.pop(inst, None)
            else:
                row[inst] = (units, entry)
            touched.add((acct, eff.book))
        for acct, book in touched:
            self._sync_row(self.books[book], acct)
        # writes of different books commit side by side: the state is at the highest seq
        # applied (events of one book are applied in their order)
        self.seq = max(self.seq, seq)

    # ------------------------------------------------------------------ engine
    def _row(self, bs: BookState, account: str) -> tuple[dict[str, tuple[float, float]],
                                                         dict[str, float]]:
        qq = self.cfg.money.quantity_quantum
        pos: dict[str, tuple[float, float]] = {}
        for name, (units, entry) in bs.positions.get(account, {}).items():
            inst = parse_instrument(name)
            pos[name] = (float(from_units(units, qq)),
                         float("nan") if inst.is_option else float(entry))
        coll = {c: float(self.balance(account, c)) for c in self._currencies(bs)}
        return pos, coll

    def _currencies(self, bs: BookState) -> list[str]:
        return list(dict.fromkeys([bs.cfg.margin_currency, *bs.cfg.collateral_currencies]))

    def _sync_row(self, bs: BookState, account: str) -> None:
        if bs.dirty or bs.engine is None:
            return
        pos, coll = self._row(bs, account)
        bs.engine.set_account(account, pos, coll)

    def engine(self, book: str) -> BookEngine:
        """The book's engine, rebuilt from the state if accounts were added since."""
        bs = self.books[book]
        if self.market is None:
            raise InvalidInput("market", None, "no market yet: post one to /v1/market first")
        if bs.engine is None or bs.dirty:
            bs.engine = BookEngine(bs.model, self._build_book(bs), self.market)
            bs.dirty = False
        return bs.engine

    def held_book(self, book: str) -> Book:
        """The book as the positions held now (no columns of closed instruments)."""
        return self._build_book(self.books[book])

    def _build_book(self, bs: BookState) -> Book:
        names: dict[str, int] = {}
        rows, cols, qs, es = [], [], [], []
        ccys = self._currencies(bs)
        coll = np.zeros((len(bs.accounts), len(ccys)))
        for r, acct in enumerate(bs.accounts):
            pos, c = self._row(bs, acct)
            for name, (q, e) in pos.items():
                j = names.setdefault(name, len(names))
                rows.append(r)
                cols.append(j)
                qs.append(q)
                es.append(e)
            coll[r] = [c[k] for k in ccys]
        shape = (len(bs.accounts), len(names))
        r_a, c_a = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        pos_m = sp.csr_matrix((np.asarray(qs, np.float64), (r_a, c_a)), shape=shape)
        ent_m = sp.csr_matrix((np.asarray(es, np.float64), (r_a, c_a)), shape=shape)
        return Book(bs.cfg.margin_currency, list(bs.accounts),
                    [parse_instrument(n) for n in names], pos_m, ent_m, ccys, coll)

    # ------------------------------------------------------------------ proof
    def state_hash(self) -> str:
        """SHA-256 of accounts, balances (units), positions (units, entry) and market digest.

        Cached per sequence number (every change of the state advances it); about 0.25 s at
        10,000 accounts otherwise.
        """
        if self._hash is not None and self._hash[0] == self.seq:
            return self._hash[1]
        h = self._state_hash()
        self._hash = (self.seq, h)
        return h

    def _state_hash(self) -> str:
        return _hash_of(self.account_book, self.balances,
                        [bs.positions for bs in self.books.values()], self.market_digest)

    def conservation(self) -> dict[str, int]:
        """Sum of all ledger balances per currency (0 everywhere when money is conserved).

        Kept as the postings are applied (``balances`` changes nowhere else); the state view
        (``GET /v1/state``) re-sums the copied balances from scratch.
        """
        return dict(self._totals)

    def copy_for_hash(self) -> HashView:
        """A copy of what the state hash covers (shallow: O(entries), no hashing).

        Taken under the service's view lock; the hash is then computed from the copy without
        any lock (and cached in this state for its sequence number).
        """
        if self._hash is not None and self._hash[0] == self.seq:
            return HashView(self.seq, {}, dict(self.balances), [], None, self, self._hash[1])
        return HashView(self.seq, dict(self.account_book), dict(self.balances),
                        [{a: dict(row) for a, row in bs.positions.items()}
                         for bs in self.books.values()], self.market_digest, self)


@dataclass
class HashView:
    """A copied state for :meth:`VenueState.state_hash` computed outside the view lock."""

    seq: int
    accounts: dict[str, str]
    balances: dict[tuple[str, str], int]
    positions: list[dict[str, dict[str, tuple[int, Decimal]]]]
    market_digest: str | None
    owner: VenueState
    known: str | None = None

    def state_hash(self) -> str:
        """Same value as :meth:`VenueState.state_hash` at ``seq``."""
        if self.known is None:
            self.known = _hash_of(self.accounts, self.balances, self.positions,
                                  self.market_digest)
            if self.owner.seq == self.seq:
                self.owner._hash = (self.seq, self.known)
        return self.known

    def conservation(self) -> dict[str, int]:
        """Sum of the copied ledger balances per currency."""
        return _sums(self.balances)


def _hash_of(accounts: dict[str, str], balances: dict[tuple[str, str], int],
             positions: list[dict[str, dict[str, tuple[int, Decimal]]]],
             market_digest: str | None) -> str:
    doc: dict[str, Any] = {
        "accounts": sorted(accounts.items()),
        "balances": sorted([a, c, u] for (a, c), u in balances.items() if u != 0),
        "positions": sorted(
            [a, i, u, str(e)] for book in positions
            for a, row in book.items() for i, (u, e) in row.items()),
        "market": market_digest,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _sums(balances: dict[tuple[str, str], int]) -> dict[str, int]:
    tot: dict[str, int] = defaultdict(int)
    for (_, ccy), u in balances.items():
        tot[ccy] += u
    return dict(tot)


def _append_account(engine: BookEngine, account: str) -> None:
    """Append an empty account (no positions, no collateral) to a built engine.

    Its margin is evaluated alone (all zeros); the market stays prepared and no other row is
    recomputed. Equivalent to rebuilding the engine from the state (tests/service/test_state.py),
    which re-prices the market and recomputes every account (about 1 s at 10,000 accounts).
    """
    engine._flush()  # merge overlaid rows first: the CSR matrices are then complete
    b = engine.book
    n = b.n_accounts

    def grow(m: sp.csr_matrix) -> sp.csr_matrix:
        return sp.csr_matrix((m.data, m.indices, np.append(m.indptr, m.indptr[-1])),
                             shape=(n + 1, m.shape[1]))

    b.positions = grow(b.positions)
    b.entry_notional = grow(b.entry_notional)
    b.collateral = np.vstack([b.collateral, np.zeros((1, b.collateral.shape[1]))])
    b.account_ids = [*b.account_ids, account]
    engine._row[account] = n
    engine._chunks = None
    res = engine.result
    res.account_ids = list(b.account_ids)
    res.initial_margin = np.append(res.initial_margin, 0.0)
    res.maintenance_margin = np.append(res.maintenance_margin, 0.0)
    res.equity = np.append(res.equity, 0.0)
    res.components = {k: np.append(v, 0.0) for k, v in res.components.items()}
    res.greeks = {k: np.append(v, 0.0) for k, v in res.greeks.items()}
    engine._refresh_row(n)
