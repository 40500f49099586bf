"""Parameter schema of Derive PMRM_2 and its (single) parameter-file loading function.

The methodology groups (``scenarios``, ``vol_shock``, ``skew_shock``, ``margin``,
``basis_contingency``, ``other_contingency``) are exactly the ``Parameters`` block of a Derive
case file: snake_case names in TOML, the case-file names (``VOLRANGEUP``, ``SpotShock`` ...) as
aliases. The ``account`` table says how a pmargin account maps onto a Derive subaccount (cash
asset, rate, oracle confidence, collateral haircuts); it is needed by the model
(:class:`pmargin.models.derive.model.DerivePM2Model`) and absent from case files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pmargin.errors import ParamsError
from pmargin.overrides import deep_merge
from pmargin.scenarios import SkewShockParams

__all__ = [
    "MODEL_NAME",
    "BasisContingencyParams",
    "CollateralHaircutParams",
    "DeriveAccountParams",
    "DeriveCollateralParams",
    "DerivePM2Params",
    "DeriveScenario",
    "MarginParams",
    "OtherContingencyParams",
    "SkewShockParams",
    "VolShockParams",
    "load_derive_pm2_params",
    "scenario_families",
    "validate_derive_pm2_params",
]

MODEL_NAME: Literal["derive-pm2"] = "derive-pm2"
"""Value of the ``model`` key of a Derive PMRM_2 parameter file (and the shipped preset name)."""

VolDirection = Literal["up", "down", "none", "linear", "abs"]
ScenarioKind = Literal["regular", "tail", "skew"]

_SKEW_DIRECTIONS = ("linear", "abs")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class DeriveScenario(_Frozen):
    """One margin scenario: spot shock, vol shock direction and dampening factor.

    Accepts the case-file names (``SpotShock``, ``VolShockDirection``, ``DampeningFactor``) and
    directions in any case (``Up``, ``LINEAR`` ...).
    """

    spot_shock: float = Field(gt=0.0, alias="SpotShock")
    """Multiplier on the variable forward, perp price and risk-cancelling collateral."""
    vol_shock: VolDirection = Field(alias="VolShockDirection")
    """``up``, ``down``, ``none`` (vol-shock scenarios) or ``linear``, ``abs`` (skew scenarios)."""
    dampening: float = Field(ge=0.0, alias="DampeningFactor")
    """Multiplier on the scenario P&L."""
    kind: ScenarioKind = "regular"
    """Family used for reporting: ``regular``, ``tail`` or ``skew``. When omitted it is ``skew``
    for skew directions, ``regular`` for dampening 1 and ``tail`` otherwise."""

    @field_validator("vol_shock", mode="before")
    @classmethod
    def _lower_direction(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @model_validator(mode="before")
    @classmethod
    def _infer_kind(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("kind") is None:
            out = dict(data)
            direction = str(out.get("vol_shock", out.get("VolShockDirection", ""))).strip().lower()
            damp = out.get("dampening", out.get("DampeningFactor", 1.0))
            try:
                damp_value = float(damp)
            except (TypeError, ValueError):
                damp_value = 1.0
            if direction in _SKEW_DIRECTIONS:
                out["kind"] = "skew"
            else:
                out["kind"] = "regular" if damp_value == 1.0 else "tail"
            return out
        return data

    @model_validator(mode="after")
    def _kind_matches_direction(self) -> DeriveScenario:
        if (self.kind == "skew") != (self.vol_shock in _SKEW_DIRECTIONS):
            raise ValueError(
                f"scenario kind {self.kind!r} does not match vol shock direction {self.vol_shock!r}"
            )
        return self


class VolShockParams(_Frozen):
    """Term-scaled vol shocks (``VolShock`` group)."""

    vol_range_up: float = Field(ge=0.0, alias="VOLRANGEUP")
    vol_range_down: float = Field(ge=0.0, alias="VOLRANGEDOWN")
    short_term_power: float = Field(alias="SHORTTERMPOWER")
    """Exponent used when days to expiry <= 30."""
    long_term_power: float = Field(alias="LONGTERMPOWER")
    dte_floor_days: float = Field(ge=0.0, alias="DTE_FLOOR")
    """Floor on days to expiry in the term scale."""
    min_vol_eval_shocked: float = Field(ge=0.0, alias="MIN_VOL_EVAL_SHOCKED")
    """Floor on the up-shocked vol."""


class MarginParams(_Frozen):
    """Loss factors and static discounts (``Margin`` group)."""

    im_loss_factor: float = Field(ge=0.0, alias="IM_LOSS_FACTOR")
    mm_loss_factor: float = Field(ge=0.0, alias="MM_LOSS_FACTOR")
    long_rate_multscale: float = Field(alias="LONG_RATE_MULTSCALE")
    long_rate_addscale: float = Field(alias="LONG_RATE_ADDSCALE")
    short_rate_multscale: float = Field(alias="SHORT_RATE_MULTSCALE")
    short_rate_addscale: float = Field(alias="SHORT_RATE_ADDSCALE")
    base_static_discount: float = Field(ge=0.0, alias="BASE_STATIC_DISCOUNT")
    """Static discount on a positive expiry MtM (before the rate term)."""
    base_static_discount_neg: float = Field(ge=0.0, alias="BASE_STATIC_DISCOUNT_NEG")
    """Static discount on a negative expiry MtM (before the rate term)."""


class BasisContingencyParams(_Frozen):
    """Forward (basis) contingency (``BasisContingency`` group)."""

    scenario_spot_up: float = Field(gt=0.0, alias="SCENARIO_SPOT_UP")
    scenario_spot_down: float = Field(gt=0.0, alias="SCENARIO_SPOT_DOWN")
    add_factor: float = Field(ge=0.0, alias="BASIS_CONT_ADD_FACTOR")
    mult_factor: float = Field(ge=0.0, alias="BASIS_CONT_MULT_FACTOR")


class OtherContingencyParams(_Frozen):
    """Peg loss, oracle confidence, perp and option contingencies (``OtherContingency`` group).

    The case files also carry ``IM_PERP_PERCENT_NORMAL`` and ``IM_OPTION_PERCENT_NORMAL`` (IM +
    MM sums, not used); the case loader drops them.
    """

    peg_loss_threshold: float = Field(ge=0.0, alias="PEG_LOSS_THRESHOLD")
    peg_loss_factor: float = Field(ge=0.0, alias="PEG_LOSS_FACTOR")
    conf_threshold: float = Field(ge=0.0, alias="CONF_THRESHOLD")
    conf_margin: float = Field(ge=0.0, alias="CONF_MARGIN")
    mm_perp_percent: float = Field(ge=0.0, alias="MM_PERP_PERCENT")
    im_perp_percent: float = Field(ge=0.0, alias="IM_PERP_PERCENT")
    mm_option_percent: float = Field(ge=0.0, alias="MM_OPTION_PERCENT")
    im_option_percent: float = Field(ge=0.0, alias="IM_OPTION_PERCENT")


class CollateralHaircutParams(_Frozen):
    """Derive's IM and MM haircuts of one collateral asset (fractions of its value).

    As in PMRM_2 the MM haircut is charged in MM and in IM, the IM haircut in IM only.
    """

    im_haircut: float = Field(ge=0.0, le=1.0)
    mm_haircut: float = Field(ge=0.0, le=1.0)


class DeriveCollateralParams(_Frozen):
    """Haircuts of one collateral currency in a Derive subaccount.

    ``risk_cancelling`` applies when the currency is the account's underlying (its value moves
    with the scenario spot shock), ``static`` otherwise. A missing entry makes such an account an
    input error (no haircut is ever assumed).
    """

    risk_cancelling: CollateralHaircutParams | None = None
    static: CollateralHaircutParams | None = None


class DeriveAccountParams(_Frozen):
    """How a pmargin account maps onto a Derive PMRM_2 subaccount (``account`` table)."""

    cash_currency: str = Field(min_length=1)
    """Derive's cash asset: balances in it are ``Cash`` (stable units, may be negative)."""
    rate: float
    """Annual rate of every expiry feed (discounting and static discounts)."""
    oracle_confidence: float = Field(ge=0.0, le=1.0)
    """Confidence of every price feed (spot, perp, forward, rate, vol, collateral)."""
    collateral: dict[str, DeriveCollateralParams]
    """Haircuts by collateral currency (upper case)."""

    @field_validator("cash_currency")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.strip().upper()

    @field_validator("collateral")
    @classmethod
    def _upper_keys(
        cls, v: dict[str, DeriveCollateralParams]
    ) -> dict[str, DeriveCollateralParams]:
        return {k.strip().upper(): x for k, x in v.items()}


