"""Test factories: markets and portfolios in the conformance JSON format."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

from pmargin.errors import DuplicatePositionWarning
from pmargin.instruments import format_expiry
from pmargin.market.loaders import load_market_json
from pmargin.market.snapshot import MarketSnapshot
from pmargin.portfolio import Portfolio, portfolio_from_dict

VALUATION = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)


def expiry_code(days: int) -> str:
    """Deribit code of the expiry ``days`` after the valuation date."""
    return format_expiry(VALUATION + timedelta(days=days))


def make_market(
    index: dict[str, float] | None = None,
    vol: float = 0.6,
    expiries: tuple[int, ...] = (7, 30, 90),
    strikes: dict[str, list[float]] | None = None,
    basis: float = 0.0,
    linear: bool = True,
) -> MarketSnapshot:
    """A flat-vol market with futures and a few option strikes per expiry.

    Positions must be in listed instruments, so the market lists what the tests trade: strikes
    at 75 % .. 120 % of the index (BTC 60,000 .. 96,000) and, with ``linear`` (default), the
    USDC-settled twins (``BTC_USDC-...``) of every instrument at the same marks.
    """
    idx = index or {"BTC": 80000.0, "ETH": 2500.0}
    instruments: dict[str, Any] = {}
    for u, s in idx.items():
        instruments[f"{u}-PERPETUAL"] = {"mark_price": s * (1 + basis / 10)}
        ks = (strikes or {}).get(u) or [round(s * f, -1 if s < 10000 else -3)
                                         for f in (0.75, 0.8, 0.875, 0.9, 1.0, 1.1, 1.125,
                                                   1.2)]
        for d in expiries:
            code = expiry_code(d)
            fwd = s * (1 + basis * d / 365)
            instruments[f"{u}-{code}"] = {"mark_price": fwd}
            for k in ks:
                for cp in ("C", "P"):
                    instruments[f"{u}-{code}-{int(k)}-{cp}"] = {"mark_iv": vol,
                                                                "underlying_price": fwd}
    if linear:
        for name, q in list(instruments.items()):
            u = name.split("-", 1)[0]
            instruments[name.replace(u, f"{u}_USDC", 1)] = dict(q)
    return load_market_json({
        "valuation_time": VALUATION.isoformat(),
        "market": {"mark_unit": "USD", "index": idx, "instruments": instruments},
    })


def pf(margin_currency: str, positions: list[tuple[str, float]],
       collateral: dict[str, float] | None = None, **kw: Any) -> Portfolio:
    """Portfolio from (instrument, quantity) pairs (pairs of one instrument are merged)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicatePositionWarning)
        return portfolio_from_dict({
            "margin_currency": margin_currency,
            "collateral": collateral or {},
            "positions": [{"instrument": n, "quantity": q} for n, q in positions],
            **kw,
        })
