"""The one loader of parameter files: model presets, Derive PMRM_2 parameters, liquidation settings.

A parameter file is a UTF-8 TOML file, either shipped as package data (addressed by its name,
``"deribit-pm"``) or given as a path. Loading is always the same four steps:

1. read the text (unreadable, non-UTF-8 or binary files are a :class:`~pmargin.errors.ParamsError`
   naming the file);
2. parse the TOML (a syntax error is a ``ParamsError`` naming the file and the line);
3. deep-merge the overrides (:func:`pmargin.overrides.deep_merge`);
4. validate into a frozen pydantic schema. Every number must be finite, and every key must be
   known: a misspelt key is a ``ParamsError`` whose field is the dotted key
   (``underlyings.BTC.grid.price_rnage``) and whose message names the nearest valid key.

Values come from the file only; schemas carry no defaults that repeat a shipped value.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from pmargin.errors import ParamsError
from pmargin.overrides import deep_merge
from pmargin.validation import nearest

__all__ = [
    "Shipped",
    "load_params_file",
    "params_digest",
    "read_params_file",
    "validate_params",
]

SchemaT = TypeVar("SchemaT", bound=BaseModel)

_LINE = re.compile(r"line (\d+)")


@dataclass(frozen=True, slots=True)
class Shipped:
    """Where the shipped parameter files of one kind live (package data).

    Parameters
    ----------
    package : str
        Importable package holding the files (``"pmargin.models"``).
    folder : str
        Sub-folder of the package (``"presets"``), empty for the package itself.
    kind : str
        What the files are, for messages (``"preset"``, ``"liquidation settings"``).
    """

    package: str
    folder: str = ""
    kind: str = "parameter file"

    def _dir(self) -> Any:
        base = resources.files(self.package)
        return base / self.folder if self.folder else base

    def names(self) -> list[str]:
        """Return the names (file stems) of the shipped ``.toml`` files, sorted."""
        return sorted(p.name[:-5] for p in self._dir().iterdir() if p.name.endswith(".toml"))

    def text(self, name: str) -> str | None:
        """Return the text of the shipped file ``name`` (with or without ``.toml``), or ``None``."""
        filename = name if name.endswith(".toml") else f"{name}.toml"
        res = self._dir() / filename
        if not res.is_file():
            return None
        data: bytes = res.read_bytes()
        return _decode(data, f"{self.package}/{filename}")


def _decode(data: bytes, label: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(label, f"byte {exc.start}", "is not UTF-8 text") from exc
    if "\x00" in text:
        raise ParamsError(label, "NUL byte", "is a binary file, not TOML text")
    return text


def _is_path(name_or_path: str | Path) -> bool:
    if isinstance(name_or_path, Path):
        return True
    return name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path


def read_params_file(name_or_path: str | Path, shipped: Shipped) -> tuple[str, dict[str, Any]]:
    """Read a parameter file (shipped name or path) into a plain dictionary.

    Parameters
    ----------
    name_or_path : str or Path
        A shipped name (``"deribit-pm"``, ``"planner.toml"``) or the path of a TOML file
        (a :class:`~pathlib.Path`, or text ending in ``.toml`` or holding a ``/``).
    shipped : Shipped
        Where the shipped files of this kind live.

    Returns
    -------
    label : str
        The name used in messages (the path, or the shipped name).
    data : dict
        The parsed TOML (a fresh copy the caller may modify).

    Raises
    ------
    ParamsError
        If the file does not exist, cannot be read, is not UTF-8 text, or is not valid TOML
        (the message names the line).
    """
    if not isinstance(name_or_path, str | Path):
        raise ParamsError(shipped.kind, name_or_path, "must be a name or a path")
    if _is_path(name_or_path):
        label = str(name_or_path)
        p = Path(name_or_path)
        if not p.is_file():
            if not p.exists() and p.name == name_or_path:  # a bare file name, no folder
                text = shipped.text(str(name_or_path))
                if text is not None:  # "planner.toml": a shipped file named with its suffix
                    return label, _parse(text, label)
            reason = "is a directory, not a file" if p.is_dir() else "no such file"
            raise ParamsError(shipped.kind, label, reason)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ParamsError(shipped.kind, label, f"cannot be read: {exc.strerror}") from exc
        return label, _parse(_decode(data, label), label)
    label = str(name_or_path)
    return label, copy.deepcopy(_shipped_raw(shipped, label))


@lru_cache(maxsize=64)
def _shipped_raw(shipped: Shipped, name: str) -> dict[str, Any]:
    text = shipped.text(name)
    if text is None:
        hint = nearest(name, shipped.names())
        guess = f"did you mean '{hint}'? " if hint else ""
        raise ParamsError(shipped.kind, name,
                          f"unknown {shipped.kind}; {guess}shipped: {shipped.names()}")
    return _parse(text, name)


def _parse(text: str, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _LINE.search(str(exc))
        where = f"{label}:{m.group(1)}" if m else label
        raise ParamsError(where, label, f"is not valid TOML: {exc}") from exc


def _check_finite(data: Any, path: str, label: str) -> None:
    if (isinstance(data, float) and not math.isfinite(data)) or (
            isinstance(data, Decimal) and not math.isfinite(float(data))):
        raise ParamsError(path or "params", data, f"must be finite (in {label})")
    if isinstance(data, Mapping):
        for k, v in data.items():
            _check_finite(v, f"{path}.{k}" if path else str(k), label)
    elif isinstance(data, list | tuple):
        for i, v in enumerate(data):
            _check_finite(v, f"{path}[{i}]", label)


def _step(tp: Any, part: str | int) -> Any:
    """Return the type found at ``part`` inside the annotation ``tp`` (None when unknown)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        for a in inner:
            found = _step(a, part)
            if found is not None:
                return found
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, info in tp.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    args = typing.get_args(tp)
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    if origin in (list, set, frozenset) and args:
        return args[0] if isinstance(part, int) else None
    if origin is tuple and args and isinstance(part, int):
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[part] if part < len(args) else None
    return None


