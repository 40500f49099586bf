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

__all__ = ["delta", "gamma", "greeks", "inverse_delta", "inverse_price", "price", "rho", "theta", "vega"]
