"""Double-entry money ledger of the liquidation engine.

Every movement of money is a :class:`Transfer` from one account (``debit``, its balance goes
down) to another (``credit``, its balance goes up), in one currency, for a positive
:class:`decimal.Decimal` amount. The sum of all balances of a currency is therefore always exactly
zero: money that enters the system comes from ``external:deposits`` (whose balance is minus the
deposits outstanding), so assets equal liabilities by construction.

Currently implemented
---------------------
* :class:`Transfer` (frozen) and :class:`Ledger` with :meth:`Ledger.post`, atomic
  :meth:`Ledger.post_many`, :meth:`Ledger.opening`, balances and totals.
* :meth:`Ledger.conservation_error`: sum of balances plus drift between cached balances and a
  replay of the journal (exactly ``Decimal(0)`` when money is conserved).
* Quantisation policy from ``ledger.toml``: per-currency quantum, exact additions (the decimal
  ``Inexact`` signal is trapped), :func:`allocate_pro_rata` (largest-remainder split whose shares
  sum exactly to the total).
* Account-name helpers (``account:42:BTC``, ``insurance_fund:BTC``, ``fees:BTC``,
  ``liquidator:7:BTC``, ``socialised:BTC``).

Account names are plain strings; the balance of an account is kept per currency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from fractions import Fraction
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from pmargin.errors import InvalidInput
from pmargin.liquidation._params import FrozenParams, load_params_file

__all__ = [
    "EXTERNAL_DEPOSITS",
    "Ledger",
    "LedgerParams",
    "Transfer",
    "account_id",
    "allocate_pro_rata",
    "as_decimal",
    "exact_sum",
    "fees_account",
    "floor_to_quantum",
    "insurance_fund_account",
    "liquidator_account",
    "load_ledger_params",
    "socialised_account",
]

EXTERNAL_DEPOSITS = "external:deposits"
"""Counterparty of every opening balance: money entering the closed system."""


# ----------------------------------------------------------------------------- account names
def account_id(account: int | str, currency: str) -> str:
    """Return the ledger name of a trading account, e.g. ``"account:42:BTC"``.

    Parameters
    ----------
    account : int or str
        Account identifier.
    currency : str
        Currency of the balance.

    Returns
    -------
    str
        ``f"account:{account}:{currency}"``.
    """
    return f"account:{account}:{currency}"


def insurance_fund_account(currency: str) -> str:
    """Return the ledger name of the insurance fund of a currency, e.g. ``"insurance_fund:BTC"``."""
    return f"insurance_fund:{currency}"


def fees_account(currency: str) -> str:
    """Return the ledger name of the exchange fee account, e.g. ``"fees:BTC"``."""
    return f"fees:{currency}"


def liquidator_account(liquidator: int | str, currency: str) -> str:
    """Return the ledger name of a liquidator (bidder), e.g. ``"liquidator:7:BTC"``."""
    return f"liquidator:{liquidator}:{currency}"


def socialised_account(currency: str) -> str:
    """Return the clearing account of socialised losses, e.g. ``"socialised:BTC"``.

    Its balance is negative while losses that neither the insurance fund nor anyone else has
    paid yet are pending, and returns to zero once they are socialised.
    """
    return f"socialised:{currency}"


# ----------------------------------------------------------------------------- parameters
class LedgerParams(FrozenParams):
    """Money policy: quantum per currency and working precision (``ledger.toml``)."""

    schema_version: int = 1
    name: str
    source: str
    assumptions: tuple[str, ...] = ()
    decimal_precision: int = Field(ge=28, le=1000)
    """Significant digits of the decimal context of balances."""
    default_quantum: Decimal = Field(gt=0)
    """Quantum of currencies not listed in ``quanta``."""
    quanta: dict[str, Decimal] = Field(default_factory=dict)
    """Smallest bookable amount per currency, a power of ten."""

    @field_validator("default_quantum")
    @classmethod
    def _power_of_ten(cls, value: Decimal) -> Decimal:
        _check_power_of_ten(value)
        return value

    @field_validator("quanta")
    @classmethod
    def _powers_of_ten(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for q in value.values():
            _check_power_of_ten(q)
        return value

    def quantum(self, currency: str) -> Decimal:
        """Return the quantum of ``currency``."""
        return self.quanta.get(currency, self.default_quantum)


def _check_power_of_ten(value: Decimal) -> None:
    if not (value.is_finite() and value > 0 and value.normalize().as_tuple().digits == (1,)):
        raise ValueError(f"quantum {value} is not a positive power of ten")


def load_ledger_params(path: str | Path | None = None) -> LedgerParams:
    """Load the ledger money policy.

    Parameters
    ----------
    path : str or Path, optional
        A TOML file; the shipped ``ledger.toml`` when omitted (cached).

    Returns
    -------
    LedgerParams
        Validated parameters.

    Raises
    ------
    ParamsError
        If the file is unreadable or invalid.
    """
    return load_params_file(LedgerParams, "ledger.toml", path)


# ----------------------------------------------------------------------------- values
def as_decimal(value: Any, field: str) -> Decimal:
    """Check that ``value`` is a finite :class:`~decimal.Decimal` and return it.

    Parameters
    ----------
    value : Any
        Candidate amount.
    field : str
        Field name for the error message.

    Returns
    -------
    Decimal
        ``value`` itself.

    Raises
    ------
    InvalidInput
        If ``value`` is not a Decimal (floats are rejected: they cannot represent money exactly)
        or is NaN or infinite.
    """
    if not isinstance(value, Decimal):
        raise InvalidInput(field, value, f"must be a decimal.Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise InvalidInput(field, value, "must be finite")
    return value


def _check_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, value, "must be a non-empty string")
    return value


@dataclass(frozen=True, slots=True)
class Transfer:
    """One balanced posting: ``amount`` moves from ``debit`` to ``credit``.

    Parameters
    ----------
    debit : str
        Account whose balance decreases (pays).
    credit : str
        Account whose balance increases (receives).
    amount : Decimal
        Positive amount in ``currency``.
    currency : str
        Currency code, e.g. ``"BTC"`` or ``"USDC"``.
    reason : str
        Why the money moved (``"liquidation penalty"``, ``"adl close"``, ...).
    ref : str
        Free reference tying postings of one event together (auction id, ...).

    Raises
    ------
    InvalidInput
        If an account or the currency is empty, debit equals credit, or the amount is not a
        positive finite Decimal.
    """

    debit: str
    credit: str
    amount: Decimal
    currency: str
    reason: str
    ref: str = ""

    def __post_init__(self) -> None:
        _check_name(self.debit, "transfer.debit")
        _check_name(self.credit, "transfer.credit")
        _check_name(self.currency, "transfer.currency")
        _check_name(self.reason, "transfer.reason")
        if not isinstance(self.ref, str):
            raise InvalidInput("transfer.ref", self.ref, "must be a string")
        if self.debit == self.credit:
            raise InvalidInput("transfer.credit", self.credit, "must differ from the debit account")
        as_decimal(self.amount, "transfer.amount")
        if not self.amount > 0:
            raise InvalidInput("transfer.amount", self.amount, "must be positive")


# ----------------------------------------------------------------------------- pro-rata split
def floor_to_quantum(value: Decimal, quantum: Decimal) -> Decimal:
    """Round ``value`` toward minus infinity onto the ``quantum`` grid, exactly.

    Parameters
    ----------
    value : Decimal
        Any finite amount.
    quantum : Decimal
        Positive power of ten.

    Returns
    -------
    Decimal
        The largest multiple of ``quantum`` not above ``value`` (no precision limit).

    Raises
    ------
    InvalidInput
        If an argument is not a finite Decimal or ``quantum`` is not a power of ten.
    """
    as_decimal(value, "value")
    as_decimal(quantum, "quantum")
    try:
        _check_power_of_ten(quantum)
    except ValueError as exc:
        raise InvalidInput("quantum", quantum, "must be a positive power of ten") from exc
    units = Fraction(value) / Fraction(quantum)
    return _from_units(units.numerator // units.denominator, quantum)


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """Return the exact sum of finite Decimals, whatever the number of digits.

    Parameters
    ----------
    values : iterable of Decimal
        Finite amounts.

    Returns
    -------
    Decimal
        Their sum, computed in integer arithmetic (no context precision applies).

    Raises
    ------
    InvalidInput
        If a value is not a finite Decimal.
    """
    terms = [as_decimal(v, "values") for v in values]
    if not terms:
        return Decimal(0)
    exponent = min(int(v.as_tuple().exponent) for v in terms)
    units = 0
    for v in terms:
        sign, digits, exp = v.as_tuple()
        magnitude = int("".join(map(str, digits)) or "0") * 10 ** (int(exp) - exponent)
        units += -magnitude if sign else magnitude
    return Decimal(f"{units}E{exponent}") if units else Decimal(0)


def _from_units(units: int, quantum: Decimal) -> Decimal:
    # built from a string: exact whatever the size (constructors never round)
    if units == 0:
        return Decimal(0)
    return Decimal(f"{units}E{int(quantum.normalize().as_tuple().exponent)}")


def allocate_pro_rata(
    total: Decimal, weights: Sequence[Decimal], quantum: Decimal
) -> list[Decimal]:
    r"""Split ``total`` in proportion to ``weights`` into amounts on the ``quantum`` grid.

    Parameters
    ----------
    total : Decimal
        Non-negative amount to split, a multiple of ``quantum``.
    weights : sequence of Decimal
        Non-negative weights, not all zero.
    quantum : Decimal
        Grid of the shares (the currency quantum).

    Returns
    -------
    list of Decimal
        Shares, one per weight, each a multiple of ``quantum``, summing exactly to ``total``.

    Raises
    ------
    InvalidInput
        If an argument is not a Decimal, a weight is negative, all weights are zero, or
        ``total`` is negative or off the grid.

    Notes
    -----
    Largest-remainder (Hamilton) rule, in exact rational arithmetic: every share is first
    rounded down to the grid, :math:`s_i = q\lfloor T w_i / (q \sum w)\rfloor`; the residue
    :math:`T - \sum s_i` (fewer than ``len(weights)`` quanta) is then handed out one quantum
    at a time to the largest remainders, ties going to the lowest index. The rule is
    deterministic and never gives a share more than one quantum above its exact value.
    """
    as_decimal(total, "total")
    as_decimal(quantum, "quantum")
    try:
        _check_power_of_ten(quantum)
    except ValueError as exc:
        raise InvalidInput("quantum", quantum, "must be a positive power of ten") from exc
    if total < 0:
        raise InvalidInput("total", total, "must be non-negative")
    units_total = Fraction(total) / Fraction(quantum)
    if units_total.denominator != 1:
        raise InvalidInput("total", total, f"is not a multiple of the quantum {quantum}")
    fractions = [Fraction(as_decimal(w, f"weights[{i}]")) for i, w in enumerate(weights)]
    for i, w in enumerate(fractions):
        if w < 0:
            raise InvalidInput(f"weights[{i}]", weights[i], "must be non-negative")
    weight_sum = sum(fractions, Fraction(0))
    if weight_sum == 0:
        if units_total == 0:
            return [Decimal(0) for _ in fractions]
        raise InvalidInput("weights", list(weights), "must not all be zero")
    n_units = int(units_total)
    floors: list[int] = []
    remainders: list[Fraction] = []
    for w in fractions:
        exact = n_units * w / weight_sum
        fl = exact.numerator // exact.denominator
        floors.append(fl)
        remainders.append(exact - fl)
    residue = n_units - sum(floors)
    for i in sorted(range(len(floors)), key=lambda j: (-remainders[j], j))[:residue]:
        floors[i] += 1
    return [_from_units(u, quantum) for u in floors]


# ----------------------------------------------------------------------------- ledger
class Ledger:
    """Double-entry ledger of Decimal balances keyed by (account, currency).

    Parameters
    ----------
    params : LedgerParams, optional
        Money policy; the shipped ``ledger.toml`` when omitted.

    Notes
    -----
    *Quantisation.* Every amount must lie on the quantum grid of its currency (``ledger.toml``:
    1e-18 for coins, 1e-8 for USD, USDC and USDT). The ledger never rounds silently: an off-grid
    amount is rejected, and callers round explicitly with :meth:`quantize` (``ROUND_HALF_EVEN`` by
    default) or split with :func:`allocate_pro_rata`, whose largest-remainder rule sends the
    rounding residue to deterministic accounts so that the parts add up exactly.

    *Exactness.* Balances are updated in a decimal context that traps ``Inexact``, so an addition
    that would need rounding raises instead of creating or destroying money.

    Examples
    --------
    >>> from decimal import Decimal
    >>> ledger = Ledger()
    >>> _ = ledger.opening("account:1:BTC", "BTC", Decimal("2"))
    >>> _ = ledger.post(Transfer("account:1:BTC", "insurance_fund:BTC", Decimal("0.5"), "BTC",
    ...                          "liquidation penalty"))
    >>> ledger.balance("account:1:BTC", "BTC")
    Decimal('1.5')
    >>> ledger.conservation_error("BTC")
    Decimal('0')
    """

    def __init__(self, params: LedgerParams | None = None) -> None:
        self._params = params if params is not None else load_ledger_params()
        prec = self._params.decimal_precision
        self._exact = Context(
            prec=prec,
            rounding=ROUND_HALF_EVEN,
            traps=[Inexact, InvalidOperation, DivisionByZero, Overflow],
        )
        self._rounding = Context(
            prec=prec, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
        )
        self._balances: dict[tuple[str, str], Decimal] = {}
        self._journal: list[Transfer] = []

    # -- policy -------------------------------------------------------------------------------
    @property
    def params(self) -> LedgerParams:
        """Money policy in force."""
        return self._params

    def decimal_context(self) -> Context:
        """Return a copy of the working decimal context (ledger precision, half-even rounding).

        Use it with :func:`decimal.localcontext` for intermediate money arithmetic whose result
        is then rounded with :meth:`quantize`.
        """
        return self._rounding.copy()

    def quantum(self, currency: str) -> Decimal:
        """Return the smallest bookable amount of ``currency``."""
        return self._params.quantum(currency)

    def quantize(self, amount: Decimal, currency: str, rounding: str = ROUND_HALF_EVEN) -> Decimal:
        """Round ``amount`` to the quantum grid of ``currency``.

        Parameters
        ----------
        amount : Decimal
            Any finite amount (sign kept).
        currency : str
            Currency whose quantum applies.
        rounding : str
            A :mod:`decimal` rounding mode; ``ROUND_HALF_EVEN`` by default.

        Returns
        -------
        Decimal
            The rounded amount.

        Raises
        ------
        InvalidInput
            If ``amount`` is not a finite Decimal or too large for the working precision.
        """
        as_decimal(amount, "amount")
        try:
            return amount.quantize(
                self.quantum(currency), rounding=rounding, context=self._rounding
            )
        except InvalidOperation as exc:
            raise InvalidInput("amount", amount, "is too large for the ledger precision") from exc

    def is_on_grid(self, amount: Decimal, currency: str) -> bool:
        """Return whether ``amount`` is an exact multiple of the quantum of ``currency``."""
        try:
            return self.quantize(amount, currency) == amount
        except InvalidInput:
            return False

    # -- posting ------------------------------------------------------------------------------
    def validate(self, transfer: Transfer) -> None:
        """Check that ``transfer`` can be posted.

        Parameters
        ----------
        transfer : Transfer
            Candidate posting.

        Raises
        ------
        InvalidInput
            If ``transfer`` is not a :class:`Transfer`, or its amount is off the quantum grid or
            too large for the working precision.
        """
        if not isinstance(transfer, Transfer):
            raise InvalidInput("transfer", transfer, "must be a Transfer")
        if self.quantize(transfer.amount, transfer.currency) != transfer.amount:
            raise InvalidInput(
                "transfer.amount",
                transfer.amount,
                f"is not a multiple of the {transfer.currency} quantum "
                f"{self.quantum(transfer.currency)}; round it with Ledger.quantize",
            )

    def _apply(self, transfers: Sequence[Transfer]) -> None:
        updated: dict[tuple[str, str], Decimal] = {}
        with localcontext(self._exact):
            for t in transfers:
                dkey, ckey = (t.debit, t.currency), (t.credit, t.currency)
                updated[dkey] = updated.get(dkey, self._balances.get(dkey, Decimal(0))) - t.amount
                updated[ckey] = updated.get(ckey, self._balances.get(ckey, Decimal(0))) + t.amount
        # nothing above can have changed state; commit in one go
        self._balances.update(updated)
        self._journal.extend(transfers)

    def post(self, transfer: Transfer) -> Transfer:
        """Post one transfer.

        Parameters
        ----------
        transfer : Transfer
            The posting.

        Returns
        -------
        Transfer
            The posted transfer.

        Raises
        ------
        InvalidInput
            If the transfer is invalid (see :meth:`validate`) or a balance would exceed the
            working precision.
        """
        return self.post_many([transfer])[0]

    def post_many(self, transfers: Iterable[Transfer]) -> tuple[Transfer, ...]:
        """Post several transfers atomically: either all are posted or none.

        Parameters
        ----------
        transfers : iterable of Transfer
            Postings, applied in order.

        Returns
        -------
        tuple of Transfer
            The posted transfers.

        Raises
        ------
        InvalidInput
            If any transfer is invalid; the ledger is then unchanged.
        """
        batch = tuple(transfers)
        for t in batch:
            self.validate(t)
        try:
            self._apply(batch)
        except (Inexact, InvalidOperation, Overflow) as exc:
            raise InvalidInput(
                "transfers", len(batch), "a balance would exceed the ledger precision"
            ) from exc
        return batch

    def move(
        self,
        debit: str,
        credit: str,
        amount: Decimal,
        currency: str,
        reason: str,
        ref: str = "",
    ) -> Transfer:
        """Build and post a :class:`Transfer` (shorthand for ``post(Transfer(...))``)."""
        return self.post(Transfer(debit, credit, amount, currency, reason, ref))

    def opening(self, account: str, currency: str, amount: Decimal, ref: str = "") -> Transfer:
        """Post an opening balance against ``external:deposits``.

        Parameters
        ----------
        account : str
            Account receiving the balance.
        currency : str
            Currency.
        amount : Decimal
            Non-zero amount on the quantum grid. A negative amount opens a debt (the account is
            debited and ``external:deposits`` credited).
        ref : str
            Reference.

        Returns
        -------
        Transfer
            The posting.

        Raises
        ------
        InvalidInput
            If ``amount`` is zero, not a Decimal or off the grid.
        """
        as_decimal(amount, "amount")
        if amount == 0:
            raise InvalidInput("amount", amount, "must be non-zero")
        if amount > 0:
            return self.move(EXTERNAL_DEPOSITS, account, amount, currency, "opening balance", ref)
        return self.move(account, EXTERNAL_DEPOSITS, -amount, currency, "opening debt", ref)

    # -- queries ------------------------------------------------------------------------------
    def balance(self, account: str, currency: str) -> Decimal:
        """Return the balance of ``account`` in ``currency`` (zero if never touched)."""
        return self._balances.get((account, currency), Decimal(0))

    def balances(self, currency: str | None = None) -> dict[tuple[str, str], Decimal]:
        """Return every balance, keyed by ``(account, currency)`` and sorted by key.

        Parameters
        ----------
        currency : str, optional
            Restrict to one currency.

        Returns
        -------
        dict
            A copy; accounts touched at least once are included even at zero.
        """
        return {
            k: v for k, v in sorted(self._balances.items()) if currency is None or k[1] == currency
        }

    def accounts(self, currency: str | None = None) -> tuple[str, ...]:
        """Return the names of the accounts touched (in ``currency`` if given), sorted."""
        return tuple(sorted({a for a, c in self._balances if currency is None or c == currency}))

    def currencies(self) -> tuple[str, ...]:
        """Return the currencies that appear in the ledger, sorted."""
        return tuple(sorted({c for _, c in self._balances}))

    @property
    def journal(self) -> tuple[Transfer, ...]:
        """All postings in order."""
        return tuple(self._journal)

    def __len__(self) -> int:
        return len(self._journal)

    def total(self, currency: str) -> Decimal:
        """Return the sum of all balances of ``currency`` (exactly zero in a closed system)."""
        with localcontext(self._exact):
            return sum((v for (_, c), v in self._balances.items() if c == currency), Decimal(0))

    def replay(self, currency: str) -> dict[str, Decimal]:
        """Recompute the balances of ``currency`` from the journal alone.

        Returns
        -------
        dict of str to Decimal
            Balance per account.
        """
        out: dict[str, Decimal] = {}
        with localcontext(self._exact):
            for t in self._journal:
                if t.currency == currency:
                    out[t.debit] = out.get(t.debit, Decimal(0)) - t.amount
                    out[t.credit] = out.get(t.credit, Decimal(0)) + t.amount
        return out

    def conservation_error(self, currency: str) -> Decimal:
        r"""Return how far the ledger is from conserving money in ``currency``.

        Returns
        -------
        Decimal
            :math:`|\sum_a b_a| + \sum_a |b_a - r_a|` where :math:`b_a` are the cached
            balances and :math:`r_a` the balances replayed from the journal. Exactly
            ``Decimal(0)`` for a healthy ledger.
        """
        replayed = self.replay(currency)
        cached = {a: v for (a, c), v in self._balances.items() if c == currency}
        with localcontext(self._exact):
            drift = sum(
                (
                    abs(cached.get(a, Decimal(0)) - replayed.get(a, Decimal(0)))
                    for a in set(cached) | set(replayed)
                ),
                Decimal(0),
            )
            error = abs(self.total(currency)) + drift
        return error if error != 0 else Decimal(0)

    def summary(self) -> Mapping[str, Decimal]:
        """Return the conservation error of every currency (all zero when healthy)."""
        return {c: self.conservation_error(c) for c in self.currencies()}
