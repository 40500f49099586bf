"""Insurance fund (Derive: security module) on top of the ledger.

The fund is one ledger account (``insurance_fund:<currency>``). It receives liquidation penalties
(Deribit sweeps the liquidation fee into the fund; Derive charges its liquidation fee to the
security module), covers negative equity of bankrupt accounts up to its balance and reports what
it could not cover, which is then socialised (see :mod:`pmargin.liquidation.adl`).

Currently implemented
---------------------
* :class:`InsuranceFund`: ``deposit``, ``receive_penalty``, ``pay`` (up to the balance),
  ``cover_bankruptcy``, ``withdraw``; a history of :class:`FundEvent` records.
* The fund balance never goes negative through these methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from pmargin.errors import InvalidInput
from pmargin.liquidation.ledger import (
    EXTERNAL_DEPOSITS,
    Ledger,
    Transfer,
    as_decimal,
    exact_sum,
    insurance_fund_account,
)

__all__ = ["Coverage", "FundEvent", "FundEventKind", "InsuranceFund"]


class FundEventKind(StrEnum):
    """What happened to the fund."""

    DEPOSIT = "deposit"
    PENALTY = "penalty"
    PAYOUT = "payout"
    BANKRUPTCY = "bankruptcy"
    WITHDRAWAL = "withdrawal"


@dataclass(frozen=True, slots=True)
class FundEvent:
    """One entry of the fund history.

    Parameters
    ----------
    sequence : int
        Position in the history (0, 1, ...).
    kind : FundEventKind
        Event type.
    counterparty : str
        Account that paid the fund or was paid by it.
    requested : Decimal
        Amount asked for (penalty charged, payout or deficit requested).
    amount : Decimal
        Amount that actually moved.
    uncovered : Decimal
        ``requested - amount`` for payouts and bankruptcies the fund could not cover; else 0.
    balance_after : Decimal
        Fund balance after the event.
    ref : str
        Reference of the triggering event.
    """

    sequence: int
    kind: FundEventKind
    counterparty: str
    requested: Decimal
    amount: Decimal
    uncovered: Decimal
    balance_after: Decimal
    ref: str


@dataclass(frozen=True, slots=True)
class Coverage:
    """Outcome of a payout request to the fund.

    Parameters
    ----------
    account : str
        Account to be paid.
    requested : Decimal
        Amount requested (for a bankruptcy: the deficit).
    covered : Decimal
        Amount the fund paid.
    uncovered : Decimal
        ``requested - covered``: left to be socialised.
    transfer : Transfer or None
        The posting, or None when nothing was paid.
    """

    account: str
    requested: Decimal
    covered: Decimal
    uncovered: Decimal
    transfer: Transfer | None


class InsuranceFund:
    """Insurance fund of one currency, stored as an account of a :class:`Ledger`.

    Parameters
    ----------
    ledger : Ledger
        The ledger holding the fund's balance.
    currency : str
        Currency of the fund.
    account : str, optional
        Ledger account; ``insurance_fund:<currency>`` by default.

    Examples
    --------
    >>> from decimal import Decimal
    >>> from pmargin.liquidation.ledger import Ledger
    >>> ledger = Ledger()
    >>> fund = InsuranceFund(ledger, "BTC")
    >>> _ = fund.deposit(Decimal("1"))
    >>> _ = ledger.opening("account:9:BTC", "BTC", Decimal("-3"))
    >>> cover = fund.cover_bankruptcy("account:9:BTC")
    >>> (cover.covered, cover.uncovered)
    (Decimal('1'), Decimal('2'))
    """

    def __init__(self, ledger: Ledger, currency: str, *, account: str | None = None) -> None:
        if not isinstance(currency, str) or not currency:
            raise InvalidInput("currency", currency, "must be a non-empty string")
        self._ledger = ledger
        self._currency = currency
        self._account = account if account is not None else insurance_fund_account(currency)
        self._history: list[FundEvent] = []

    @property
    def ledger(self) -> Ledger:
        """Ledger holding the fund."""
        return self._ledger

    @property
    def currency(self) -> str:
        """Currency of the fund."""
        return self._currency

    @property
    def account(self) -> str:
        """Ledger account of the fund."""
        return self._account

    @property
    def balance(self) -> Decimal:
        """Current balance of the fund."""
        return self._ledger.balance(self._account, self._currency)

    @property
    def history(self) -> tuple[FundEvent, ...]:
        """Events in order."""
        return tuple(self._history)

    @property
    def total_uncovered(self) -> Decimal:
        """Sum of all amounts the fund was asked for but could not pay."""
        return exact_sum(e.uncovered for e in self._history)

    def _amount(self, amount: Decimal, field: str = "amount") -> Decimal:
        as_decimal(amount, field)
        if amount < 0:
            raise InvalidInput(field, amount, "must be non-negative")
        if not self._ledger.is_on_grid(amount, self._currency):
            raise InvalidInput(
                field,
                amount,
                f"is not a multiple of the {self._currency} quantum "
                f"{self._ledger.quantum(self._currency)}",
            )
        return amount

    def _record(
        self,
        kind: FundEventKind,
        counterparty: str,
        requested: Decimal,
        amount: Decimal,
        ref: str,
    ) -> None:
        self._history.append(
            FundEvent(
                sequence=len(self._history),
                kind=kind,
                counterparty=counterparty,
                requested=requested,
                amount=amount,
                uncovered=exact_sum([requested, -amount])
                if kind in (FundEventKind.PAYOUT, FundEventKind.BANKRUPTCY)
                else Decimal(0),
                balance_after=self.balance,
                ref=ref,
            )
        )

    def _receive(
        self, kind: FundEventKind, payer: str, amount: Decimal, reason: str, ref: str
    ) -> Transfer | None:
        self._amount(amount)
        transfer = None
        if amount > 0:
            transfer = self._ledger.move(payer, self._account, amount, self._currency, reason, ref)
        self._record(kind, payer, amount, amount, ref)
        return transfer

    def deposit(
        self, amount: Decimal, *, source: str = EXTERNAL_DEPOSITS, ref: str = ""
    ) -> Transfer | None:
        """Seed or top up the fund.

        Parameters
        ----------
        amount : Decimal
            Non-negative amount on the quantum grid.
        source : str
            Paying account; ``external:deposits`` (fresh money) by default.
        ref : str
            Reference.

        Returns
        -------
        Transfer or None
            The posting (None for a zero amount).

        Raises
        ------
        InvalidInput
            If ``amount`` is negative, not a Decimal or off the grid.
        """
        return self._receive(FundEventKind.DEPOSIT, source, amount, "insurance fund deposit", ref)

    def receive_penalty(self, payer: str, amount: Decimal, *, ref: str = "") -> Transfer | None:
        """Book a liquidation penalty paid by ``payer`` into the fund.

        Parameters
        ----------
        payer : str
            Liquidated account.
        amount : Decimal
            Non-negative penalty on the quantum grid.
        ref : str
            Reference.

        Returns
        -------
        Transfer or None
            The posting (None for a zero penalty).

        Raises
        ------
        InvalidInput
            If ``amount`` is negative, not a Decimal or off the grid.
        """
        return self._receive(FundEventKind.PENALTY, payer, amount, "liquidation penalty", ref)

    def _pay(
        self, kind: FundEventKind, recipient: str, requested: Decimal, reason: str, ref: str
    ) -> Coverage:
        self._amount(requested, "requested")
        covered = min(requested, max(self.balance, Decimal(0)))
        transfer = None
        if covered > 0:
            transfer = self._ledger.move(
                self._account, recipient, covered, self._currency, reason, ref
            )
        self._record(kind, recipient, requested, covered, ref)
        return Coverage(recipient, requested, covered, exact_sum([requested, -covered]), transfer)

    def pay(self, recipient: str, amount: Decimal, *, ref: str = "") -> Coverage:
        """Pay ``recipient`` up to the fund balance (insolvent-auction payout).

        Parameters
        ----------
        recipient : str
            Account to pay.
        amount : Decimal
            Amount requested, non-negative, on the quantum grid.
        ref : str
            Reference.

        Returns
        -------
        Coverage
            What was paid and what was not.

        Raises
        ------
        InvalidInput
            If ``amount`` is negative, not a Decimal or off the grid.
        """
        return self._pay(FundEventKind.PAYOUT, recipient, amount, "insurance fund payout", ref)

    def cover_bankruptcy(
        self, account: str, deficit: Decimal | None = None, *, ref: str = ""
    ) -> Coverage:
        """Cover the negative equity of a bankrupt account, up to the fund balance.

        Parameters
        ----------
        account : str
            Bankrupt account.
        deficit : Decimal, optional
            Negative equity to cover, as a positive amount. When omitted, minus the account's
            ledger balance in the fund currency (zero if the balance is not negative). Pass it
            explicitly when the equity includes positions the ledger does not hold.
        ref : str
            Reference.

        Returns
        -------
        Coverage
            Covered amount and the uncovered remainder (to be socialised).

        Raises
        ------
        InvalidInput
            If ``deficit`` is negative, not a Decimal or off the grid.
        """
        if deficit is None:
            deficit = max(-self._ledger.balance(account, self._currency), Decimal(0))
        return self._pay(FundEventKind.BANKRUPTCY, account, deficit, "bankruptcy cover", ref)

    def withdraw(
        self, amount: Decimal, *, destination: str = EXTERNAL_DEPOSITS, ref: str = ""
    ) -> Transfer | None:
        """Take money out of the fund.

        Parameters
        ----------
        amount : Decimal
            Non-negative amount, at most the balance.
        destination : str
            Receiving account; ``external:deposits`` (money leaving the system) by default.
        ref : str
            Reference.

        Returns
        -------
        Transfer or None
            The posting (None for a zero amount).

        Raises
        ------
        InvalidInput
            If ``amount`` exceeds the balance, is negative, not a Decimal or off the grid.
        """
        self._amount(amount)
        if amount > self.balance:
            raise InvalidInput("amount", amount, f"exceeds the fund balance {self.balance}")
        transfer = None
        if amount > 0:
            transfer = self._ledger.move(
                self._account,
                destination,
                amount,
                self._currency,
                "insurance fund withdrawal",
                ref,
            )
        self._record(FundEventKind.WITHDRAWAL, destination, amount, amount, ref)
        return transfer
