"""Model registry: preset name → configured margin model.

Isolated margin is a kind of model, not a parameter set: ``<preset>-isolated`` is the isolated
model (:class:`~pmargin.models.isolated.IsolatedMarginModel`) over the standard-margin preset
``<preset>``, whose TOML holds the only copy of the rates. Every standard-margin preset has one
(``deribit-sm-isolated``, ``linear-sm-isolated``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pmargin.errors import ParamsError
from pmargin.models.base import MarginModel
from pmargin.models.derive import DerivePM2Model, load_derive_pm2_params
from pmargin.models.derive.params import MODEL_NAME as DERIVE
from pmargin.models.isolated import IsolatedMarginModel
from pmargin.models.params import PMParams, SMParams, list_presets, load_params, read_preset
from pmargin.models.portfolio_margin import PortfolioMarginModel
from pmargin.models.standard import StandardMarginModel
from pmargin.models.var_fhs import MODEL_NAME as VAR_FHS
from pmargin.models.var_fhs import VarFhsModel, load_var_fhs_params
from pmargin.validation import nearest

__all__ = ["ISOLATED_SUFFIX", "list_models", "load_model"]

ISOLATED_SUFFIX = "-isolated"
"""Suffix naming the isolated-margin model of a standard-margin preset."""


def _standard_presets() -> list[str]:
    return [p for p in list_presets() if read_preset(p).get("model") == "standard"]


def list_models() -> list[str]:
    """Return the model names usable with :func:`load_model` (presets and isolated kinds)."""
    return sorted(list_presets() + [p + ISOLATED_SUFFIX for p in _standard_presets()])


def load_model(
    name: str | Path,
    overrides: Mapping[str, Any] | None = None,
) -> MarginModel:
    """Load a margin model from a model name or a preset TOML file.

    Parameters
    ----------
    name : str or Path
        A name of :func:`list_models` (``deribit-sm``, ``deribit-sm-isolated``, ``linear-sm``,
        ``linear-sm-isolated``, ``deribit-pm``, ``paradex-pm``, ``okx-pm``, ``span``,
        ``pmargin``, ``derive-pm2``, ``var-fhs``) or a path to a preset file.
    overrides : mapping, optional
        Parameter overrides (nested or dotted keys) of the preset.

    Returns
    -------
    MarginModel
        The configured model.

    Raises
    ------
    InvalidInput
        On an unknown name or an invalid parameter.
    """
    if isinstance(name, str) and not name.endswith(".toml") and "/" not in name:
        known = list_models()
        if name not in known:
            hint = nearest(name, known)
            raise ParamsError("model", name, "unknown model" + (
                f"; did you mean '{hint}'?" if hint else "") + f" (models: {', '.join(known)})")
    if isinstance(name, str) and name.endswith(ISOLATED_SUFFIX) \
            and name[: -len(ISOLATED_SUFFIX)] in _standard_presets():
        return IsolatedMarginModel(load_model(name[: -len(ISOLATED_SUFFIX)], overrides), name)
    kind = read_preset(name).get("model")
    if kind == DERIVE:
        return DerivePM2Model(load_derive_pm2_params(name, overrides))
    if kind == VAR_FHS:
        return VarFhsModel(load_var_fhs_params(name, overrides))
    params = load_params(name, overrides)
    if isinstance(params, SMParams):
        return StandardMarginModel(params)
    assert isinstance(params, PMParams)
    return PortfolioMarginModel(params)
