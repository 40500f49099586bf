"""Parameters of the history markets (``analytics/history.toml``), validated and frozen."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from pmargin.paramfiles import Shipped, load_params_file

__all__ = ["HistoryParams", "load_history_params"]

_SHIPPED = Shipped("pmargin.analytics", "", "history-market settings")


class _Index(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hours_per_year: PositiveFloat


class _Proxy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    window_hours: PositiveInt


class _Forward(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    basis_rate: float = Field(ge=-1.0, le=1.0)


class _Template(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    term_nodes_days: tuple[PositiveFloat, ...]
    x_nodes: tuple[float, ...]
    smoothing: float = Field(ge=0.0)
    min_tau_days: float = Field(ge=0.0)

    @model_validator(mode="after")
    def _nodes(self) -> _Template:
        t, x = self.term_nodes_days, self.x_nodes
        if list(t) != sorted(set(t)) or 30.0 not in t:
            raise ValueError("term_nodes_days must be strictly increasing and hold 30")
        if list(x) != sorted(set(x)) or 0.0 not in x or len(x) < 3:
            raise ValueError("x_nodes must be strictly increasing, hold 0 and at least 3 nodes")
        return self


class _Instruments(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tenors_days: tuple[PositiveInt, ...]
    deltas: tuple[float, ...]
    moneyness: tuple[PositiveFloat, ...]
    strike_step: PositiveFloat
    delta_iterations: PositiveInt

    @model_validator(mode="after")
    def _ranges(self) -> _Instruments:
        if not self.tenors_days or len(set(self.tenors_days)) != len(self.tenors_days):
            raise ValueError("tenors_days must be distinct and not empty")
        if any(not 0.0 < d < 0.5 for d in self.deltas):
            raise ValueError("deltas must be in (0, 0.5): out-of-the-money calls and puts")
        if any(m == 1.0 for m in self.moneyness):
            raise ValueError("moneyness 1 is the ATM strike, which is always listed")
        return self


class HistoryParams(BaseModel):
    """Validated ``history.toml`` (see the file for the meaning of every key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    index: _Index
    proxy: _Proxy
    forward: _Forward
    template: _Template
    instruments: _Instruments


def load_history_params(path: str | Path = "history",
                        overrides: Mapping[str, Any] | None = None) -> HistoryParams:
    """Load the history-market parameters.

    Parameters
    ----------
    path : str or Path, optional
        Shipped name (``"history"``) or a TOML file.
    overrides : mapping, optional
        Nested or dotted keys merged over the file (``{"proxy.window_hours": 168}``).

    Returns
    -------
    HistoryParams
        Frozen parameters.

    Raises
    ------
    ParamsError
        Naming the key for an unknown, missing or invalid value.
    """
    return load_params_file(HistoryParams, path, _SHIPPED, overrides)
