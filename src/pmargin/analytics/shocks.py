r"""Shocked markets: index moves with a vol shift and a skew twist, and collateral de-pegs.

:meth:`MarketSnapshot.bumped` moves spot with vols sticky to strike. Stress scenarios also move
the smile: every listed option's implied vol :math:`\\sigma` becomes

.. math::

    \\sigma' = \\max\\big(\\sigma_{\\min},\\; \\sigma\\,(1 + v) + t\\,\\ln(K/F)\\big)

with :math:`v` the relative vol shift, :math:`t` the skew twist (vol points per unit of
log-moneyness: ``t < 0`` steepens the put skew) and :math:`F` the option's forward after the
move. Futures and perpetual marks move with the index as in ``bumped``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from pmargin.errors import InvalidInput
from pmargin.instruments import parse_instrument
from pmargin.market import MarketSnapshot

__all__ = ["MIN_SHOCKED_VOL", "MarketShock", "shocked_market"]

MIN_SHOCKED_VOL = 0.01
"""Floor of a shocked implied vol (decimal): a twist must not produce a zero or negative vol."""


@dataclass(frozen=True)
class MarketShock:
    """One market shock.

    Attributes
    ----------
    spot_move : mapping of str to float
        Relative index move per underlying, e.g. ``{"BTC": -0.3}`` (each > -1).
    vol_shift : float
        Relative change of every implied vol (0.5 = vols up by half).
    skew_twist : float
        Added vol per unit of ``ln(K/F)`` (decimal vol; negative = puts up, calls down).
    collateral_prices : mapping of str to float
        USD prices of collateral currencies replacing the market's (a stablecoin de-peg:
        ``{"USDC": 0.9}``).
    """

    spot_move: Mapping[str, float] = field(default_factory=dict)
    vol_shift: float = 0.0
    skew_twist: float = 0.0
    collateral_prices: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for u, m in self.spot_move.items():
            if not math.isfinite(m) or m <= -1.0:
                raise InvalidInput(f"spot_move.{u}", m, "must be a finite move above -1")
        if not math.isfinite(self.vol_shift) or self.vol_shift <= -1.0:
            raise InvalidInput("vol_shift", self.vol_shift, "must be finite and above -1")
        if not math.isfinite(self.skew_twist):
            raise InvalidInput("skew_twist", self.skew_twist, "must be finite")
        for c, p in self.collateral_prices.items():
            if not math.isfinite(p) or p <= 0.0:
                raise InvalidInput(f"collateral_prices.{c}", p, "must be positive and finite")


def shocked_market(market: MarketSnapshot, shock: MarketShock) -> MarketSnapshot:
    """Return ``market`` after ``shock`` (same valuation time).

    Parameters
    ----------
    market : MarketSnapshot
        Base market.
    shock : MarketShock
        Spot moves, vol shift, skew twist and collateral prices.

    Returns
    -------
    MarketSnapshot
        The shocked market; the base market itself when the shock is empty. Its ``source``
        names the shock.
    """
    moves = {u: m for u, m in shock.spot_move.items() if m != 0.0}
    moved = market.bumped(moves) if moves else market
    if shock.vol_shift == 0.0 and shock.skew_twist == 0.0 and not shock.collateral_prices:
        return moved
    data = moved.to_dict()
    instruments: dict[str, dict[str, float]] = {}
    for name, quote in data["instruments"].items():
        inst = parse_instrument(name)
        if not inst.is_option or (shock.vol_shift == 0.0 and shock.skew_twist == 0.0):
            instruments[name] = quote
            continue
        assert inst.expiry is not None
        assert inst.strike is not None
        fwd = moved.forward(inst.underlying, inst.expiry)
        vol = moved.instrument_vol(inst)
        new = max(MIN_SHOCKED_VOL,
                  vol * (1.0 + shock.vol_shift) + shock.skew_twist * math.log(inst.strike / fwd))
        instruments[name] = {"mark_iv": new, "underlying_price": fwd}
    coll = dict(data.get("collateral_prices", {}))
    coll.update({c.upper(): p for c, p in shock.collateral_prices.items()})
    return MarketSnapshot(
        data["valuation_time"], data["index"], instruments, coll or None,
        source=f"{market.source} shocked (moves {moves}, vol {shock.vol_shift:+g}, "
               f"twist {shock.skew_twist:+g}, collateral {dict(shock.collateral_prices)})",
        settlement_prices=data.get("settlement_prices"),
        data_time=data.get("data_time"), max_age=market.max_age, policy=market.policy)
