"""Market data: snapshots, forward curves, vol surfaces and loaders (JSON, Deribit CSV).

Every price is in USD per unit of underlying; implied vols are decimals; times to expiry are
ACT/365 years. See ``docs/market-data.md``.
"""

from pmargin.market.curves import ForwardCurve, ForwardPillar
from pmargin.market.loaders import load_deribit_csv, load_market, load_market_json
from pmargin.market.snapshot import STABLECOINS, MarketSnapshot, Quote, solve_implied_vol
from pmargin.market.surface import MAX_VOL, Smile, VolSurface

__all__ = [
    "MAX_VOL",
    "STABLECOINS",
    "ForwardCurve",
    "ForwardPillar",
    "MarketSnapshot",
    "Quote",
    "Smile",
    "VolSurface",
    "load_deribit_csv",
    "load_market",
    "load_market_json",
    "solve_implied_vol",
]
