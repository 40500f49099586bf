"""Layered parameter overrides: deep merge of nested dictionaries or dotted keys."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pmargin.errors import ParamsError

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

    Raises
    ------
    ParamsError
        If ``overrides`` is not a mapping or a key is not a dotted name (text, no empty part).
    """
    if not isinstance(overrides, Mapping):
        raise ParamsError("overrides", overrides, "must be a mapping of keys to values")
    out: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if not isinstance(key, str) or not all(key.split(".")):
            raise ParamsError("overrides", key, "keys must be dotted names such as 'a.b.c'")
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