def _keys_at(schema: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Return the valid keys of the table at ``loc`` (field names and aliases)."""
    tp: Any = schema
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return []
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        models = [a for a in typing.get_args(tp)
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        tp = models[0] if len(models) == 1 else None
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return []
    keys: list[str] = []
    for name, info in tp.model_fields.items():
        keys.append(name)
        if info.alias and info.alias != name:
            keys.append(info.alias)
    return keys


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out or "params"


def _to_params_error(exc: ValidationError, schema: type[BaseModel], label: str) -> ParamsError:
    errors = exc.errors()
    # An unknown key explains a "missing" one next to it (price_rnage / price_range): report it.
    errors.sort(key=lambda e: e.get("type") != "extra_forbidden")
    err = errors[0]
    loc = tuple(err.get("loc", ()))
    field = _dotted(loc)
    kind = err.get("type", "")
    if kind == "extra_forbidden" and loc:
        hint = nearest(str(loc[-1]), _keys_at(schema, loc[:-1]))
        reason = f"unknown field; did you mean '{hint}'?" if hint else "unknown field"
        valid = sorted(set(_keys_at(schema, loc[:-1])))
        if not hint and valid:
            reason += f" (valid: {', '.join(valid)})"
        return ParamsError(field, loc[-1], f"{reason} (in {label})")
    if kind == "missing":
        return ParamsError(field, None, f"is required (in {label})")
    msg = str(err.get("msg", "is invalid"))
    return ParamsError(field, err.get("input"), f"{msg} (in {label})")


def validate_params(schema: type[SchemaT], raw: Any, label: str) -> SchemaT:
    """Validate raw parameters into ``schema``, every error a :class:`ParamsError`.

    Parameters
    ----------
    schema : type of pydantic model
        The schema (frozen, ``extra="forbid"``).
    raw : Any
        Parsed parameters (normally a dictionary from TOML).
    label : str
        File name or preset name, for messages.

    Returns
    -------
    pydantic model
        The validated parameters.

    Raises
    ------
    ParamsError
        Naming the dotted key of the first invalid field (unknown keys first, with the nearest
        valid key), or any non-finite number.
    """
    if not isinstance(raw, Mapping):
        raise ParamsError("params", raw, f"must be a table of parameters (in {label})")
    _check_finite(raw, "", label)
    try:
        params = schema.model_validate(dict(raw))
    except ValidationError as exc:
        raise _to_params_error(exc, schema, label) from exc
    except (TypeError, ValueError) as exc:  # a validator that raised outside pydantic's wrapping
        raise ParamsError("params", label, f"is invalid: {exc}") from exc
    # Text such as "nan" may have been coerced to a number by a lax schema: check what loaded.
    _check_finite(params.model_dump(), "", label)
    return params


def load_params_file(
    schema: type[SchemaT],
    name_or_path: str | Path,
    shipped: Shipped,
    overrides: Mapping[str, Any] | None = None,
) -> SchemaT:
    """Read, merge and validate one parameter file.

    Parameters
    ----------
    schema : type of pydantic model
        The schema to validate into.
    name_or_path : str or Path
        Shipped name or path (see :func:`read_params_file`).
    shipped : Shipped
        Where the shipped files of this kind live.
    overrides : mapping, optional
        Nested dictionaries or dotted keys merged over the file (:func:`deep_merge`).

    Returns
    -------
    pydantic model
        The validated, frozen parameters. Shipped files without overrides are validated once
        per process and the same object is returned.

    Raises
    ------
    ParamsError
        If the file is missing, unreadable, not TOML, or a key is unknown, missing or invalid.
    """
    if not overrides and not _is_path(name_or_path) and isinstance(name_or_path, str):
        return _shipped_validated(schema, name_or_path, shipped)  # type: ignore[return-value]
    label, raw = read_params_file(name_or_path, shipped)
    if overrides:
        raw = deep_merge(raw, overrides)
    return validate_params(schema, raw, label)


@lru_cache(maxsize=64)
def _shipped_validated(schema: type[BaseModel], name: str, shipped: Shipped) -> BaseModel:
    label, raw = read_params_file(name, shipped)
    return validate_params(schema, raw, label)


def params_digest(params: BaseModel) -> str:
    """Return the sha256 (hex) of the canonical JSON of validated parameters."""
    text = json.dumps(params.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
