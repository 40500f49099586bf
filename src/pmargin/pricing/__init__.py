"""Pricing kernels: Black-76 prices, Greeks and implied volatility (array in, array out)."""

from pmargin.pricing.black76 import (
    delta,
    gamma,
    greeks,
    inverse_delta,
    inverse_price,
    price,
    rho,
    theta,
    vega,
)
from pmargin.pricing.implied_vol import ImpliedVolResult, implied_vol, implied_vol_inverse

__all__ = [
    "ImpliedVolResult",
    "delta",
    "gamma",
    "greeks",
    "implied_vol",
    "implied_vol_inverse",
    "inverse_delta",
    "inverse_price",
    "price",
    "rho",
    "theta",
    "vega",
]
