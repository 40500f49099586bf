r"""Derive PMRM_2 portfolio margin, reproduced exactly (vectorised NumPy).

Derive's second portfolio-margin manager (``PMRM_2``) values one account holding options of
one underlying across several expiries, a perpetual, cash in a stable coin and other
collateral. It reprices the options in a list of scenarios (spot shock x vol shock x
dampening), takes the worst scenario P&L, the basis (forward) contingency and a set of static
contingencies, and returns the account value *after* the requirement.

Methodology (all money in USD, time :math:`\tau` = seconds / (365 x 86400))
---------------------------------------------------------------------------
* **Valuation.** Black-76 on the expiry forward with ``df = exp(-max(r, 0) tau)``; the mark vol
  of each option is used as given. Per-expiry MtM :math:`M_e = \sum_i q_i V_i`.
* **Forward portions.** Inside the last :data:`FORWARD_SETTLEMENT_SECONDS` (30 min) the forward
  splits into a fixed part ``F (1800 - s) / 1800`` and a variable part ``F s / 1800``; only the
  variable part is shocked: :math:`F_s = F_{fix} + F_{var} \cdot shock`.
* **Vol shocks** per option: ``up = 1 + VOLRANGEUP (30 / max(DTE, DTE_FLOOR))^p``,
  ``down = max(0, 1 - VOLRANGEDOWN (...)^p)``, ``p = SHORTTERMPOWER`` if DTE <= 30 days else
  ``LONGTERMPOWER`` (:mod:`pmargin.scenarios`); up-shocked vol
  ``max(vol up, MIN_VOL_EVAL_SHOCKED)``.
* **Skew shocks** (``LINEAR``/``ABS``): ``cap = CBASE sqrt(tau) + SCALE_CAP``,
  ``k* = max(MIN_K_STAR, MIN_WIDTH_SCALE sqrt(tau) (VOL_PARAM_STATIC
  + VOL_PARAM_SCALE sqrt(tau)))``,
  ``k = ln(K / F)`` (``|k|`` for ABS); multiplier ``1 + min(cap, k cap / k*)`` for ``k >= 0`` and
  ``1 + max(-cap, k cap / k*)`` for ``k < 0``; the shocked vol is ``vol x max(multiplier, 0)``.
* **Static discount** per expiry, chosen by the sign of the *shocked* expiry MtM, in every
  scenario including (1.0, None): ``d+ = BASE_STATIC_DISCOUNT exp(-tau (r+ LONG_RATE_MULTSCALE +
  LONG_RATE_ADDSCALE))``, ``d- = min(exp(r+ tau), BASE_STATIC_DISCOUNT_NEG exp(tau (r+
  SHORT_RATE_MULTSCALE + SHORT_RATE_ADDSCALE)))``; both are 1 for an expired feed.
* **Scenario P&L**: ``sum_e (d(M_e^s) M_e^s - M_e) damp`` (skew scenarios use ``-|.|`` per
  expiry) ``+ perp (shock - 1) perp_price damp + riskCancellingCollateral (shock - 1) damp``.
* **Basis contingency** ``sum_e min(M_e^up - M_e, M_e^down - M_e, 0) (ADD + MULT tau)`` with the
  forward shocked by ``SCENARIO_SPOT_UP``/``SCENARIO_SPOT_DOWN`` (vol unshocked, no discount).
* ``W = min(all scenario P&L, basis contingency)`` (<= 0).
* **Contingencies** (reported as negative numbers): naked shorts per (expiry, strike) netted
  across calls and puts, times spot times ``MM/IM_OPTION_PERCENT``; ``|perp| spot`` times
  ``MM/IM_PERP_PERCENT``; collateral value times its MM/IM haircut; oracle confidence
  ``(1 - c) CONF_MARGIN notional`` when ``c < CONF_THRESHOLD`` (IM only), with ``c`` = min(own,
  spot) for collateral, min(spot, perp) for the perp (notional ``|perp| spot``) and min(spot,
  perp, forward, rate, vol) for each expiry (notional ``sum |q| spot``).
* ``MM = MtM + W MM_LOSS_FACTOR + MM contingencies``;
  ``IM = MtM + W (IM_LOSS_FACTOR + PEG_LOSS_FACTOR max(0, PEG_LOSS_THRESHOLD - stable))
  + MM contingencies + IM contingencies + oracle contingency``.

``IM`` and ``MM`` follow Derive's sign convention: the portfolio value *after* the requirement
(> 0 excess, < 0 shortfall). :attr:`DerivePM2Result.initial_margin_requirement` and
:attr:`DerivePM2Result.maintenance_margin_requirement` give the requirement in pmargin's
convention (a non-negative-in-practice amount: ``PortfolioMTM - IM``).

Source: derivexyz/v2-core @ 7736900d, PMRM_2 portfolio cases (test data only) and
``reference/methodologies.md`` section 6.3; see ``docs/models/derive-pm2.md``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pmargin._typing import BoolArray, FloatArray, IntArray
from pmargin.errors import InvalidInput, ParamsError
from pmargin.overrides import deep_merge
from pmargin.pricing.black76 import price
from pmargin.scenarios import term_scale, vol_multiplier_down, vol_multiplier_up

__all__ = [
    "FORWARD_SETTLEMENT_SECONDS",
    "SECONDS_PER_DAY",
    "SECONDS_PER_YEAR",
    "BasisContingencyParams",
    "DeriveCollateral",
    "DeriveExpiryFeed",
    "DeriveOption",
    "DerivePM2Inputs",
    "DerivePM2Params",
    "DerivePM2Result",
    "DerivePerp",
    "DeriveScenario",
    "MarginParams",
    "OtherContingencyParams",
    "SkewShockParams",
    "VolShockParams",
    "compute_derive_pm2",
    "forward_portions",
    "load_derive_pm2_params",
    "scenario_families",
    "skew_multipliers",
    "static_discounts",
    "validate_derive_pm2_params",
]

SECONDS_PER_DAY = 86_400.0
"""Seconds in a day."""
SECONDS_PER_YEAR = 365.0 * SECONDS_PER_DAY
"""Seconds in Derive's year (365 days)."""
FORWARD_SETTLEMENT_SECONDS = 1_800.0
"""Length of the settlement window in which the forward splits into fixed and variable parts."""

