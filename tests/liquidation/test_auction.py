"""Derive Dutch auction: simulation of the solvent and insolvent phases and their cash flows."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pmargin.errors import InvalidInput, LiquidationError
from pmargin.liquidation import (
    AuctionLot,
    AuctionPhase,
    Bidder,
    InsuranceFund,
    Ledger,
    load_auction_params,
    run_auction,
)

D = Decimal
MIN = 60
HOUR = 3600
ACC = "account:1:USDC"
LIQ1, LIQ2 = "liquidator:1:USDC", "liquidator:2:USDC"


# ----------------------------------------------------------------------------- simulation
def _setup(cash: Decimal, fund_balance: Decimal) -> tuple[Ledger, InsuranceFund]:
    ledger = Ledger()
    fund = InsuranceFund(ledger, "USDC")
    if fund_balance:
        fund.deposit(fund_balance)
    ledger.opening(ACC, "USDC", cash)
    return ledger, fund


def test_solvent_auction_with_fee_and_two_bidders() -> None:
    # Cash 680, short options worth -500: MtM = 180 < MM = 200, B = 180 - 230 = -50.
    # Fee = 10% x f(1) x MtM = 0.1 x 50/230 x 180 = 3.913043478... -> 3.91304347 (rounded down).
    # After the fee: C = 676.08695653, MtM = 176.08695653, B = -53.91304347.
    ledger, fund = _setup(D(680), D(1000))
    lot = AuctionLot(ACC, "USDC", positions_value=D(-500), maintenance_margin=D(200))
    bidders = [
        Bidder(LIQ1, max_fraction=D("0.1"), reservation_discount=D("0.8")),
        Bidder(LIQ2, max_fraction=D(1), reservation_discount=D("0.5")),
    ]
    result = run_auction(ledger, lot, bidders, fund=fund, ref="auction-1")
    assert result.fee == D("3.91304347")
    assert fund.balance == D("1003.91304347")
    assert (result.mark_to_market, result.buffer_margin) == (D(180), D(-50))

    first, second = result.fills
    # bidder 1 bids when d = 0.8: t = 900 x (0.95 - 0.8) / 0.25 = 540 s, takes 10 %:
    # pays 0.1 x 0.8 x 176.08695653 = 14.08695652, receives 10 % of the cash 67.60869565
    assert first.phase is AuctionPhase.SOLVENT
    assert (first.t_seconds, first.fraction, first.discount) == (D(540), D("0.1"), D("0.8"))
    assert first.paid_by_bidder == D("14.08695652")
    assert first.cash_share == D("67.60869565")
    # bidder 2 bids at d = 0.5: t = 900 + 43200 x (0.7 - 0.5) / 0.7 = 13242.857 s and takes
    # exactly what restores the buffer margin
    assert abs(second.t_seconds - D("13242.857142857142857")) < D("1E-12")
    assert second.fraction < D("0.9")
    assert result.terminated
    assert not result.insolvent
    rho = result.remaining_fraction
    assert rho == 1 - first.fraction - second.fraction
    cash_after = ledger.balance(ACC, "USDC")
    bm_after = cash_after + rho * D(-500) - D("1.15") * rho * D(200)
    assert abs(bm_after) < D("1E-7")  # back at buffer margin, up to rounding quanta
    # each bidder's gain is its discount: fraction x (1 - d) x MtM
    value_1 = -first.paid_by_bidder + first.cash_share + first.fraction * D(-500)
    assert abs(value_1 - D("0.1") * D("0.2") * D("176.08695653")) < D("1E-7")
    assert ledger.conservation_error("USDC") == 0
    assert all(t.ref == "auction-1" for t in result.transfers)


def test_solvent_auction_without_fee_single_bidder_at_start() -> None:
    # Fee switched off: a bidder at t = 0 (d = 0.95) may take f = 50 / (50 + 0.95 x 180)
    # = 50/221 = 0.226244343891402714 and pays f x 171 = 38.68778281
    params = load_auction_params()
    params = params.model_copy(update={"liquidator_fee_rate": D(0)})
    ledger, fund = _setup(D(680), D(0))
    lot = AuctionLot(ACC, "USDC", positions_value=D(-500), maintenance_margin=D(200))
    result = run_auction(
        ledger, lot, [Bidder(LIQ1, reservation_discount=D(1))], fund=fund, params=params
    )
    (fill,) = result.fills
    assert result.fee == 0
    assert fill.t_seconds == 0
    assert fill.discount == D("0.95")
    assert fill.fraction == D("0.226244343891402714")
    assert fill.paid_by_bidder == D("38.68778281")
    assert result.terminated


def test_insolvent_lot_fund_then_socialised() -> None:
    # Cash -100, long options worth 50: MtM = -50, MM = 20, fund holds 40.
    # The bidder bids half-way (30 min): price = -50 + (-70 + 50) x 0.5 = -60, so it is owed 60:
    # the fund pays 40, 20 is booked against socialised:USDC. It takes over the -100 of cash
    # (pays 100 into the account), so the account ends flat and the bidder gains 0.5 x MM = 10.
    ledger, fund = _setup(D(-100), D(40))
    lot = AuctionLot(ACC, "USDC", positions_value=D(50), maintenance_margin=D(20))
    result = run_auction(ledger, lot, [Bidder(LIQ1, reservation_progress=D("0.5"))], fund=fund)
    (fill,) = result.fills
    assert fill.phase is AuctionPhase.INSOLVENT
    assert (fill.t_seconds, fill.lot_price, fill.paid_to_bidder) == (D(1800), D(-60), D(60))
    assert (fill.covered_by_fund, fill.socialised, fill.cash_share) == (D(40), D(20), D(-100))
    assert result.insolvent
    assert result.terminated
    assert result.remaining_fraction == 0
    assert result.fee == 0
    assert result.socialised == D(20)
    assert ledger.balance(ACC, "USDC") == 0
    assert fund.balance == 0
    assert ledger.balance("socialised:USDC", "USDC") == D(-20)
    assert ledger.balance(LIQ1, "USDC") + D(50) == D(10)
    assert ledger.conservation_error("USDC") == 0


def test_insolvent_lot_two_partial_bidders() -> None:
    # A takes 50 % at the start (price -50: owed 25, takes -50 of cash), B the rest at the end
    # (price -70: owed 0.5 x 70 = 35, takes the remaining -50 of cash). Fund pays 60 in total.
    ledger, fund = _setup(D(-100), D(1000))
    lot = AuctionLot(ACC, "USDC", positions_value=D(50), maintenance_margin=D(20))
    bidders = [
        Bidder(LIQ2, max_fraction=D(1), reservation_progress=D(1)),
        Bidder(LIQ1, max_fraction=D("0.5"), reservation_progress=D(0)),
    ]
    result = run_auction(ledger, lot, bidders, fund=fund)
    assert [(f.bidder, f.fraction, f.paid_to_bidder, f.cash_share) for f in result.fills] == [
        (LIQ1, D("0.5"), D(25), D(-50)),
        (LIQ2, D("0.5"), D(35), D(-50)),
    ]
    assert [f.t_seconds for f in result.fills] == [D(0), D(3600)]
    assert fund.balance == D(940)
    assert ledger.balance(ACC, "USDC") == 0
    assert ledger.conservation_error("USDC") == 0


def test_expired_solvent_auction_turns_insolvent() -> None:
    # Nobody bids in the solvent phase; after 12 h 15 min the auction becomes insolvent with
    # MtM = 180 - fee > 0, so its price runs from 0 to MtM - MM.
    ledger, fund = _setup(D(680), D(1000))
    lot = AuctionLot(ACC, "USDC", positions_value=D(-500), maintenance_margin=D(200))
    result = run_auction(ledger, lot, [Bidder(LIQ1, reservation_progress=D("0.5"))], fund=fund)
    (fill,) = result.fills
    mtm = D(180) - result.fee
    assert fill.t_seconds == 12 * HOUR + 15 * MIN + 30 * MIN
    assert fill.lot_price == (mtm - 200) * D("0.5")
    assert fill.paid_to_bidder == ledger.quantize((200 - mtm) * D("0.5"), "USDC")
    assert result.insolvent
    assert result.terminated
    assert ledger.balance(ACC, "USDC") == 0
    assert ledger.conservation_error("USDC") == 0


def test_auction_left_unfinished_reports_remaining_fraction() -> None:
    ledger, fund = _setup(D(-100), D(1000))
    lot = AuctionLot(ACC, "USDC", positions_value=D(50), maintenance_margin=D(20))
    result = run_auction(
        ledger, lot, [Bidder(LIQ1, D("0.25"), reservation_progress=D(0))], fund=fund
    )
    assert result.remaining_fraction == D("0.75")
    assert not result.terminated
    assert ledger.balance(ACC, "USDC") == D(-75)


def test_auction_refuses_healthy_accounts_and_bad_bidders() -> None:
    ledger, fund = _setup(D(1000), D(0))
    lot = AuctionLot(ACC, "USDC", positions_value=D(-500), maintenance_margin=D(200))
    with pytest.raises(LiquidationError, match="not below maintenance"):
        run_auction(ledger, lot, [], fund=fund)
    low = AuctionLot(ACC, "USDC", positions_value=D(-900), maintenance_margin=D(200))
    with pytest.raises(InvalidInput, match="twice"):
        run_auction(ledger, low, [Bidder(LIQ1), Bidder(LIQ1)], fund=fund)
    with pytest.raises(InvalidInput, match="liquidated account"):
        run_auction(ledger, low, [Bidder(ACC)], fund=fund)
    with pytest.raises(InvalidInput, match="lot currency"):
        run_auction(ledger, low, [], fund=InsuranceFund(ledger, "BTC"))
    with pytest.raises(InvalidInput, match=r"\(0, 1\]"):
        Bidder(LIQ1, max_fraction=D(0))
    with pytest.raises(InvalidInput, match="non-negative"):
        AuctionLot(ACC, "USDC", positions_value=D(1), maintenance_margin=D(-1))


def test_multi_bid_sequence_in_a_moving_market() -> None:
    # Hand calculation (fee switched off). Cash 680, positions worth -500, MM 200; at t = 300 s
    # the market moves: the whole original portfolio is then worth -560 with MM 220.
    # Every bid is sized and priced on the current state, with the reserved cash R (what
    # earlier bidders paid in) excluded from the slice sold: price d (M - R),
    # f_max = B / (B - d M - R (1 - d)), B = M - 1.15 x MM.
    params = load_auction_params().model_copy(update={"liquidator_fee_rate": D(0)})
    ledger, fund = _setup(D(680), D(0))
    lot = AuctionLot(
        ACC, "USDC", positions_value=D(-500), maintenance_margin=D(200),
        mark_path=((D(300), D(-560), D(220)),),
    )
    bidders = [
        Bidder(LIQ1, max_fraction=D("0.2"), reservation_discount=D("0.9")),  # t = 180 s
        Bidder(LIQ2, max_fraction=D("0.25"), reservation_discount=D("0.8")),  # t = 540 s
        Bidder("liquidator:3:USDC", max_fraction=D(1), reservation_discount=D("0.75")),  # 720 s
    ]
    for b in bidders:
        ledger.opening(b.account, "USDC", D(1000))
    result = run_auction(ledger, lot, bidders, fund=fund, params=params)
    f1, f2, f3 = result.fills
    # Bid 1 (t = 180, d = 0.9, old marks): M = 180, B = 180 - 230 = -50, R = 0,
    # f_max = 50 / (50 + 162) = 0.2358 > 0.2: takes 0.2, pays 0.2 x 0.9 x 180 = 32.4 and
    # receives 0.2 x 680 = 136 of cash. Cash 680 - 136 + 32.4 = 576.4, R = 32.4, 0.8 left.
    assert (f1.t_seconds, f1.discount, f1.fraction) == (D(180), D("0.9"), D("0.2"))
    assert (f1.paid_by_bidder, f1.cash_share) == (D("32.4"), D(136))
    # Bid 2 (t = 540, d = 0.8, new marks): M = 576.4 - 0.8 x 560 = 128.4,
    # MM = 0.8 x 220 = 176, B = 128.4 - 202.4 = -74,
    # f_max = 74 / (74 + 0.8 x 128.4 + 0.2 x 32.4) = 74 / 183.2 = 0.404 > 0.25: takes 0.25 of
    # the current portfolio (0.2 of the original), pays 0.25 x 0.8 x (128.4 - 32.4) = 19.2 and
    # receives 0.25 x (576.4 - 32.4) = 136 of the non-reserved cash.
    # Cash 576.4 - 136 + 19.2 = 459.6, R = 51.6, 0.6 left.
    assert (f2.t_seconds, f2.discount, f2.fraction) == (D(540), D("0.8"), D("0.2"))
    assert (f2.paid_by_bidder, f2.cash_share) == (D("19.2"), D(136))
    assert f2.lot_price == D("76.8")
    # Bid 3 (t = 720, d = 0.75): M = 459.6 - 0.6 x 560 = 123.6, MM = 132,
    # B = 123.6 - 151.8 = -28.2, f_max = 28.2 / (28.2 + 92.7 + 0.25 x 51.6) = 28.2 / 133.8:
    # the backstop asks for everything and is capped there; it pays f x 0.75 x 72 = f x 54 and
    # receives f x (459.6 - 51.6) = f x 408.
    f_max = (D("28.2") / D("133.8")).quantize(D("1e-18"), rounding="ROUND_DOWN")
    assert f3.t_seconds == D(720)
    assert f3.fraction == f_max * D("0.6")
    assert f3.paid_by_bidder == (f_max * 54).quantize(D("1e-8"))
    assert f3.cash_share == (f_max * 408).quantize(D("1e-8"))
    assert result.terminated
    assert not result.insolvent
    # afterwards the buffer margin is back at zero (up to the rounding quanta)
    rho = 1 - f1.fraction - f2.fraction - f3.fraction
    assert result.remaining_fraction == rho
    cash = ledger.balance(ACC, "USDC")
    assert cash == D("459.6") - f3.cash_share + f3.paid_by_bidder
    assert abs(cash + rho * D(-560) - D("1.15") * rho * D(220)) < D("1e-7")
    assert ledger.conservation_error("USDC") == 0


def test_solvent_auction_stops_when_the_market_wipes_the_account_out() -> None:
    # Cash 680, positions -500, MM 200; bidder 1 takes 20 % at t = 180 (as above: cash 576.4,
    # R = 32.4). At t = 300 the positions are worth -800: M = 576.4 - 640 < 0, so the solvent
    # auction stops at bidder 2's turn and the rest goes to the insolvent auction (from t = 540).
    params = load_auction_params().model_copy(update={"liquidator_fee_rate": D(0)})
    ledger, fund = _setup(D(680), D(1000))
    lot = AuctionLot(
        ACC, "USDC", positions_value=D(-500), maintenance_margin=D(200),
        mark_path=((D(300), D(-800), D(300)),),
    )
    bidders = [
        Bidder(LIQ1, max_fraction=D("0.2"), reservation_discount=D("0.9")),
        Bidder(LIQ2, max_fraction=D(1), reservation_discount=D("0.8"), reservation_progress=D(0)),
    ]
    for b in bidders:
        ledger.opening(b.account, "USDC", D(1000))
    result = run_auction(ledger, lot, bidders, fund=fund, params=params)
    f1, f2 = result.fills
    assert f1.phase is AuctionPhase.SOLVENT
    assert f2.phase is AuctionPhase.INSOLVENT
    assert result.insolvent
    assert result.terminated
    # insolvent lot: cash 576.4, 0.8 x -800 = -640: M = -63.6; at progress 0 the fund pays
    # the bankruptcy amount 63.6 to take it all
    assert f2.t_seconds == D(540)
    assert f2.paid_to_bidder == D("63.6")
    assert ledger.conservation_error("USDC") == 0
