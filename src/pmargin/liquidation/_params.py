"""Liquidation parameter files (TOML shipped as package data), read by :mod:`pmargin.paramfiles`.

Every file is validated into a frozen pydantic model with ``extra="forbid"``, so a misspelt key
fails loudly with a :class:`~pmargin.errors.ParamsError` naming it and the nearest valid key.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from pmargin.paramfiles import Shipped
from pmargin.paramfiles import load_params_file as _load

__all__ = ["SETTINGS", "FrozenParams", "load_params_file"]

SETTINGS = Shipped("pmargin.liquidation", "", "liquidation settings")
"""The shipped liquidation settings (``pmargin/liquidation/*.toml``)."""

ParamsT = TypeVar("ParamsT", bound=BaseModel)


class FrozenParams(BaseModel):
    """Base of every liquidation parameter schema: immutable, unknown keys and NaN rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


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
        return _load(model, filename.removesuffix(".toml"), SETTINGS)
    return _load(model, Path(path), SETTINGS)
