"""Synthetic, realistic books built on a real option chain.

Account archetypes (shares are parameters): market makers (hundreds of options across expiries,
delta-hedged with the perpetual), spread traders (verticals and calendars), naked option sellers,
covered-call holders, directional perpetual/futures traders, plus collateral-only and empty
accounts. Everything is vectorised and seeded: the same seed gives the same book.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from pmargin._typing import FloatArray, IntArray
from pmargin.book.positions import Book, OrderTable
from pmargin.errors import InvalidInput
from pmargin.instruments import Instrument, InstrumentKind
from pmargin.market import MarketSnapshot
from pmargin.models.valuation import KIND_OPTION, build_table

__all__ = ["Archetypes", "chain_universe", "generate_book"]


@dataclass(frozen=True)
class Archetypes:
    """Share of accounts of each kind and their typical sizes."""

    market_maker: float = 0.04
    spread_trader: float = 0.25
    naked_seller: float = 0.18
    covered_call: float = 0.10
    directional: float = 0.35
    collateral_only: float = 0.05
    empty: float = 0.03
    mm_options: tuple[int, int] = (100, 300)
    spread_pairs: tuple[int, int] = (1, 5)
    naked_legs: tuple[int, int] = (1, 6)


def _segments(rng: np.random.Generator, accounts: IntArray, lo: int, hi: int) -> IntArray:
    """Repeat each account a random number of times in [lo, hi]."""
    k = rng.integers(lo, hi + 1, size=accounts.size)
    return np.repeat(accounts, k)


def generate_book(
    market: MarketSnapshot,
    instruments: Sequence[Instrument],
    n_accounts: int,
    seed: int = 0,
    margin_currency: str = "BTC",
    archetypes: Archetypes | None = None,
) -> Book:
    """Generate a book of ``n_accounts`` accounts over an instrument universe.

    Parameters
    ----------
    market : MarketSnapshot
        Market used to pick out-of-the-money strikes and delta-hedge market makers.
    instruments : sequence of Instrument
        Universe (options, futures and a perpetual of one underlying); all become columns.
    n_accounts : int
        Number of accounts.
    seed : int
        Random seed.
    margin_currency : str
        Margin currency of the book (the underlying coin for inverse instruments).
    archetypes : Archetypes, optional
        Mix of account kinds.

    Returns
    -------
    Book
        The book; account ids are ``acc{n}``.
    """
    if n_accounts < 0:
        raise InvalidInput("n_accounts", n_accounts, "must be non-negative")
    arch = archetypes or Archetypes()
    rng = np.random.default_rng(seed)
    insts = list(instruments)
    t = build_table(insts, market, margin_currency)
    n_i = len(insts)
    opt = np.flatnonzero(t.kind == KIND_OPTION)
    perp = [j for j, i in enumerate(insts) if i.kind is InstrumentKind.PERPETUAL]
    futs = np.array([j for j, i in enumerate(insts) if i.kind is InstrumentKind.FUTURE], np.int64)
    if opt.size == 0 or not perp:
        raise InvalidInput("instruments", n_i, "need options and a perpetual")
    p_j = perp[0]
    mny = t.strike[opt] / t.forward[opt]
    near = opt[(mny > 0.7) & (mny < 1.4)]
    otm = opt[np.where(t.is_call[opt], mny > 1.03, mny < 0.97) & (mny > 0.6) & (mny < 1.6)]
    calls_otm = otm[t.is_call[otm]]
    # next strike of the same expiry and right, for verticals
    order = np.lexsort((t.strike[opt], t.is_call[opt], t.expiry_key[opt]))
    o_sorted = opt[order]
    same = (t.expiry_key[o_sorted][1:] == t.expiry_key[o_sorted][:-1]) & (
        t.is_call[o_sorted][1:] == t.is_call[o_sorted][:-1])
    nxt = np.full(n_i, -1, np.int64)
    nxt[o_sorted[:-1][same]] = o_sorted[1:][same]
    spreadable = near[nxt[near] >= 0]
    delta = t.coin_delta()

    shares = np.array([arch.market_maker, arch.spread_trader, arch.naked_seller,
                       arch.covered_call, arch.directional, arch.collateral_only, arch.empty])
    kind = rng.choice(len(shares), size=n_accounts, p=shares / shares.sum())
    acc = np.arange(n_accounts)
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    qty: list[FloatArray] = []
    coll = np.zeros(n_accounts)

    def add(r: IntArray, c: IntArray, q: FloatArray) -> None:
        rows.append(r.astype(np.int64))
        cols.append(c.astype(np.int64))
        qty.append(q.astype(np.float64))

    def lots(n: int, scale: float) -> FloatArray:
        return np.round(rng.lognormal(np.log(scale), 0.8, n), 1) + 0.1

    # market makers: many options, delta-hedged with the perpetual
    mm = acc[kind == 0]
    if mm.size:
        r = _segments(rng, mm, *arch.mm_options)
        c = rng.choice(near, size=r.size)
        q = lots(r.size, 2.0) * rng.choice([-1.0, 1.0], size=r.size)
        add(r, c, q)
        net = np.bincount(r, weights=q * delta[c], minlength=n_accounts)[mm]
        add(mm, np.full(mm.size, p_j), np.round(-net, 3))
        coll[mm] = np.round(rng.lognormal(np.log(60.0), 0.6, mm.size), 2)
    # spread traders: verticals (long one strike, short the next)
    sp_acc = acc[kind == 1]
    if sp_acc.size and spreadable.size:
        r = _segments(rng, sp_acc, *arch.spread_pairs)
        c = rng.choice(spreadable, size=r.size)
        q = lots(r.size, 3.0) * rng.choice([-1.0, 1.0], size=r.size)
        add(np.concatenate([r, r]), np.concatenate([c, nxt[c]]), np.concatenate([q, -q]))
        coll[sp_acc] = np.round(rng.lognormal(np.log(2.0), 0.7, sp_acc.size), 3)
    # naked sellers: short out-of-the-money options
    ns = acc[kind == 2]
    if ns.size:
        r = _segments(rng, ns, *arch.naked_legs)
        c = rng.choice(otm, size=r.size)
        add(r, c, -lots(r.size, 2.0))
        coll[ns] = np.round(rng.lognormal(np.log(3.0), 0.7, ns.size), 3)
    # covered calls: coin collateral and as many short OTM calls
    cc = acc[kind == 3]
    if cc.size:
        q = lots(cc.size, 3.0)
        add(cc, rng.choice(calls_otm, size=cc.size), -q)
        coll[cc] = q * rng.uniform(1.0, 1.3, cc.size)
    # directional traders: perpetual (and sometimes a future)
    dr = acc[kind == 4]
    if dr.size:
        q = lots(dr.size, 1.0) * rng.choice([-1.0, 1.0], size=dr.size)
        add(dr, np.full(dr.size, p_j), q)
        if futs.size:
            f_acc = dr[rng.random(dr.size) < 0.3]
            add(f_acc, rng.choice(futs, size=f_acc.size),
                lots(f_acc.size, 1.0) * rng.choice([-1.0, 1.0], size=f_acc.size))
        coll[dr] = np.abs(q) * rng.uniform(0.05, 0.6, dr.size)
    co = acc[kind == 5]
    coll[co] = np.round(rng.lognormal(0.0, 1.0, co.size), 3)

    r_all = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c_all = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    q_all = np.concatenate(qty) if qty else np.zeros(0)
    keep = q_all != 0
    pos = sp.csr_matrix((q_all[keep], (r_all[keep], c_all[keep])), shape=(n_accounts, n_i))
    pos.sum_duplicates()
    pos.eliminate_zeros()
    ent = pos.copy()
    ent.data = np.full(ent.nnz, np.nan)
    # entry prices: mark moved by a random few percent for futures and perpetuals
    jj = ent.indices
    lin = t.kind[jj] != KIND_OPTION
    ent.data[lin] = pos.data[lin] * t.mark[jj[lin]] * rng.normal(1.0, 0.03, int(lin.sum()))
    return Book(margin_currency, [f"acc{i}" for i in range(n_accounts)], insts,
                pos, ent, [margin_currency], coll[:, None], OrderTable.empty())


def chain_universe(market: MarketSnapshot, underlying: str = "BTC",
                   linear: bool = False) -> list[Instrument]:
    """Instrument universe of one underlying: its options, listed futures and the perpetual.

    Parameters
    ----------
    market : MarketSnapshot
        Market (e.g. a Deribit chain snapshot).
    underlying : str
        Coin.
    linear : bool
        If True, the USDC-settled (``BTC_USDC-...``) instruments instead of the inverse ones.

    Returns
    -------
    list of Instrument
        Options sorted by name, then futures, then the perpetual: only instruments the market
        lists (:meth:`MarketSnapshot.is_listed`), so a generated book never needs model prices.
    """
    from pmargin.instruments import parse_instrument

    opts: list[Instrument] = []
    futs: list[Instrument] = []
    for name in market.instrument_names:
        try:
            inst = parse_instrument(name)
        except InvalidInput:
            continue
        if inst.underlying != underlying or inst.is_inverse == linear:
            continue
        if inst.kind is InstrumentKind.OPTION:
            opts.append(inst)
        elif inst.kind is InstrumentKind.FUTURE:
            futs.append(inst)
    perp = parse_instrument(f"{underlying}_USDC-PERPETUAL" if linear else f"{underlying}-PERPETUAL")
    return [*opts, *futs, *([perp] if market.is_listed(perp) else [])]
