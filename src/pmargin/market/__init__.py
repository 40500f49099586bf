"""Market data: snapshots, forward curves, vol surfaces and loaders (JSON, Deribit CSV).

Every price is in USD per unit of underlying; implied vols are decimals; times to expiry are
ACT/365 years. See ``docs/market-data.md``.
"""

from pmargin.market.curves import ForwardCurve, ForwardPillar
from pmargin.market.implied_vols import solve_implied_vol
from pmargin.market.loaders import load_deribit_csv, load_market, load_market_json
from pmargin.market.policy import PRICED_BY, ValuationPolicy, default_max_age
from pmargin.market.quotes import STABLECOINS, Quote
from pmargin.market.snapshot import MarketSnapshot
from pmargin.market.surface import MAX_VOL, Smile, VolSurface

__all__ = [
    "MAX_VOL",
    "PRICED_BY",
    "STABLECOINS",
    "ForwardCurve",
    "ForwardPillar",
    "MarketSnapshot",
    "Quote",
    "Smile",
    "ValuationPolicy",
    "VolSurface",
    "default_max_age",
    "load_deribit_csv",
    "load_market",
    "load_market_json",
    "solve_implied_vol",
]
