"""Property tests: every liquidation operation conserves money exactly."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pmargin.errors import LiquidationError
from pmargin.liquidation import (
    AuctionLot,
    Bidder,
    InsuranceFund,
    Ledger,
    Transfer,
    auto_deleverage,
    floor_to_quantum,
    run_auction,
    socialise_loss,
    takeover,
)

D = Decimal
CURRENCIES = ("USDC", "BTC")
N_ACCOUNTS = 5


def _accounts(ccy: str) -> list[str]:
    return [f"account:{i}:{ccy}" for i in range(N_ACCOUNTS)]


@dataclass
class World:
    ledger: Ledger
    funds: dict[str, InsuranceFund]

    def quantum(self, ccy: str) -> Decimal:
        return self.ledger.quantum(ccy)

    def amount(self, ccy: str, units: int) -> Decimal:
        # random integer of quanta with a random number of whole units on top
        return D(units) * self.quantum(ccy)

    def check(self) -> None:
        for ccy in CURRENCIES:
            assert self.ledger.conservation_error(ccy) == D(0)
            assert self.ledger.total(ccy) == D(0)
            assert self.funds[ccy].balance >= 0


ccys = st.sampled_from(CURRENCIES)
idx = st.integers(min_value=0, max_value=N_ACCOUNTS - 1)
units = st.integers(min_value=1, max_value=10**12)
signed_units = st.integers(min_value=-(10**12), max_value=10**12).filter(bool)
small = st.integers(min_value=-(10**6), max_value=10**6)
fractions = st.integers(min_value=1, max_value=100).map(lambda p: D(p) / 100)

ops = st.one_of(
    st.tuples(st.just("open"), ccys, idx, signed_units),
    st.tuples(st.just("move"), ccys, idx, idx, units),
    st.tuples(st.just("seed"), ccys, units),
    st.tuples(st.just("penalty"), ccys, idx, units),
    st.tuples(st.just("bankruptcy"), ccys, idx),
    st.tuples(
        st.just("adl"),
        ccys,
        idx,
        st.lists(small, min_size=N_ACCOUNTS, max_size=N_ACCOUNTS),
        small,
        units,
    ),
    st.tuples(
        st.just("socialise"),
        ccys,
        units,
        st.lists(signed_units, min_size=N_ACCOUNTS, max_size=N_ACCOUNTS),
    ),
    st.tuples(
        st.just("auction"),
        ccys,
        idx,
        signed_units,
        units,
        st.lists(st.tuples(fractions, st.none() | fractions, st.none() | fractions), max_size=3),
    ),
    st.tuples(st.just("takeover"), ccys, idx, signed_units, fractions, st.booleans()),
)


def apply(world: World, op: tuple[Any, ...]) -> None:
    kind, ccy = op[0], op[1]
    ledger, fund = world.ledger, world.funds[ccy]
    accts = _accounts(ccy)
    if kind == "open":
        ledger.opening(accts[op[2]], ccy, world.amount(ccy, op[3]))
    elif kind == "move":
        if op[2] != op[3]:
            ledger.post(Transfer(accts[op[2]], accts[op[3]], world.amount(ccy, op[4]), ccy, "x"))
    elif kind == "seed":
        fund.deposit(world.amount(ccy, op[2]))
    elif kind == "penalty":
        fund.receive_penalty(accts[op[2]], world.amount(ccy, op[3]))
    elif kind == "bankruptcy":
        fund.cover_bankruptcy(accts[op[2]])
    elif kind == "adl":
        bankrupt, positions, price_ticks, qty = op[2], op[3], op[4], op[5]
        others = [a for i, a in enumerate(accts) if i != bankrupt]
        pos = [D(p) / 100 for i, p in enumerate(positions) if i != bankrupt]
        marks = [float(p) * 80 for p in pos]
        entries = [float(p) * 75 for p in pos]
        auto_deleverage(
            ledger,
            bankrupt_account=accts[bankrupt],
            quantity=D(qty) / 1000,
            bankruptcy_price=D(price_ticks) / 7,
            currency=ccy,
            accounts=others,
            positions=pos,
            mark_value=marks,
            entry_value=entries,
            equity=[100.0] * len(pos),
            profitable_only=bool(price_ticks % 2),
        )
    elif kind == "socialise":
        socialise_loss(
            ledger,
            loss=world.amount(ccy, op[2]),
            currency=ccy,
            accounts=accts,
            profits=[world.amount(ccy, p) / 3 for p in op[3]],
        )
    elif kind == "auction":
        account, value_units, mm_units, specs = op[2], op[3], op[4], op[5]
        lot = AuctionLot(
            accts[account],
            ccy,
            positions_value=world.amount(ccy, value_units),
            maintenance_margin=world.amount(ccy, mm_units),
        )
        bidders = [
            Bidder(
                f"liquidator:{i}:{ccy}",
                max_fraction=f,
                reservation_discount=d,
                reservation_progress=p,
            )
            for i, (f, d, p) in enumerate(specs)
        ]
        with contextlib.suppress(LiquidationError):  # above maintenance margin: no auction
            run_auction(ledger, lot, bidders, fund=fund)
    elif kind == "takeover":
        takeover(
            ledger,
            account=accts[op[2]],
            liquidator=f"liquidator:9:{ccy}",
            positions_value=world.amount(ccy, op[3]),
            currency=ccy,
            fraction=op[4],
            fund=fund if op[5] else None,
        )


@settings(max_examples=150)
@given(st.lists(ops, min_size=1, max_size=25))
def test_random_operation_sequences_conserve_money(sequence: list[tuple[Any, ...]]) -> None:
    ledger = Ledger()
    world = World(ledger, {c: InsuranceFund(ledger, c) for c in CURRENCIES})
    for op in sequence:
        before = len(ledger)
        apply(world, op)
        assert len(ledger) >= before
        world.check()
    # replaying the journal from scratch gives the same balances
    replay = Ledger()
    replay.post_many(ledger.journal)
    assert replay.balances() == ledger.balances()


bidder_specs = st.lists(
    st.tuples(
        st.sampled_from([D("0.1"), D("0.25"), D("0.5"), D(1)]),
        st.one_of(fractions, fractions, st.none()),
        st.none() | st.sampled_from([D(0), D("0.3"), D(1)]),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=150)
@given(
    value_units=signed_units,
    mm_units=units,
    mtm_percent=st.one_of(st.integers(1, 99), st.integers(-150, 0)),
    specs=bidder_specs,
)
def test_auction_invariants(
    value_units: int,
    mm_units: int,
    mtm_percent: int,
    specs: list[tuple[Decimal, Decimal | None, Decimal | None]],
) -> None:
    ledger = Ledger()
    fund = InsuranceFund(ledger, "USDC")
    fund.deposit(D(mm_units // 3 + 1) * ledger.quantum("USDC"))
    q = ledger.quantum("USDC")
    value = D(value_units) * q
    mm = D(mm_units) * q
    mtm = floor_to_quantum(mm * mtm_percent / 100, q)  # below MM: the auction must start
    cash = mtm - value
    if cash != 0:
        ledger.opening("account:0:USDC", "USDC", cash)
    lot = AuctionLot("account:0:USDC", "USDC", positions_value=value, maintenance_margin=mm)
    bidders = [Bidder(f"liquidator:{i}:USDC", f, d, p) for i, (f, d, p) in enumerate(specs)]
    result = run_auction(ledger, lot, bidders, fund=fund)
    assert ledger.conservation_error("USDC") == 0
    assert 0 <= result.remaining_fraction <= 1
    assert sum((f.fraction for f in result.fills), D(0)) + result.remaining_fraction == 1
    times = [f.t_seconds for f in result.fills]
    assert times == sorted(times)
    if mtm <= 0:
        assert result.insolvent
        assert result.fee == 0
    if result.insolvent and result.terminated:
        assert ledger.balance("account:0:USDC", "USDC") == 0  # fully taken over: flat
    if result.terminated and not result.insolvent:
        # solvent auction ended at the buffer margin (up to rounding of a few quanta)
        rho = result.remaining_fraction
        left = ledger.balance("account:0:USDC", "USDC") + rho * value
        bm = left - (1 + D("0.15")) * rho * mm
        assert abs(bm) <= 10 * q
    for f in result.fills:
        assert f.paid_to_bidder == f.covered_by_fund + f.socialised
        assert f.paid_by_bidder >= 0
        assert f.paid_to_bidder >= 0
    assert fund.balance >= 0
    assert -ledger.balance("socialised:USDC", "USDC") == result.socialised
