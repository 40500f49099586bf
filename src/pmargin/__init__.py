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

__version__ = "0.1.0"

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
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pmargin' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
