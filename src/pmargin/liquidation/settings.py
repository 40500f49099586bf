"""The shipped liquidation settings files, by kind, with the loader that validates each."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pmargin.liquidation.auction_params import load_auction_params
from pmargin.liquidation.cascade import load_cascade_params
from pmargin.liquidation.execution import load_bidders
from pmargin.liquidation.ledger import load_ledger_params
from pmargin.liquidation.liquidity import load_liquidity_params
from pmargin.liquidation.planner import load_planner_params

__all__ = ["SETTINGS_LOADERS"]

SETTINGS_LOADERS: Mapping[str, Callable[[str | Path | None], Any]] = {
    "auction": load_auction_params,
    "bidders": load_bidders,
    "cascade": load_cascade_params,
    "ledger": load_ledger_params,
    "liquidity": load_liquidity_params,
    "planner": load_planner_params,
}
"""Kind of settings file (the shipped file's stem, ``pmargin/liquidation/<kind>.toml``) to the
function that reads and validates such a file (raising ``ParamsError`` naming the bad key)."""
