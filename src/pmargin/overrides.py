"""Layered parameter overrides: deep merge of nested dictionaries or dotted keys."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["deep_merge"]


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``overrides`` into a copy of ``base``; dotted keys address nested tables.

    Parameters
    ----------
    base : mapping
        Original parameters.
    overrides : mapping
        Nested dictionaries or dotted keys (``{"underlyings.BTC.grid.price_range": 0.2}``).

    Returns
    -------
    dict
        Merged parameters (``base`` is not modified).
    """
    out: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                node[part] = nxt
            node = nxt
        leaf = parts[-1]
        if isinstance(value, Mapping) and isinstance(node.get(leaf), dict):
            node[leaf] = deep_merge(node[leaf], value)
        else:
            node[leaf] = copy.deepcopy(value)
    return out
