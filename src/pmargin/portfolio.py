"""Accounts: positions, collateral balances and open orders, with validated JSON loading.

Units: quantities of futures, perpetuals and spot in coin (inverse futures: coin notional at the
entry price); options in contracts (``contract_size`` coin each). Prices in USD per unit of
underlying. Collateral balances in units of their own currency.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pmargin.errors import InvalidInput
from pmargin.instruments import Instrument, InstrumentKind, parse_instrument

__all__ = ["Order", "Portfolio", "Position", "Side", "load_portfolio", "portfolio_from_dict"]


class Side(StrEnum):
    """Order side."""

    BUY = "buy"
    SELL = "sell"


def _finite(value: Any, fld: str, *, positive: bool = False, allow_none: bool = False) -> float:
    if value is None and allow_none:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(fld, value, "must be a number")
    v = float(value)
    if not math.isfinite(v):
        raise InvalidInput(fld, value, "must be finite")
    if positive and v <= 0:
        raise InvalidInput(fld, value, "must be positive")
    return v


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
        Holdings; several rows of one instrument are allowed and are netted.
    collateral : mapping of str to float
        Balances by currency (may be negative for borrowed cash).
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


def _currency(value: Any, fld: str) -> str:
    if not isinstance(value, str) or not value.strip() or not value.strip().isalnum():
        raise InvalidInput(fld, value, "must be a currency code such as BTC or USDC")
    return value.strip().upper()


def portfolio_from_dict(data: Mapping[str, Any], prefix: str = "portfolio") -> Portfolio:
    """Build a :class:`Portfolio` from the conformance JSON ``portfolio`` block.

    Parameters
    ----------
    data : mapping
        Keys ``margin_currency``, ``collateral`` {currency: balance}, ``positions`` [{instrument,
        quantity, avg_price?, isolated_collateral?}], optional ``orders`` [{instrument, side,
        quantity, price}] and ``account_id``.
    prefix : str
        Field path prefix used in error messages.

    Returns
    -------
    Portfolio
        The validated account.

    Raises
    ------
    InvalidInput
        On any missing or malformed field; the message names the field and the value.
    """
    if not isinstance(data, Mapping):
        raise InvalidInput(prefix, data, "must be a JSON object")
    if "margin_currency" not in data:
        raise InvalidInput(f"{prefix}.margin_currency", None, "is required")
    mc = _currency(data["margin_currency"], f"{prefix}.margin_currency")
    coll_raw = data.get("collateral", {}) or {}
    if not isinstance(coll_raw, Mapping):
        raise InvalidInput(f"{prefix}.collateral", coll_raw, "must be an object of balances")
    collateral = {
        _currency(k, f"{prefix}.collateral"): _finite(v, f"{prefix}.collateral.{k}")
        for k, v in coll_raw.items()
    }
    positions: list[Position] = []
    raw_positions = data.get("positions", []) or []
    if not isinstance(raw_positions, list):
        raise InvalidInput(f"{prefix}.positions", raw_positions, "must be a list")
    for i, row in enumerate(raw_positions):
        f = f"{prefix}.positions[{i}]"
        if not isinstance(row, Mapping):
            raise InvalidInput(f, row, "must be an object")
        if "instrument" not in row:
            raise InvalidInput(f"{f}.instrument", None, "is required")
        try:
            inst = parse_instrument(row["instrument"])
        except InvalidInput as exc:
            raise InvalidInput(f"{f}.instrument", row["instrument"], exc.reason) from exc
        if "quantity" not in row:
            raise InvalidInput(f"{f}.quantity", None, "is required")
        qty = _finite(row["quantity"], f"{f}.quantity")
        if inst.kind is InstrumentKind.SPOT and qty < 0:
            raise InvalidInput(
                f"{f}.quantity", row["quantity"],
                "short spot needs borrowing; hold a negative collateral balance instead")
        avg = row.get("avg_price")
        avg_v = None if avg is None else _finite(avg, f"{f}.avg_price", positive=True)
        iso = row.get("isolated_collateral")
        iso_v = None if iso is None else _finite(iso, f"{f}.isolated_collateral")
        if iso_v is not None and iso_v < 0:
            raise InvalidInput(f"{f}.isolated_collateral", iso, "must not be negative")
        positions.append(Position(inst, qty, avg_v, iso_v))
    orders: list[Order] = []
    raw_orders = data.get("orders", []) or []
    if not isinstance(raw_orders, list):
        raise InvalidInput(f"{prefix}.orders", raw_orders, "must be a list")
    for i, row in enumerate(raw_orders):
        f = f"{prefix}.orders[{i}]"
        if not isinstance(row, Mapping):
            raise InvalidInput(f, row, "must be an object")
        try:
            inst = parse_instrument(row.get("instrument"))
        except InvalidInput as exc:
            raise InvalidInput(f"{f}.instrument", row.get("instrument"), exc.reason) from exc
        side_raw = row.get("side")
        if side_raw not in ("buy", "sell"):
            raise InvalidInput(f"{f}.side", side_raw, "must be 'buy' or 'sell'")
        qty = _finite(row.get("quantity"), f"{f}.quantity", positive=True)
        price = _finite(row.get("price"), f"{f}.price", positive=True)
        orders.append(Order(inst, Side(side_raw), qty, price))
    account_id = str(data.get("account_id", "account"))
    return Portfolio(mc, tuple(positions), collateral, tuple(orders), account_id)


def load_portfolio(path: str | Path) -> Portfolio:
    """Load a portfolio from a JSON file (a bare ``portfolio`` block or a whole vector file).

    Parameters
    ----------
    path : str or Path
        JSON file.

    Returns
    -------
    Portfolio
        The validated account.

    Raises
    ------
    InvalidInput
        If the file is not valid JSON or a field is invalid.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInput("portfolio", str(p), f"cannot be read as JSON: {exc}") from exc
    if isinstance(data, Mapping) and "portfolio" in data:
        data = data["portfolio"]
    return portfolio_from_dict(data)
