r"""Liquidator takeover: positions handed over at a fixed discount to mark (Drift, Mango)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, localcontext

from pmargin.errors import InvalidInput
from pmargin.liquidation.auction_params import AuctionParams, load_auction_params
from pmargin.liquidation.insurance_fund import InsuranceFund
from pmargin.liquidation.ledger import Ledger, Transfer, as_decimal, fees_account

__all__ = ["TakeoverResult", "takeover"]


@dataclass(frozen=True, slots=True)
class TakeoverResult:
    """Outcome of :func:`takeover`.

    Parameters
    ----------
    account : str
        Liquidated account.
    liquidator : str
        Account taking the positions over.
    fraction : Decimal
        Fraction of the positions taken over.
    positions_value : Decimal
        Signed mark value of the slice taken over.
    price : Decimal
        Cash paid by the liquidator to the account (negative: paid to the liquidator).
    discount_amount : Decimal
        Liquidator's reward, ``discount * |value|``.
    penalty : Decimal
        Penalty paid by the account to the insurance fund (or the fee account).
    transfers : tuple of Transfer
        Postings.
    """

    account: str
    liquidator: str
    fraction: Decimal
    positions_value: Decimal
    price: Decimal
    discount_amount: Decimal
    penalty: Decimal
    transfers: tuple[Transfer, ...]


def takeover(
    ledger: Ledger,
    *,
    account: str,
    liquidator: str,
    positions_value: Decimal,
    currency: str,
    fraction: Decimal = Decimal(1),
    fund: InsuranceFund | None = None,
    params: AuctionParams | None = None,
    ref: str = "",
) -> TakeoverResult:
    r"""Let a liquidator take positions over at a fixed discount to mark.

    Parameters
    ----------
    ledger : Ledger
        Ledger receiving the postings.
    account : str
        Liquidated account.
    liquidator : str
        Account taking the positions over.
    positions_value : Decimal
        Signed mark value of the account's positions.
    currency : str
        Settlement currency.
    fraction : Decimal
        Fraction of the positions taken, in (0, 1].
    fund : InsuranceFund, optional
        Receives the penalty; without it the penalty goes to ``fees:<currency>``.
    params : AuctionParams, optional
        Parameters (``[takeover]``); the shipped defaults when omitted.
    ref : str
        Reference.

    Returns
    -------
    TakeoverResult
        Price, reward, penalty and postings.

    Raises
    ------
    InvalidInput
        If an amount is not a Decimal, ``fraction`` is outside (0, 1], the accounts coincide or
        the fund's currency differs.

    Notes
    -----
    For a slice of value :math:`v = \phi V`: the liquidator pays :math:`v - \delta |v|` (a long
    portfolio is bought below mark, a short one is taken with a payment above its liability) and
    the account pays a penalty :math:`r |v|` (rounded down) to the fund, capped at what the
    account still has afterwards, :math:`C + \text{price} + (1 - \phi) V` (zero for a
    bankrupt account).
    """
    p = params if params is not None else load_auction_params()
    as_decimal(positions_value, "positions_value")
    as_decimal(fraction, "fraction")
    if not 0 < fraction <= 1:
        raise InvalidInput("fraction", fraction, "must be in (0, 1]")
    if account == liquidator:
        raise InvalidInput("liquidator", liquidator, "must differ from the liquidated account")
    if fund is not None and (fund.currency != currency or fund.ledger is not ledger):
        raise InvalidInput("fund", fund.account, f"must be a {currency} fund of this ledger")
    with localcontext(ledger.decimal_context()):
        value = fraction * positions_value
        reward = ledger.quantize(p.takeover.discount * abs(value), currency)
        price = ledger.quantize(value, currency) - reward
        penalty = ledger.quantize(p.takeover.insurance_fee_rate * abs(value), currency, ROUND_DOWN)
        # the penalty is capped at what the account still has after the slice is sold (its
        # cash plus the positions it keeps): a bankrupt account pays none
        left = ledger.balance(account, currency) + price + (1 - fraction) * positions_value
        penalty = max(Decimal(0), min(penalty, ledger.quantize(left, currency, ROUND_DOWN)))
    transfers: list[Transfer] = []
    if price > 0:
        transfers.append(ledger.move(liquidator, account, price, currency, "takeover", ref))
    elif price < 0:
        transfers.append(ledger.move(account, liquidator, -price, currency, "takeover", ref))
    if penalty > 0:
        if fund is not None:
            t = fund.receive_penalty(account, penalty, ref=ref)
            if t is not None:
                transfers.append(t)
        else:
            transfers.append(
                ledger.move(
                    account, fees_account(currency), penalty, currency, "liquidation penalty", ref
                )
            )
    return TakeoverResult(
        account=account,
        liquidator=liquidator,
        fraction=fraction,
        positions_value=value,
        price=price,
        discount_amount=reward,
        penalty=penalty,
        transfers=tuple(transfers),
    )
