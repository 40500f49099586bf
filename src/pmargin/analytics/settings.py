"""Parameter files of the analytics (``pmargin/analytics/*.toml``).

Read by :mod:`pmargin.paramfiles` (one loader for every parameter file).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from pmargin.paramfiles import Shipped, load_params_file

__all__ = ["ANALYTICS", "FrozenSettings", "load_settings"]

ANALYTICS = Shipped("pmargin.analytics", "", "analytics settings")
"""The shipped analytics settings (``pmargin/analytics/*.toml``)."""

SettingsT = TypeVar("SettingsT", bound=BaseModel)


class FrozenSettings(BaseModel):
    """Base of the analytics schemas: immutable, unknown keys and NaN rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def load_settings(schema: type[SettingsT], name: str, path: str | Path | None = None
                  ) -> SettingsT:
    """Load a shipped analytics file ``name`` (or a user file ``path``) into ``schema``.

    Parameters
    ----------
    schema : type of pydantic model
        Schema to validate against.
    name : str
        Shipped file stem (``"audit"``).
    path : str or Path, optional
        A user file replacing the shipped one.

    Returns
    -------
    pydantic model
        Validated, frozen settings.

    Raises
    ------
    ParamsError
        If the file cannot be read or a key is missing, unknown or out of range.
    """
    return load_params_file(schema, name if path is None else Path(path), ANALYTICS)