class DerivePM2Params(_Frozen):
    """Complete PMRM_2 parameter set: the ``Parameters`` block of a case file, plus ``account``.

    ``account`` is ``None`` for case files (the case gives the account directly); the margin
    model needs it.
    """

    schema_version: Literal[1] = 1
    model: Literal["derive-pm2"] = MODEL_NAME
    name: str = MODEL_NAME
    source: str = ""
    assumptions: tuple[str, ...] = ()
    scenarios: tuple[DeriveScenario, ...] = Field(min_length=1, alias="Scenarios")
    vol_shock: VolShockParams = Field(alias="VolShock")
    skew_shock: SkewShockParams = Field(alias="SkewShock")
    margin: MarginParams = Field(alias="Margin")
    basis_contingency: BasisContingencyParams = Field(alias="BasisContingency")
    other_contingency: OtherContingencyParams = Field(alias="OtherContingency")
    account: DeriveAccountParams | None = None


def validate_derive_pm2_params(
    data: Mapping[str, Any], source: str = "parameters"
) -> DerivePM2Params:
    """Validate a raw parameter mapping (TOML or case-file names) into :class:`DerivePM2Params`.

    Parameters
    ----------
    data : mapping
        Parameters with snake_case or case-file (``VOLRANGEUP`` ...) names.
    source : str
        Name used in error messages.

    Returns
    -------
    DerivePM2Params
        The validated, frozen parameters.

    Raises
    ------
    ParamsError
        Naming the first invalid or unknown field.
    """
    from pmargin.paramfiles import validate_params

    return validate_params(DerivePM2Params, data, source)


