"""The JSON contract of the command line: conversion of results to JSON values and the schemas.

Rules (documented in ``docs/cli.md``):

* every number is a JSON number, except **exact decimal amounts** (ledger figures computed with
  :class:`decimal.Decimal`), which are JSON strings holding a plain decimal number such as
  ``"0"``, ``"-12.5"`` or ``"1.2E-7"`` so that no digit is lost; a zero is always ``"0"``
  (never ``"0E-18"`` or ``"-0"``) and a float zero is never ``-0.0``;
* a value that does not exist (an infinite ratio, a NaN, a missing figure) is ``null``, never the
  string ``"inf"`` or ``"None"``; where the reason is not obvious the object carries a
  ``<field>_reason`` string next to it;
* every command's output is one JSON object whose shape does not depend on the options; its
  JSON Schema is ``docs/schemas/<command>.schema.json``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["dumps", "to_jsonable"]


def to_jsonable(obj: Any) -> Any:
    """Convert a result to JSON values following the module's rules.

    Parameters
    ----------
    obj : Any
        Nested dicts, lists, tuples, dataclasses, enums, NumPy scalars, floats and
        :class:`~decimal.Decimal` values.

    Returns
    -------
    Any
        The same structure made of ``dict``, ``list``, ``str``, ``int``, ``float`` (finite),
        ``bool`` and ``None``.
    """
    if obj is None or isinstance(obj, bool | str | int):
        return obj
    if isinstance(obj, float):
        return obj + 0.0 if math.isfinite(obj) else None  # + 0.0: -0.0 becomes 0.0
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            return None
        return "0" if obj == 0 else str(obj)  # not "0E-18" (a quantized zero) nor "-0"
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj, key=str) if isinstance(obj, set | frozenset) else obj
        return [to_jsonable(v) for v in items]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(obj, np.generic):
            return to_jsonable(obj.item())
        if isinstance(obj, np.ndarray):
            return to_jsonable(obj.tolist())
    if hasattr(obj, "model_dump"):  # pydantic models
        return to_jsonable(obj.model_dump())
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Serialise ``obj`` with :func:`to_jsonable`; never writes ``NaN`` or ``Infinity``."""
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)