VolDirection = Literal["up", "down", "none", "linear", "abs"]
ScenarioKind = Literal["regular", "tail", "skew"]
WorstLabel = Literal["regular", "tail", "skew", "fwd_contingency"]

_DIRECTION_CODE: dict[str, int] = {"none": 0, "up": 1, "down": 2, "linear": 3, "abs": 4}
_SKEW_DIRECTIONS = ("linear", "abs")
_PRESET_NAME = "derive-pm2.toml"


# ============================================================================ parameters
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


class SkewShockParams(_Frozen):
    """Wing rotations of the skew scenarios (``SkewShock`` group)."""

    linear_scale_cap: float = Field(alias="LINEAR_SCALE_CAP")
    linear_cbase: float = Field(alias="LINEAR_CBASE")
    abs_scale_cap: float = Field(alias="ABS_SCALE_CAP")
    abs_cbase: float = Field(alias="ABS_CBASE")
    min_k_star: float = Field(ge=0.0, alias="MIN_K_STAR")
    min_width_scale: float = Field(ge=0.0, alias="MIN_WIDTH_SCALE")
    vol_param_static: float = Field(alias="VOL_PARAM_STATIC")
    vol_param_scale: float = Field(alias="VOL_PARAM_SCALE")


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


class DerivePM2Params(_Frozen):
    """Complete PMRM_2 parameter set (the ``Parameters`` block of a case file)."""

    name: str = "derive-pm2"
    source: str = ""
    assumptions: tuple[str, ...] = ()
    scenarios: tuple[DeriveScenario, ...] = Field(min_length=1, alias="Scenarios")
    vol_shock: VolShockParams = Field(alias="VolShock")
    skew_shock: SkewShockParams = Field(alias="SkewShock")
    margin: MarginParams = Field(alias="Margin")
    basis_contingency: BasisContingencyParams = Field(alias="BasisContingency")
    other_contingency: OtherContingencyParams = Field(alias="OtherContingency")


