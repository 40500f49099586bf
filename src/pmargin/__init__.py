"""pmargin: margin management for crypto options portfolios.

The public entry points are re-exported lazily (importing :mod:`pmargin` itself loads nothing
heavy)::

    import pmargin
    model = pmargin.load_model("deribit-pm")
    market = pmargin.load_market("snapshot.csv.gz")
    result = model.margin(pmargin.load_portfolio("portfolio.json"), market)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_model": "pmargin.models",
    "list_models": "pmargin.models",
    "MarginModel": "pmargin.models",
    "AccountMargin": "pmargin.models",
    "BookMarginResult": "pmargin.models",
    "load_market": "pmargin.market.loaders",
    "MarketSnapshot": "pmargin.market",
    "Portfolio": "pmargin.portfolio",
    "load_portfolio": "pmargin.portfolio",
    "portfolio_from_dict": "pmargin.portfolio",
    "parse_instrument": "pmargin.instruments",
    "Instrument": "pmargin.instruments",
    "Book": "pmargin.book",
    "BookEngine": "pmargin.engine",
    "plan_liquidation": "pmargin.liquidation.planner",
    "run_cascade": "pmargin.liquidation.cascade",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pmargin' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def _version() -> str:
    """The installed distribution's version (the one place it is written is pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pmargin")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