def load_derive_pm2_params(
    name_or_path: str | Path = MODEL_NAME, overrides: Mapping[str, Any] | None = None
) -> DerivePM2Params:
    """Load PMRM_2 parameters from a shipped preset name or a TOML file.

    The only place Derive parameter files are read; the file itself is read by the project's
    preset reader (:func:`pmargin.models.params.read_preset`).

    Parameters
    ----------
    name_or_path : str or Path, default ``"derive-pm2"``
        Shipped preset name or path to a TOML file.
    overrides : mapping, optional
        Nested or dotted-key overrides, e.g. ``{"margin.mm_loss_factor": 0.75}`` (snake_case).

    Returns
    -------
    DerivePM2Params
        Validated parameters.

    Raises
    ------
    ParamsError
        If the file is missing or not valid TOML, its ``model`` is not ``derive-pm2``, or a value
        is missing, unknown or invalid.
    """
    from pmargin.models.params import read_preset

    raw = read_preset(name_or_path)
    if raw.get("model") != MODEL_NAME:
        raise ParamsError("model", raw.get("model"),
                          f"a Derive PMRM_2 parameter file needs model = '{MODEL_NAME}' "
                          f"(in {name_or_path})")
    if overrides:
        raw = deep_merge(raw, overrides)
    return validate_derive_pm2_params(raw, str(name_or_path))


def scenario_families(
    scenarios: Sequence[Mapping[str, Any]], n_regular: int, n_tail: int
) -> list[dict[str, Any]]:
    """Tag raw scenario mappings with their family by position (regular, tail, then skew).

    Parameters
    ----------
    scenarios : sequence of mapping
        Raw scenario entries (case-file or snake_case names).
    n_regular, n_tail : int
        Number of regular and tail scenarios at the head of the list.

    Returns
    -------
    list of dict
        Copies with a ``kind`` key.
    """
    out: list[dict[str, Any]] = []
    for i, s in enumerate(scenarios):
        d = dict(s)
        d["kind"] = "regular" if i < n_regular else "tail" if i < n_regular + n_tail else "skew"
        out.append(d)
    return out
