"""Loading of the liquidation parameter files (TOML shipped as package data).

Every file is validated into a frozen pydantic model with ``extra="forbid"``, so a misspelt key
fails loudly with a :class:`~pmargin.errors.ParamsError` naming it.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from pmargin.errors import ParamsError

__all__ = ["FrozenParams", "load_params_file"]

_PACKAGE = "pmargin.liquidation"

ParamsT = TypeVar("ParamsT", bound=BaseModel)


class FrozenParams(BaseModel):
    """Base of every liquidation parameter schema: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _read(filename: str, path: str | Path | None) -> tuple[str, dict[str, Any]]:
    label = str(path) if path is not None else f"{_PACKAGE}/{filename}"
    try:
        if path is None:
            text = (resources.files(_PACKAGE) / filename).read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ParamsError("params", label, f"cannot be read: {exc}") from exc
    try:
        return label, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParamsError("params", label, f"is not valid TOML: {exc}") from exc


def load_params_file(
    model: type[ParamsT], filename: str, path: str | Path | None = None
) -> ParamsT:
    """Read a TOML parameter file and validate it into ``model``.

    Parameters
    ----------
    model : type of pydantic model
        Schema to validate against.
    filename : str
        Name of the shipped file inside ``pmargin.liquidation`` (used when ``path`` is None).
    path : str or Path, optional
        A user file replacing the shipped one. Shipped files are read once and cached.

    Returns
    -------
    pydantic model
        The validated, frozen parameters.

    Raises
    ------
    ParamsError
        If the file cannot be read, is not TOML, or a key is missing, unknown or out of range.
    """
    if path is None:
        return _shipped(model, filename)  # type: ignore[return-value]
    return _validate(model, filename, path)


@lru_cache(maxsize=32)
def _shipped(model: type[BaseModel], filename: str) -> BaseModel:
    # Shipped files never change while the process runs: read and validate each once.
    return _validate(model, filename, None)


def _validate(model: type[ParamsT], filename: str, path: str | Path | None) -> ParamsT:
    label, raw = _read(filename, path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "params"
        raise ParamsError(f"{label}:{loc}", err.get("input"), err["msg"]) from exc