def _validation_to_params_error(exc: ValidationError, source: str) -> ParamsError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or source
    return ParamsError(loc, err.get("input"), f"{err.get('msg', 'invalid')} (in {source})")


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
        Naming the first invalid field.
    """
    try:
        return DerivePM2Params.model_validate(dict(data))
    except ValidationError as exc:
        raise _validation_to_params_error(exc, source) from exc


def _read_preset_text() -> str:
    try:
        res = resources.files("pmargin.models.presets") / _PRESET_NAME
        if res.is_file():
            return res.read_text(encoding="utf-8")
    except (ModuleNotFoundError, TypeError, ImportError):  # pragma: no cover - packaging fallback
        pass
    return (resources.files("pmargin.models") / "presets" / _PRESET_NAME).read_text(
        encoding="utf-8"
    )


def load_derive_pm2_params(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> DerivePM2Params:
    """Load the PMRM_2 parameters from a TOML file (default: the shipped ``derive-pm2`` preset).

    Parameters
    ----------
    path : str or Path, optional
        TOML file; ``None`` loads the shipped preset (package data of ``pmargin.models.presets``).
    overrides : mapping, optional
        Nested or dotted-key overrides, e.g. ``{"margin.mm_loss_factor": 0.75}``. Keys use the
        TOML (snake_case) names.

    Returns
    -------
    DerivePM2Params
        Validated parameters.

    Raises
    ------
    ParamsError
        If the file is missing or not valid TOML, or a value is invalid.
    """
    source = str(path) if path is not None else "derive-pm2"
    try:
        if path is None:
            text = _read_preset_text()
        else:
            p = Path(path)
            if not p.is_file():
                raise ParamsError("path", str(path), "no such parameter file")
            text = p.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParamsError("path", source, f"is not valid TOML: {exc}") from exc
    if overrides:
        raw = deep_merge(raw, overrides)
    raw.pop("schema_version", None)
    raw.pop("model", None)
    return validate_derive_pm2_params(raw, source)


# ============================================================================ inputs
def _check_finite(field: str, value: float) -> None:
    if not math.isfinite(value):
        raise InvalidInput(field, value, "must be a finite number")


def _check_unit(field: str, value: float) -> None:
    _check_finite(field, value)
    if not 0.0 <= value <= 1.0:
        raise InvalidInput(field, value, "must lie in [0, 1]")


@dataclass(frozen=True)
class DeriveOption:
    """One option position (cash-settled European on the account's underlying).

    Parameters
    ----------
    expiry_seconds : float
        Seconds to expiry from the valuation time (0 = expired); must match a feed.
    strike : float
        Strike in USD (> 0).
    is_call : bool
        True for a call.
    amount : float
        Signed number of contracts (negative = short).
    mark_vol : float
        Implied vol used to mark the option (decimal, >= 0).
    linear_multiplier, abs_multiplier : float, optional
        Override of the skew multipliers (normally computed from the parameters, see
        :func:`skew_multipliers`).
    """

    expiry_seconds: float
    strike: float
    is_call: bool
    amount: float
    mark_vol: float
    linear_multiplier: float | None = None
    abs_multiplier: float | None = None

    def __post_init__(self) -> None:
        _check_finite("option.expiry_seconds", self.expiry_seconds)
        if self.expiry_seconds < 0:
            raise InvalidInput("option.expiry_seconds", self.expiry_seconds, "must be >= 0")
        _check_finite("option.strike", self.strike)
        if self.strike <= 0:
            raise InvalidInput("option.strike", self.strike, "must be > 0")
        _check_finite("option.amount", self.amount)
        _check_finite("option.mark_vol", self.mark_vol)
        if self.mark_vol < 0:
            raise InvalidInput("option.mark_vol", self.mark_vol, "must be >= 0")
        for name in ("linear_multiplier", "abs_multiplier"):
            v = getattr(self, name)
            if v is not None:
                _check_finite(f"option.{name}", v)


@dataclass(frozen=True)
class DeriveExpiryFeed:
    """Market data of one expiry.

    Parameters
    ----------
    expiry_seconds : float
        Seconds to expiry (matches :attr:`DeriveOption.expiry_seconds`).
    forward : float
        Forward price in USD (> 0).
    rate : float
        Annual continuously compounded rate (may be negative; floored at 0 for discounting).
    forward_confidence, rate_confidence, vol_confidence : float
        Oracle confidences in [0, 1].
    forward_fixed : float, optional
        Fixed (already averaged) portion of the forward. ``None`` applies the settlement-window
        split of :func:`forward_portions`.
    """

    expiry_seconds: float
    forward: float
    rate: float = 0.0
    forward_confidence: float = 1.0
    rate_confidence: float = 1.0
    vol_confidence: float = 1.0
    forward_fixed: float | None = None

    def __post_init__(self) -> None:
        _check_finite("feed.expiry_seconds", self.expiry_seconds)
        if self.expiry_seconds < 0:
            raise InvalidInput("feed.expiry_seconds", self.expiry_seconds, "must be >= 0")
        _check_finite("feed.forward", self.forward)
        if self.forward <= 0:
            raise InvalidInput("feed.forward", self.forward, "must be > 0")
        _check_finite("feed.rate", self.rate)
        _check_unit("feed.forward_confidence", self.forward_confidence)
        _check_unit("feed.rate_confidence", self.rate_confidence)
        _check_unit("feed.vol_confidence", self.vol_confidence)
        if self.forward_fixed is not None:
            _check_finite("feed.forward_fixed", self.forward_fixed)
            if not 0.0 <= self.forward_fixed <= self.forward:
                raise InvalidInput("feed.forward_fixed", self.forward_fixed,
                                   "must lie in [0, forward]")


@dataclass(frozen=True)
class DerivePerp:
    """Perpetual position.

    Parameters
    ----------
    amount : float
        Signed units of underlying.
    price : float
        Perp mark price (USD), used for the scenario P&L.
    confidence : float
        Perp price oracle confidence in [0, 1] (merged with spot confidence when ``amount != 0``).
    unrealised_pnl, unrealised_funding : float
        Unsettled P&L and funding (USD), part of the MtM.
    """

    amount: float
    price: float
    confidence: float = 1.0
    unrealised_pnl: float = 0.0
    unrealised_funding: float = 0.0

    def __post_init__(self) -> None:
        _check_finite("perp.amount", self.amount)
        _check_finite("perp.price", self.price)
        if self.price < 0:
            raise InvalidInput("perp.price", self.price, "must be >= 0")
        _check_unit("perp.confidence", self.confidence)
        _check_finite("perp.unrealised_pnl", self.unrealised_pnl)
        _check_finite("perp.unrealised_funding", self.unrealised_funding)


@dataclass(frozen=True)
class DeriveCollateral:
    """Non-option asset held as collateral.

    Parameters
    ----------
    amount : float
        Units held (>= 0).
    price : float
        USD price (>= 0). Value = ``amount * price / stable_price``.
    im_haircut, mm_haircut : float
        Fractions of the value deducted as IM / MM contingency.
    is_risk_cancelling : bool
        If True the value moves with the scenario spot shock (the asset tracks the underlying).
    confidence : float
        Price oracle confidence in [0, 1].
    name : str
        Label only.
    """

    amount: float
    price: float
    im_haircut: float = 0.0
    mm_haircut: float = 0.0
    is_risk_cancelling: bool = False
    confidence: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        _check_finite("collateral.amount", self.amount)
        if self.amount < 0:
            raise InvalidInput("collateral.amount", self.amount, "must be >= 0")
        _check_finite("collateral.price", self.price)
        if self.price < 0:
            raise InvalidInput("collateral.price", self.price, "must be >= 0")
        _check_unit("collateral.im_haircut", self.im_haircut)
        _check_unit("collateral.mm_haircut", self.mm_haircut)
        _check_unit("collateral.confidence", self.confidence)


@dataclass(frozen=True)
class DerivePM2Inputs:
    """Portfolio and market of one PMRM_2 account.

    Parameters
    ----------
    spot : float
        Spot price of the underlying (USD, > 0); notional of the contingencies.
    options : tuple of DeriveOption
        Option positions.
    feeds : tuple of DeriveExpiryFeed
        One feed per expiry (unique ``expiry_seconds``); results per expiry follow this order.
    collaterals : tuple of DeriveCollateral
        Other assets.
    perp : DerivePerp, optional
        Perpetual position.
    cash : float
        Cash balance in stable units (not converted by ``stable_price``).
    spot_confidence : float
        Spot oracle confidence in [0, 1].
    stable_price : float
        USD price of the stable coin (> 0); collateral is valued in stable units.
    stable_confidence : float
        Stable-coin oracle confidence (carried, not used by the methodology).
    """

    spot: float
    options: tuple[DeriveOption, ...] = ()
    feeds: tuple[DeriveExpiryFeed, ...] = ()
    collaterals: tuple[DeriveCollateral, ...] = ()
    perp: DerivePerp | None = None
    cash: float = 0.0
    spot_confidence: float = 1.0
    stable_price: float = 1.0
    stable_confidence: float = 1.0

    def __post_init__(self) -> None:
        _check_finite("spot", self.spot)
        if self.spot <= 0:
            raise InvalidInput("spot", self.spot, "must be > 0")
        _check_finite("cash", self.cash)
        _check_unit("spot_confidence", self.spot_confidence)
        _check_finite("stable_price", self.stable_price)
        if self.stable_price <= 0:
            raise InvalidInput("stable_price", self.stable_price, "must be > 0")
        _check_unit("stable_confidence", self.stable_confidence)
        expiries = [f.expiry_seconds for f in self.feeds]
        if len(set(expiries)) != len(expiries):
            raise InvalidInput("feeds", expiries, "expiries must be unique")
        known = set(expiries)
        for i, o in enumerate(self.options):
            if o.expiry_seconds not in known:
                raise InvalidInput(f"options[{i}].expiry_seconds", o.expiry_seconds,
                                   "has no feed with that expiry")


# ============================================================================ result
@dataclass(frozen=True, eq=False)
class DerivePM2Result:
    """Margins of one account and every intermediate term (Derive sign conventions).

    Losses and contingencies are negative numbers. Arrays ``*_per_expiry`` follow the order of
    :attr:`DerivePM2Inputs.feeds`; per-option arrays follow :attr:`DerivePM2Inputs.options`;
    per-scenario arrays follow :attr:`DerivePM2Params.scenarios`.
    """

    initial_margin: float
    """``IM``: portfolio value after the initial requirement (< 0 = shortfall)."""
    maintenance_margin: float
    """``MM``: portfolio value after the maintenance requirement."""
    portfolio_mtm: float
    """``OptionMTM + CollateralMTM + Cash + PerpMTM + UnrealisedFunding``."""
    option_mtm: float
    option_mtm_per_expiry: FloatArray
    option_mtm_per_expiry_discounted: FloatArray
    """Per-expiry MtM times the static discount chosen by its sign."""
    collateral_mtm: float
    perp_mtm: float
    """Unrealised perp P&L."""
    unrealised_funding: float
    cash: float
    scenarios: tuple[DeriveScenario, ...]
    scenario_pnl: FloatArray
    """P&L of every scenario (after static discount and dampening)."""
    reg_losses: FloatArray
    tail_losses: FloatArray
    skew_losses: FloatArray
    worst_reg_loss: float
    """Minimum of :attr:`reg_losses` (0 when there are none); likewise tail and skew."""
    worst_tail_loss: float
    worst_skew_loss: float
    worst_reg_scenario: DeriveScenario | None
    worst_tail_scenario: DeriveScenario | None
    worst_skew_scenario: DeriveScenario | None
    forward_contingency: float
    """Basis contingency (<= 0)."""
    forward_contingency_per_expiry: FloatArray
    worst_loss: float
    """``W = min(worst scenario P&L, forward contingency)``."""
    worst_all_scenarios: WorstLabel
    """Family of the binding term (ties resolve in the order regular, tail, skew, fwd)."""
    discount_pos: FloatArray
    """Static discount applied to a positive shocked expiry MtM, per expiry."""
    discount_neg: FloatArray
    """Static discount applied to a negative shocked expiry MtM, per expiry."""
    vol_shock_up_multiplier: FloatArray
    vol_shock_down_multiplier: FloatArray
    vol_shock_up_evaluated: FloatArray
    vol_shock_down_evaluated: FloatArray
    linear_multiplier: FloatArray
    abs_multiplier: FloatArray
    mm_loss_factor: float
    im_loss_factor: float
    """``IM_LOSS_FACTOR`` plus the peg-loss add-on."""
    mm_option_cont: float
    im_option_cont: float
    mm_perp_cont: float
    im_perp_cont: float
    mm_base_cont: float
    im_base_cont: float
    oracle_cont: float
    """Oracle-confidence contingency (IM only)."""

    @property
    def initial_margin_requirement(self) -> float:
        """Initial requirement in pmargin's convention: ``PortfolioMTM - IM`` (USD).

        Positive when the portfolio needs margin; the account meets IM when
        ``portfolio_mtm >= initial_margin_requirement`` (equivalently ``initial_margin >= 0``).
        """
        return self.portfolio_mtm - self.initial_margin

    @property
    def maintenance_margin_requirement(self) -> float:
        """Maintenance requirement in pmargin's convention: ``PortfolioMTM - MM`` (USD)."""
        return self.portfolio_mtm - self.maintenance_margin

    @property
    def mm_contingency(self) -> float:
        """Sum of the MM contingencies (<= 0)."""
        return self.mm_option_cont + self.mm_perp_cont + self.mm_base_cont

    @property
    def im_contingency(self) -> float:
        """Sum of the IM-only contingencies including the oracle add-on (<= 0)."""
        return self.im_option_cont + self.im_perp_cont + self.im_base_cont + self.oracle_cont


# ============================================================================ building blocks
def forward_portions(
    forward: FloatArray, expiry_seconds: FloatArray, window: float = FORWARD_SETTLEMENT_SECONDS
) -> tuple[FloatArray, FloatArray]:
    """Split forwards into fixed and variable portions (settlement window rule).

    Parameters
    ----------
    forward : ndarray
        Forward prices.
    expiry_seconds : ndarray
        Seconds to expiry.
    window : float, default 1800
        Length of the settlement averaging window in seconds.

    Returns
    -------
    fixed, variable : ndarray
        ``F (window - s) / window`` and ``F s / window`` inside the window; ``0`` and ``F``
        outside it. Only the variable portion is shocked.
    """
    f = np.asarray(forward, dtype=np.float64)
    s = np.asarray(expiry_seconds, dtype=np.float64)
    inside = s < window
    fixed = np.where(inside, f * (window - s) / window, 0.0)
    variable = np.where(inside, f * s / window, f)
    return fixed, variable


def static_discounts(
    tau: FloatArray, rate: FloatArray, margin: MarginParams
) -> tuple[FloatArray, FloatArray]:
    """Static discounts for positive and negative shocked expiry MtM.

    Parameters
    ----------
    tau : ndarray
        Years to expiry.
    rate : ndarray
        Expiry rates (floored at 0 here).
    margin : MarginParams
        Base discounts and rate scalings.

    Returns
    -------
    pos, neg : ndarray
        ``BASE_STATIC_DISCOUNT exp(-tau (r+ LONG_MULT + LONG_ADD))`` and
        ``min(exp(r+ tau), BASE_STATIC_DISCOUNT_NEG exp(tau (r+ SHORT_MULT + SHORT_ADD)))``;
        both 1 where ``tau == 0`` (expired feed).
    """
    t = np.asarray(tau, dtype=np.float64)
    rp = np.maximum(np.asarray(rate, dtype=np.float64), 0.0)
    pos = margin.base_static_discount * np.exp(
        -t * (rp * margin.long_rate_multscale + margin.long_rate_addscale)
    )
    neg = np.minimum(
        np.exp(rp * t),
        margin.base_static_discount_neg
        / np.exp(-t * (rp * margin.short_rate_multscale + margin.short_rate_addscale)),
    )
    expired = t <= 0.0
    return np.where(expired, 1.0, pos), np.where(expired, 1.0, neg)


def _capped(ratio: FloatArray, cap: FloatArray, positive: BoolArray) -> FloatArray:
    """``min(cap, ratio)`` where ``positive`` else ``max(-cap, ratio)``."""
    return np.where(positive, np.minimum(cap, ratio), np.maximum(-cap, ratio))


def skew_multipliers(
    tau: FloatArray, log_moneyness: FloatArray, skew: SkewShockParams
) -> tuple[FloatArray, FloatArray]:
    """Vol multipliers of the LINEAR and ABS skew scenarios.

    Parameters
    ----------
    tau : ndarray
        Years to expiry of each option.
    log_moneyness : ndarray
        ``k = ln(K / F)`` with the unshocked forward.
    skew : SkewShockParams
        Caps and width parameters.

    Returns
    -------
    linear, abs : ndarray
        ``1 + min(cap, k cap / k*)`` for ``k >= 0`` and ``1 + max(-cap, k cap / k*)`` for
        ``k < 0`` (with ``|k|`` for ABS), where ``cap = CBASE sqrt(tau) + SCALE_CAP`` and
        ``k* = max(MIN_K_STAR, MIN_WIDTH_SCALE sqrt(tau) (VOL_PARAM_STATIC + VOL_PARAM_SCALE
        sqrt(tau)))``. The shocked vol is ``vol * max(multiplier, 0)``. A zero ``k*`` is read
        as the limit (the cap binds).
    """
    st = np.sqrt(np.maximum(np.asarray(tau, dtype=np.float64), 0.0))
    k = np.asarray(log_moneyness, dtype=np.float64)
    kstar = np.maximum(
        skew.min_k_star,
        skew.min_width_scale * st * (skew.vol_param_static + skew.vol_param_scale * st),
    )
    safe = np.where(kstar > 0.0, kstar, 1.0)
    with np.errstate(invalid="ignore"):
        rel = np.where(k == 0.0, 0.0, np.where(kstar > 0.0, k / safe, np.sign(k) * np.inf))
        rel_abs = np.abs(rel)
        lin_cap = skew.linear_cbase * st + skew.linear_scale_cap
        abs_cap = skew.abs_cbase * st + skew.abs_scale_cap
        lin_ratio = np.where(rel == 0.0, 0.0, rel * lin_cap)
        abs_ratio = np.where(rel_abs == 0.0, 0.0, rel_abs * abs_cap)
    linear = 1.0 + _capped(lin_ratio, lin_cap, k >= 0.0)
    absolute = 1.0 + _capped(abs_ratio, abs_cap, np.ones_like(k, dtype=bool))
    return np.asarray(linear, dtype=np.float64), np.asarray(absolute, dtype=np.float64)


def _confidence_cont(
    conf: FloatArray, notional: FloatArray, other: OtherContingencyParams
) -> float:
    """``sum (1 - c) CONF_MARGIN notional`` over entries with ``c < CONF_THRESHOLD`` (>= 0)."""
    c = np.asarray(conf, dtype=np.float64)
    n = np.asarray(notional, dtype=np.float64)
    return float(np.sum(np.where(c < other.conf_threshold, (1.0 - c) * other.conf_margin * n, 0.0)))


def _family_worst(
    pnl: FloatArray, mask: BoolArray, scenarios: tuple[DeriveScenario, ...]
) -> tuple[FloatArray, float, DeriveScenario | None]:
    losses = pnl[mask]
    if losses.size == 0:
        return losses, 0.0, None
    where = np.flatnonzero(mask)
    j = int(np.argmin(losses))
    return losses, float(losses[j]), scenarios[int(where[j])]


# ============================================================================ engine
def compute_derive_pm2(inputs: DerivePM2Inputs, params: DerivePM2Params) -> DerivePM2Result:
    """Compute PMRM_2 initial and maintenance margin of one account.

    Every scenario, the unshocked valuation and the two basis scenarios are priced in one
    vectorised Black-76 call on a (row x option) grid.

    Parameters
    ----------
    inputs : DerivePM2Inputs
        Portfolio and market.
    params : DerivePM2Params
        Model parameters.

    Returns
    -------
    DerivePM2Result
        ``IM``, ``MM`` (Derive convention: value after the requirement) and every intermediate.

    Notes
    -----
    Skew scenarios with a spot shock other than 1 (rejected by Derive's ``setScenarios``) are
    accepted: the shock is applied to forwards, perp and risk-cancelling collateral like in any
    other scenario, and the skew multipliers use the unshocked forward.
    """
    vs, mp, bc, oc = (params.vol_shock, params.margin, params.basis_contingency,
                      params.other_contingency)
    feeds = inputs.feeds
    opts = inputs.options
    n_e, n_o = len(feeds), len(opts)
    spot = inputs.spot

    # ---- per-expiry market data
    secs_e = np.array([f.expiry_seconds for f in feeds], dtype=np.float64)
    fwd_e = np.array([f.forward for f in feeds], dtype=np.float64)
    rate_e = np.array([f.rate for f in feeds], dtype=np.float64)
    tau_e = secs_e / SECONDS_PER_YEAR
    df_e = np.exp(-np.maximum(rate_e, 0.0) * tau_e)
    fixed_e, var_e = forward_portions(fwd_e, secs_e)
    for i, f in enumerate(feeds):
        if f.forward_fixed is not None:  # explicit portions from the feed
            fixed_e[i] = f.forward_fixed
            var_e[i] = f.forward - f.forward_fixed
    disc_pos, disc_neg = static_discounts(tau_e, rate_e, mp)

    # ---- per-option data
    pos_of = {f.expiry_seconds: i for i, f in enumerate(feeds)}
    idx: IntArray = np.array([pos_of[o.expiry_seconds] for o in opts], dtype=np.int64)
    strike = np.array([o.strike for o in opts], dtype=np.float64)
    is_call = np.array([bool(o.is_call) for o in opts], dtype=bool)
    amount = np.array([o.amount for o in opts], dtype=np.float64)
    vol = np.array([o.mark_vol for o in opts], dtype=np.float64)
    tau_o = tau_e[idx]
    df_o = df_e[idx]
    onehot = np.zeros((n_o, n_e), dtype=np.float64)
    onehot[np.arange(n_o), idx] = 1.0

    # vol shocks (pmargin.scenarios; Derive: short power when DTE <= 30 days)
    with np.errstate(divide="ignore"):
        scale = term_scale(
            secs_e[idx] / SECONDS_PER_DAY,
            short_power=vs.short_term_power,
            long_power=vs.long_term_power,
            floor_days=vs.dte_floor_days,
            short_inclusive=True,
        )
    up_mult = vol_multiplier_up(vs.vol_range_up, scale)
    down_mult = vol_multiplier_down(vs.vol_range_down, scale)
    with np.errstate(invalid="ignore"):
        vol_up = np.maximum(vol * up_mult, vs.min_vol_eval_shocked)
        vol_down = vol * down_mult

    # skew multipliers (file overrides win when given)
    log_k = np.log(strike / (fixed_e + var_e)[idx]) if n_o else np.zeros(0)
    lin_mult, abs_mult = skew_multipliers(tau_o, log_k, params.skew_shock)
    lin_over = np.array([np.nan if o.linear_multiplier is None else o.linear_multiplier
                         for o in opts], dtype=np.float64)
    abs_over = np.array([np.nan if o.abs_multiplier is None else o.abs_multiplier
                         for o in opts], dtype=np.float64)
    lin_mult = np.where(np.isnan(lin_over), lin_mult, lin_over)
    abs_mult = np.where(np.isnan(abs_over), abs_mult, abs_over)
    vol_lin = vol * np.maximum(lin_mult, 0.0)
    vol_abs = vol * np.maximum(abs_mult, 0.0)

    # ---- rows: scenarios, then base, basis up, basis down
    scen = params.scenarios
    n_s = len(scen)
    shock = np.array([s.spot_shock for s in scen] + [1.0, bc.scenario_spot_up,
                                                     bc.scenario_spot_down], dtype=np.float64)
    damp = np.array([s.dampening for s in scen], dtype=np.float64)
    code = np.array([_DIRECTION_CODE[s.vol_shock] for s in scen] + [0, 0, 0], dtype=np.int64)
    is_skew = code[:n_s] >= _DIRECTION_CODE["linear"]

    fwd_rows = fixed_e[None, :] + var_e[None, :] * shock[:, None]  # (rows, expiries)
    vol_choices = np.stack([vol, vol_up, vol_down, vol_lin, vol_abs])  # (5, options)
    vol_rows = vol_choices[code]  # (rows, options)
    # at expiry the price is intrinsic whatever the vol; keep non-finite shocked vols out
    vol_rows = np.where(tau_o[None, :] > 0.0, vol_rows, 0.0)
    prices = price(fwd_rows[:, idx], strike, tau_o, vol_rows, is_call, df_o)
    mtm_rows = (prices * amount) @ onehot  # (rows, expiries)

    mtm_e = mtm_rows[n_s]
    up_e, down_e = mtm_rows[n_s + 1], mtm_rows[n_s + 2]
    shocked = mtm_rows[:n_s]
    disc_rows = np.where(shocked >= 0.0, disc_pos, disc_neg)
    pnl_e = (shocked * disc_rows - mtm_e) * damp[:, None]
    pnl_e = np.where(is_skew[:, None], -np.abs(pnl_e), pnl_e)

    sp = inputs.stable_price
    coll_val = np.array([c.amount * c.price / sp for c in inputs.collaterals], dtype=np.float64)
    rc = np.array([c.is_risk_cancelling for c in inputs.collaterals], dtype=bool)
    rc_value = float(coll_val[rc].sum()) if rc.size else 0.0
    perp = inputs.perp
    perp_amount = perp.amount if perp is not None else 0.0
    perp_price = perp.price if perp is not None else 0.0
    move = shock[:n_s] - 1.0
    scenario_pnl = (pnl_e.sum(axis=1) + (perp_amount * perp_price + rc_value) * move * damp)

    # ---- basis contingency
    bc_factor = bc.add_factor + bc.mult_factor * tau_e
    fc_e = np.minimum(np.minimum(up_e - mtm_e, down_e - mtm_e), 0.0) * bc_factor
    fc = float(fc_e.sum())

    # ---- worst terms
    kinds = np.array([s.kind for s in scen])
    reg, w_reg, s_reg = _family_worst(scenario_pnl, kinds == "regular", scen)
    tail, w_tail, s_tail = _family_worst(scenario_pnl, kinds == "tail", scen)
    skw, w_skew, s_skew = _family_worst(scenario_pnl, kinds == "skew", scen)
    worst = min(float(scenario_pnl.min()), fc)
    candidates: list[tuple[WorstLabel, float]] = []
    if reg.size:
        candidates.append(("regular", w_reg))
    if tail.size:
        candidates.append(("tail", w_tail))
    if skw.size:
        candidates.append(("skew", w_skew))
    candidates.append(("fwd_contingency", fc))
    label = min(candidates, key=lambda c: c[1])[0]

    # ---- contingencies
    notional_perp = abs(perp_amount) * spot
    mm_perp = -oc.mm_perp_percent * notional_perp
    im_perp = -oc.im_perp_percent * notional_perp

    # options are netted per asset (expiry, strike, type) like account balances, then naked
    # shorts per (expiry, strike) across calls and puts
    naked = 0.0
    abs_per_expiry: FloatArray = np.zeros(n_e, dtype=np.float64)
    if n_o:
        asset_keys = np.stack([idx.astype(np.float64), strike, is_call.astype(np.float64)], 1)
        uniq, inv = np.unique(asset_keys, axis=0, return_inverse=True)
        balances = np.bincount(inv.ravel(), weights=amount, minlength=len(uniq))
        skeys, sinv = np.unique(uniq[:, :2], axis=0, return_inverse=True)
        net_strike = np.bincount(sinv.ravel(), weights=balances, minlength=len(skeys))
        naked = float(np.maximum(-net_strike, 0.0).sum())
        abs_per_expiry = np.asarray(
            np.bincount(uniq[:, 0].astype(np.int64), weights=np.abs(balances), minlength=n_e),
            dtype=np.float64,
        )
    mm_opt = -oc.mm_option_percent * naked * spot
    im_opt = -oc.im_option_percent * naked * spot

    mm_base = -float(np.sum(coll_val * np.array([c.mm_haircut for c in inputs.collaterals])))
    im_base = -float(np.sum(coll_val * np.array([c.im_haircut for c in inputs.collaterals])))

    spot_conf = inputs.spot_confidence
    coll_conf = np.array([min(c.confidence, spot_conf) for c in inputs.collaterals])
    # perp confidence joins the portfolio confidence after collateral is valued
    port_conf = spot_conf
    if perp is not None and perp_amount != 0:
        port_conf = min(spot_conf, perp.confidence)
    exp_conf = np.array([min(port_conf, f.forward_confidence, f.rate_confidence, f.vol_confidence)
                         for f in feeds])
    oracle = -(
        _confidence_cont(coll_conf, coll_val, oc)
        + _confidence_cont(np.array([port_conf]), np.array([notional_perp]), oc)
        + _confidence_cont(exp_conf, abs_per_expiry * spot, oc)
    )

    # ---- totals
    option_mtm = float(mtm_e.sum())
    collateral_mtm = float(coll_val.sum())
    perp_pnl = perp.unrealised_pnl if perp is not None else 0.0
    funding = perp.unrealised_funding if perp is not None else 0.0
    portfolio_mtm = option_mtm + collateral_mtm + inputs.cash + perp_pnl + funding
    im_lf = mp.im_loss_factor + oc.peg_loss_factor * max(0.0, oc.peg_loss_threshold - sp)
    mm = portfolio_mtm + worst * mp.mm_loss_factor + mm_opt + mm_base + mm_perp
    im = (portfolio_mtm + worst * im_lf + (mm_opt + im_opt) + (mm_base + im_base)
          + (mm_perp + im_perp) + oracle)

    return DerivePM2Result(
        initial_margin=float(im),
        maintenance_margin=float(mm),
        portfolio_mtm=float(portfolio_mtm),
        option_mtm=option_mtm,
        option_mtm_per_expiry=mtm_e,
        option_mtm_per_expiry_discounted=mtm_e * np.where(mtm_e >= 0.0, disc_pos, disc_neg),
        collateral_mtm=collateral_mtm,
        perp_mtm=float(perp_pnl),
        unrealised_funding=float(funding),
        cash=float(inputs.cash),
        scenarios=scen,
        scenario_pnl=scenario_pnl,
        reg_losses=reg,
        tail_losses=tail,
        skew_losses=skw,
        worst_reg_loss=w_reg,
        worst_tail_loss=w_tail,
        worst_skew_loss=w_skew,
        worst_reg_scenario=s_reg,
        worst_tail_scenario=s_tail,
        worst_skew_scenario=s_skew,
        forward_contingency=fc,
        forward_contingency_per_expiry=fc_e,
        worst_loss=float(worst),
        worst_all_scenarios=label,
        discount_pos=disc_pos,
        discount_neg=disc_neg,
        vol_shock_up_multiplier=up_mult,
        vol_shock_down_multiplier=down_mult,
        vol_shock_up_evaluated=vol_up,
        vol_shock_down_evaluated=vol_down,
        linear_multiplier=lin_mult,
        abs_multiplier=abs_mult,
        mm_loss_factor=mp.mm_loss_factor,
        im_loss_factor=float(im_lf),
        mm_option_cont=float(mm_opt),
        im_option_cont=float(im_opt),
        mm_perp_cont=float(mm_perp),
        im_perp_cont=float(im_perp),
        mm_base_cont=mm_base,
        im_base_cont=im_base,
        oracle_cont=float(oracle),
    )


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
