"""Liquidation machinery: money ledger, insurance fund, ADL, socialised loss, auctions.

Currently implemented
---------------------
* :mod:`~pmargin.liquidation.ledger`: double-entry Decimal ledger with exact conservation.
* :mod:`~pmargin.liquidation.insurance_fund`: penalties in, bankruptcy cover out, history.
* :mod:`~pmargin.liquidation.adl`: BitMEX ADL ranking (positions and whole accounts),
  deleveraging at the bankruptcy price, cash ADL; pro-rata socialised loss.
* :mod:`~pmargin.liquidation.auction_params`, :mod:`~pmargin.liquidation.auction_schedule`,
  :mod:`~pmargin.liquidation.auction`: Derive Dutch auction (parameters, price schedule and
  sizing, simulation of the solvent and insolvent phases).
* :mod:`~pmargin.liquidation.takeover`: liquidator takeover at a discount to mark.
* :mod:`~pmargin.liquidation.liquidity`: closing cost from spread and linear impact.
* :mod:`~pmargin.liquidation.health`: healthy / margin call / liquidation / bankrupt.

Modules that need a margin model are imported explicitly (not re-exported here):
:mod:`~pmargin.liquidation.planner` (vectorised surgical liquidation of a whole book),
:mod:`~pmargin.liquidation.cascade` and :mod:`~pmargin.liquidation.stress` (price-impact
cascades), :mod:`~pmargin.liquidation.execution` (takeover or auction of one account).
"""

from __future__ import annotations

from pmargin.liquidation.adl import (
    ADLFill,
    ADLRanking,
    ADLResult,
    SocialisedLoss,
    adl_cash_shares,
    adl_scores,
    auto_deleverage,
    effective_leverage,
    pnl_fraction,
    rank_accounts,
    rank_adl,
    socialise_loss,
    socialised_loss_shares,
)
from pmargin.liquidation.auction import (
    AuctionFill,
    AuctionLot,
    AuctionPhase,
    AuctionResult,
    Bidder,
    run_auction,
)
from pmargin.liquidation.auction_params import (
    AuctionParams,
    InsolventAuctionParams,
    SolventAuctionParams,
    TakeoverParams,
    load_auction_params,
)
from pmargin.liquidation.auction_schedule import (
    buffer_margin,
    discount_at,
    discount_curve,
    insolvent_bid_price,
    max_liquidation_fraction,
    solvent_bid_price,
)
from pmargin.liquidation.health import HealthState, classify, classify_one
from pmargin.liquidation.insurance_fund import Coverage, FundEvent, FundEventKind, InsuranceFund
from pmargin.liquidation.ledger import (
    EXTERNAL_DEPOSITS,
    Ledger,
    LedgerParams,
    Transfer,
    account_id,
    allocate_pro_rata,
    as_decimal,
    exact_sum,
    fees_account,
    floor_to_quantum,
    insurance_fund_account,
    liquidator_account,
    load_ledger_params,
    socialised_account,
)
from pmargin.liquidation.liquidity import (
    ClosingCost,
    KindLiquidity,
    LiquidityParams,
    closing_cost,
    load_liquidity_params,
)
from pmargin.liquidation.takeover import TakeoverResult, takeover

__all__ = [
    "EXTERNAL_DEPOSITS",
    "ADLFill",
    "ADLRanking",
    "ADLResult",
    "AuctionFill",
    "AuctionLot",
    "AuctionParams",
    "AuctionPhase",
    "AuctionResult",
    "Bidder",
    "ClosingCost",
    "Coverage",
    "FundEvent",
    "FundEventKind",
    "HealthState",
    "InsolventAuctionParams",
    "InsuranceFund",
    "KindLiquidity",
    "Ledger",
    "LedgerParams",
    "LiquidityParams",
    "SocialisedLoss",
    "SolventAuctionParams",
    "TakeoverParams",
    "TakeoverResult",
    "Transfer",
    "account_id",
    "adl_cash_shares",
    "adl_scores",
    "allocate_pro_rata",
    "as_decimal",
    "auto_deleverage",
    "buffer_margin",
    "classify",
    "classify_one",
    "closing_cost",
    "discount_at",
    "discount_curve",
    "effective_leverage",
    "exact_sum",
    "fees_account",
    "floor_to_quantum",
    "insolvent_bid_price",
    "insurance_fund_account",
    "liquidator_account",
    "load_auction_params",
    "load_ledger_params",
    "load_liquidity_params",
    "max_liquidation_fraction",
    "pnl_fraction",
    "rank_accounts",
    "rank_adl",
    "run_auction",
    "socialise_loss",
    "socialised_account",
    "socialised_loss_shares",
    "solvent_bid_price",
    "takeover",
]
