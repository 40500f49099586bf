"""Accounts: positions, collateral balances and open orders, with validated JSON loading.

Units: quantities of futures, perpetuals and spot in coin (inverse futures: coin notional at the
entry price); options in contracts (``contract_size`` coin each). Prices in USD per unit of
underlying. Collateral balances in units of their own currency.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pmargin.errors import DuplicatePositionWarning, InvalidInput
from pmargin.instruments import Instrument, InstrumentKind, parse_instrument
from pmargin.validation import (
    check_keys,
    finite_number,
    non_negative_number,
    positive_number,
    require_mapping,
)

__all__ = [
    "ORDER_KEYS",
    "PORTFOLIO_KEYS",
    "POSITION_KEYS",
    "Order",
    "Portfolio",
    "Position",
    "Side",
    "load_portfolio",
    "portfolio_from_dict",
]


class Side(StrEnum):
    """Order side."""

    BUY = "buy"
    SELL = "sell"


@dataclass(frozen=True, slots=True)
class Position:
    """A signed holding of one instrument.

    Parameters
    ----------
    instrument : Instrument
        What is held.
    quantity : float
        Signed size: positive long, negative short.
    avg_price : float or None
        Average entry price in USD per unit of underlying; used for the unrealised P&L of futures
        and perpetuals (``None``: entry at the current mark, i.e. no unrealised P&L).
    isolated_collateral : float or None
        Collateral (margin currency) assigned to this position in isolated mode.
    """

    instrument: Instrument
    quantity: float
    avg_price: float | None = None
    isolated_collateral: float | None = None


@dataclass(frozen=True, slots=True)
class Order:
    """A resting limit order.

    Parameters
    ----------
    instrument : Instrument
        Instrument of the order.
    side : Side
        Buy or sell.
    quantity : float
        Unfilled size (positive).
    price : float
        Limit price in USD per unit of underlying.
    """

    instrument: Instrument
    side: Side
    quantity: float
    price: float

    @property
    def signed_quantity(self) -> float:
        """Quantity with the sign of the position it would create."""
        return self.quantity if self.side is Side.BUY else -self.quantity


@dataclass(frozen=True)
class Portfolio:
    """One account.

    Parameters
    ----------
    margin_currency : str
        Currency the account is margined in: a coin (``BTC``, inverse) or a stablecoin (``USDC``).
    positions : tuple of Position
        Holdings. Built in code, several rows of one instrument are netted by the book; the
        JSON loader merges them into one row with a :class:`DuplicatePositionWarning`.
    collateral : mapping of str to float
        Balances by currency. The JSON loader refuses negative balances (no model lends);
        liquidation code may build portfolios whose balance went negative.
    orders : tuple of Order
        Open orders.
    account_id : str
        Identifier.
    """

    margin_currency: str
    positions: tuple[Position, ...] = ()
    collateral: Mapping[str, float] = field(default_factory=dict)
    orders: tuple[Order, ...] = ()
    account_id: str = "account"

    def with_positions(self, positions: tuple[Position, ...]) -> Portfolio:
        """Return a copy holding ``positions`` instead of the current ones."""
        return Portfolio(self.margin_currency, positions, dict(self.collateral), self.orders,
                         self.account_id)

    def with_collateral(self, collateral: Mapping[str, float]) -> Portfolio:
        """Return a copy with other collateral balances."""
        return Portfolio(self.margin_currency, self.positions, dict(collateral), self.orders,
                         self.account_id)

    def with_orders(self, orders: tuple[Order, ...]) -> Portfolio:
        """Return a copy with other open orders."""
        return Portfolio(self.margin_currency, self.positions, dict(self.collateral), orders,
                         self.account_id)

    def net_positions(self) -> dict[str, float]:
        """Return net quantity by instrument name (rows of one instrument summed)."""
        out: dict[str, float] = {}
        for p in self.positions:
            out[p.instrument.name] = out.get(p.instrument.name, 0.0) + p.quantity
        return out


PORTFOLIO_KEYS = ("margin_currency", "collateral", "positions", "orders", "account_id")
"""Keys of a portfolio object."""
MAX_QUANTITY = 1e9
"""Largest accepted |quantity| (contracts or coin): beyond any real holding (BTC's supply is
21e6), and small enough that every margin figure stays finite in float64 (docs/inputs.md)."""

POSITION_KEYS = ("instrument", "quantity", "avg_price", "isolated_collateral")
"""Keys of one row of ``positions``."""
ORDER_KEYS = ("instrument", "side", "quantity", "price", "price_unit")
"""Keys of one row of ``orders``."""


def _currency(value: Any, fld: str) -> str:
    if not isinstance(value, str) or not value.strip() or not value.strip().isalnum():
        raise InvalidInput(fld, value, "must be a currency code such as BTC or USDC")
    return value.strip().upper()


def _list(data: Mapping[str, Any], key: str, fld: str) -> list[Any]:
    raw = data.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInput(fld, raw, "must be a list")
    return raw


def _instrument(row: Mapping[str, Any], fld: str) -> Instrument:
    if "instrument" not in row:
        raise InvalidInput(f"{fld}.instrument", None, "is required")
    try:
        return parse_instrument(row["instrument"])
    except InvalidInput as exc:
        raise InvalidInput(f"{fld}.instrument", row["instrument"], exc.reason) from exc


def _required(row: Mapping[str, Any], key: str, fld: str) -> Any:
    if key not in row:
        raise InvalidInput(f"{fld}.{key}", None, "is required")
    return row[key]


def _collateral(data: Mapping[str, Any], prefix: str) -> dict[str, float]:
    raw = data.get("collateral")
    if raw is None:
        return {}
    require_mapping(raw, f"{prefix}.collateral")
    out: dict[str, float] = {}
    for key, value in raw.items():
        fld = f"{prefix}.collateral.{key}"
        code = _currency(key, fld)
        if code in out:
            raise InvalidInput(fld, key,
                               f"repeats the currency {code} (codes are case-insensitive)")
        # No model lends today (no borrowing limit, no interest): a negative balance is refused
        # here rather than margined as if it were a loan.
        out[code] = non_negative_number(value, fld)
    return out


def _bounded(qty: float, fld: str) -> float:
    if abs(qty) > MAX_QUANTITY:
        raise InvalidInput(fld, qty, f"is larger than {MAX_QUANTITY:g} in magnitude")
    return qty


def _position(row: Any, fld: str) -> Position:
    require_mapping(row, fld)
    check_keys(row, POSITION_KEYS, fld)
    inst = _instrument(row, fld)
    qty = _bounded(finite_number(_required(row, "quantity", fld), f"{fld}.quantity"),
                   f"{fld}.quantity")
    if inst.kind is InstrumentKind.SPOT and qty < 0:
        raise InvalidInput(f"{fld}.quantity", row["quantity"],
                           "short spot needs borrowing, which no model supports")
    avg = row.get("avg_price")
    avg_v = None if avg is None else positive_number(avg, f"{fld}.avg_price")
    iso = row.get("isolated_collateral")
    iso_v = None if iso is None else non_negative_number(iso, f"{fld}.isolated_collateral")
    return Position(inst, qty, avg_v, iso_v)


def _order(row: Any, fld: str) -> Order:
    require_mapping(row, fld)
    check_keys(row, ORDER_KEYS, fld)
    inst = _instrument(row, fld)
    side_raw = _required(row, "side", fld)
    if side_raw not in ("buy", "sell"):
        raise InvalidInput(f"{fld}.side", side_raw, "must be 'buy' or 'sell'")
    qty = _bounded(positive_number(_required(row, "quantity", fld), f"{fld}.quantity"),
                   f"{fld}.quantity")
    price = positive_number(_required(row, "price", fld), f"{fld}.price")
    unit = _required(row, "price_unit", fld)
    if unit != "USD":
        reason = ("is not supported: give the limit price in USD per unit of underlying "
                  "(a coin price times the index price) with price_unit 'USD'"
                  if unit == "coin" else "must be 'USD' (limit price in USD per unit of "
                  "underlying)")
        raise InvalidInput(f"{fld}.price_unit", unit, reason)
    return Order(inst, Side(side_raw), qty, price)


def _merge_rows(rows: list[tuple[int, Position]], prefix: str) -> Position:
    """One position from several rows of one instrument (the first row's index is kept)."""
    (i0, first), rest = rows[0], rows[1:]
    qty = math.fsum(p.quantity for _, p in rows)
    priced = [p.avg_price is not None for _, p in rows]
    avg: float | None = None
    if any(priced):
        j = next(i for (i, _), has in zip(rows, priced, strict=True) if not has) \
            if not all(priced) else None
        if j is not None:
            raise InvalidInput(f"{prefix}.positions[{j}].avg_price", None,
                               f"is missing while another row of {first.instrument.name} has "
                               "one; give it on every row or on none")
        signed = [(i, p) for i, p in rows if p.quantity != 0.0]
        for i, p in signed[1:]:
            if (p.quantity > 0) != (signed[0][1].quantity > 0):
                raise InvalidInput(
                    f"{prefix}.positions[{i}].quantity", p.quantity,
                    f"has the opposite sign of positions[{signed[0][0]}] "
                    f"({first.instrument.name}) and both carry an avg_price: the closed part's "
                    "P&L is realised; give the net position and book that P&L in collateral")
        if qty != 0.0:
            # one sign: the size-weighted mean keeps the entry notional sum(q * avg_price)
            avg = math.fsum(p.quantity * (p.avg_price or 0.0) for _, p in rows) / qty
    isolated = [p.isolated_collateral for _, p in rows if p.isolated_collateral is not None]
    iso = math.fsum(isolated) if isolated else None
    merged = ", ".join(f"positions[{i}]" for i, _ in rest)
    warnings.warn(f"{prefix}.positions[{i0}]: {merged} hold the same instrument "
                  f"{first.instrument.name}; merged into one position of {qty!r}",
                  DuplicatePositionWarning, stacklevel=4)
    return Position(first.instrument, qty, avg, iso)


def _net_rows(positions: list[Position], prefix: str) -> list[Position]:
    """Merge rows of one instrument (in the order of their first row), with a notice."""
    groups: dict[str, list[tuple[int, Position]]] = {}
    for i, pos in enumerate(positions):
        groups.setdefault(pos.instrument.name, []).append((i, pos))
    out: list[Position] = []
    for rows in groups.values():  # a plain loop: the warning's stacklevel reaches the caller
        out.append(rows[0][1] if len(rows) == 1 else _merge_rows(rows, prefix))
    return out


def _check_isolated(positions: list[Position], collateral: Mapping[str, float],
                    margin_currency: str, prefix: str) -> None:
    isolated = math.fsum(p.isolated_collateral or 0.0 for p in positions)
    balance = collateral.get(margin_currency, 0.0)
    if isolated > balance:
        raise InvalidInput(
            f"{prefix}.positions.isolated_collateral", isolated,
            f"adds up to more than the {margin_currency} balance "
            f"{prefix}.collateral.{margin_currency} = {balance!r}")


def portfolio_from_dict(data: Any, prefix: str = "portfolio") -> Portfolio:
    """Build a :class:`Portfolio` from the conformance JSON ``portfolio`` block.

    Parameters
    ----------
    data : mapping
        Keys ``margin_currency``, ``collateral`` {currency: balance}, ``positions`` [{instrument,
        quantity, avg_price?, isolated_collateral?}], optional ``orders`` [{instrument, side,
        quantity, price}] and ``account_id``. No other key is accepted.
    prefix : str
        Field path prefix used in error messages.

    Returns
    -------
    Portfolio
        The validated account.

    Raises
    ------
    InvalidInput
        On any missing, unknown or malformed field (the message names the field, the value and,
        for an unknown key, the nearest valid one), and on inconsistent inputs: a negative
        collateral balance, isolated collateral adding up to more than the margin-currency
        balance, or rows of one instrument that cannot be merged (see Warns).

    Warns
    -----
    DuplicatePositionWarning
        When several rows hold one instrument: they are merged into one position (quantities
        added, ``avg_price`` the size-weighted mean, ``isolated_collateral`` added). Rows with
        ``avg_price`` must then all have it and share one sign (opposite rows would carry a
        realised P&L, which belongs in collateral).
    """
    require_mapping(data, prefix)
    check_keys(data, PORTFOLIO_KEYS, prefix)
    if "margin_currency" not in data:
        raise InvalidInput(f"{prefix}.margin_currency", None, "is required")
    mc = _currency(data["margin_currency"], f"{prefix}.margin_currency")
    collateral = _collateral(data, prefix)
    positions = [_position(row, f"{prefix}.positions[{i}]")
                 for i, row in enumerate(_list(data, "positions", f"{prefix}.positions"))]
    orders = [_order(row, f"{prefix}.orders[{i}]")
              for i, row in enumerate(_list(data, "orders", f"{prefix}.orders"))]
    positions = _net_rows(positions, prefix)
    _check_isolated(positions, collateral, mc, prefix)
    account_id = data.get("account_id", "account")
    if not isinstance(account_id, str | int) or isinstance(account_id, bool) or account_id == "":
        raise InvalidInput(f"{prefix}.account_id", account_id, "must be a non-empty string")
    return Portfolio(mc, tuple(positions), collateral, tuple(orders), str(account_id))


def load_portfolio(path: str | Path) -> Portfolio:
    """Load a portfolio from a JSON file (a bare ``portfolio`` block or a whole vector file).

    Parameters
    ----------
    path : str or Path
        JSON file (UTF-8).

    Returns
    -------
    Portfolio
        The validated account.

    Raises
    ------
    InvalidInput
        If the file cannot be read, is not UTF-8 JSON, or a field is invalid.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise InvalidInput("portfolio", str(p), f"cannot be read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput("portfolio", str(p), f"is not UTF-8 text (byte {exc.start})") from exc
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidInput("portfolio", str(p), f"cannot be read as JSON: {exc}") from exc
    if isinstance(data, Mapping) and "portfolio" in data:
        data = data["portfolio"]
    return portfolio_from_dict(data)
