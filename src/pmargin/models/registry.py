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
from pmargin.models.params import STANDARD_KINDS, list_presets, read_preset
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
        presets = list_presets()
        if name not in presets:
            base = name[: -len(ISOLATED_SUFFIX)] if name.endswith(ISOLATED_SUFFIX) else None
            if base in presets and read_preset(base).get("model") == "standard":
                from pmargin.models.isolated import IsolatedMarginModel

                return IsolatedMarginModel(load_model(base, overrides), name)
            known = list_models()
            hint = nearest(name, known)
            raise ParamsError("model", name, "unknown model" + (
                f"; did you mean '{hint}'?" if hint else "") + f" (models: {', '.join(known)})")
    # Model classes are imported for the kind asked for only: a one-account CLI call does not
    # pay for building the parameter schemas of every other model.
    kind = read_preset(name).get("model")
    if kind not in STANDARD_KINDS:
        return _other_kind(kind, name, overrides)
    from pmargin.models.params import PMParams, SMParams, load_params

    params = load_params(name, overrides)
    if isinstance(params, SMParams):
        from pmargin.models.standard import StandardMarginModel

        return StandardMarginModel(params)
    from pmargin.models.portfolio_margin import PortfolioMarginModel

    assert isinstance(params, PMParams)
    return PortfolioMarginModel(params)


def _other_kind(kind: Any, name: str | Path, overrides: Mapping[str, Any] | None) -> MarginModel:
    from pmargin.models.derive.params import MODEL_NAME as DERIVE
    from pmargin.models.var_fhs.params import MODEL_NAME as VAR_FHS

    if kind == DERIVE:
        from pmargin.models.derive import DerivePM2Model, load_derive_pm2_params

        return DerivePM2Model(load_derive_pm2_params(name, overrides))
    if kind == VAR_FHS:
        from pmargin.models.var_fhs import VarFhsModel, load_var_fhs_params

        return VarFhsModel(load_var_fhs_params(name, overrides))
    from pmargin.models.params import load_params

    load_params(name, overrides)  # raises: the preset names no model kind that exists
    raise AssertionError(f"unreachable: model kind {kind!r}")
