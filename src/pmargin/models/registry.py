"""Model registry: preset name → configured margin model."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pmargin.errors import InvalidInput
from pmargin.models.base import MarginModel
from pmargin.models.derive import DerivePM2Model, load_derive_pm2_params
from pmargin.models.derive.params import MODEL_NAME as DERIVE
from pmargin.models.params import PMParams, SMParams, list_presets, load_params, read_preset
from pmargin.models.portfolio_margin import PortfolioMarginModel
from pmargin.models.standard import StandardMarginModel

__all__ = ["list_models", "load_model"]


def list_models() -> list[str]:
    """Return the shipped presets usable with :func:`load_model` (every shipped preset)."""
    return list_presets()


def load_model(
    name: str | Path,
    overrides: Mapping[str, Any] | None = None,
    mode: str | None = None,
) -> MarginModel:
    """Load a margin model from a shipped preset name or a TOML file.

    Parameters
    ----------
    name : str or Path
        ``deribit-sm``, ``linear-sm``, ``deribit-pm``, ``paradex-pm``, ``okx-pm``, ``span``,
        ``pmargin``, ``derive-pm2``, or a path to a preset file.
    overrides : mapping, optional
        Parameter overrides (nested or dotted keys).
    mode : str, optional
        ``cross`` (default) or ``isolated`` for standard-margin presets; must be omitted or
        ``portfolio`` for portfolio presets.

    Returns
    -------
    MarginModel
        The configured model.

    Raises
    ------
    InvalidInput
        On an unknown preset, an invalid parameter or a mode the model does not support.
    """
    if read_preset(name).get("model") == DERIVE:
        if mode not in (None, "portfolio", "cross"):
            raise InvalidInput("mode", mode, f"portfolio margin model {DERIVE} has no {mode} mode")
        return DerivePM2Model(load_derive_pm2_params(name, overrides))
    params = load_params(name, overrides)
    if isinstance(params, SMParams):
        m = mode or "cross"
        if m not in ("cross", "isolated"):
            raise InvalidInput("mode", mode, "standard margin supports 'cross' or 'isolated'")
        return StandardMarginModel(params, m)  # type: ignore[arg-type]
    assert isinstance(params, PMParams)
    if mode not in (None, "portfolio", "cross"):
        raise InvalidInput("mode", mode, f"portfolio margin model {params.name} has no {mode} mode")
    return PortfolioMarginModel(params)
