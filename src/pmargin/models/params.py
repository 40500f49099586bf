"""Parameter schemas of the margin models and the TOML preset loader.

Every preset is a TOML file in ``pmargin/models/presets/`` validated into frozen pydantic models
with ``extra="forbid"`` (a typo fails loudly). Overrides are deep-merged dictionaries with the same
keys as the file, or dotted keys (``{"underlyings.BTC.grid.price_range": 0.2}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pmargin.errors import ParamsError
from pmargin.instruments import InstrumentKind
from pmargin.liquidity_cost import KindLiquidity
from pmargin.overrides import deep_merge
from pmargin.paramfiles import Shipped, params_digest, read_params_file, validate_params
from pmargin.scenarios import SkewShockParams
from pmargin.validation import nearest

__all__ = [
    "PRESETS",
    "CollateralHaircut",
    "CompositionParams",
    "ConcentrationParams",
    "DeltaShockParams",
    "DynamicParams",
    "ExtendedParams",
    "FutureRules",
    "GridParams",
    "LiquidationPeriodParams",
    "MinChargeParams",
    "MinDeltaParams",
    "NakedShortParams",
    "OptionRules",
    "PMParams",
    "PerpContingencyParams",
    "RollShockParams",
    "SMParams",
    "ScenarioSpec",
    "UnderlyingPMParams",
    "VolShockParams",
    "deep_merge",
    "list_presets",
    "load_params",
    "params_digest",
    "read_preset",
]

VolMode = Literal["up", "none", "down"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class CollateralHaircut(_Frozen):
    """Fractions of a collateral currency's USD value deducted for IM and for MM."""

    im: float = Field(ge=0.0, le=1.0)
    mm: float = Field(ge=0.0, le=1.0)


# ----------------------------------------------------------------------------- standard margin
class OptionRules(_Frozen):
    """Standard-margin rules for options, per coin of underlying (linear: times the forward)."""

    short_im_rate: float = Field(ge=0.0)
    """``a`` in ``max(a - OTM/S, b) + mark``."""
    short_im_min_rate: float = Field(ge=0.0)
    """``b`` in ``max(a - OTM/S, b) + mark``."""
    short_mm_rate: float = Field(ge=0.0)
    """``c`` in ``c + mark`` (calls) and ``max(c, c * mark) + mark`` (puts)."""
    put_mm_mark_rate: float = Field(ge=0.0)
    """Rate on the mark in the short-put MM floor ``max(c, rate * mark)``."""


class FutureRules(_Frozen):
    """Size-dependent rates of futures and perpetuals: ``rate = base + per_coin * |size|``."""

    im_base: float = Field(ge=0.0)
    im_per_coin: float = Field(ge=0.0)
    mm_base: float = Field(ge=0.0)
    mm_per_coin: float = Field(ge=0.0)


class SMParams(_Frozen):
    """Parameters of the standard (rules-based, per position) margin model."""

    schema_version: int = 1
    name: str
    model: Literal["standard"]
    source: str
    assumptions: list[str] = []
    options: dict[str, OptionRules]
    futures: dict[str, FutureRules]
    haircuts: dict[str, CollateralHaircut] = {}

    @model_validator(mode="after")
    def _has_default(self) -> SMParams:
        for table in ("options", "futures"):
            if "default" not in getattr(self, table):
                raise ValueError(f"{table} needs a 'default' entry")
        return self

    def option_rules(self, underlying: str) -> OptionRules:
        """Return the option rules of an underlying (or the default)."""
        return self.options.get(underlying, self.options["default"])

    def future_rules(self, underlying: str) -> FutureRules:
        """Return the futures rules of an underlying (or the default)."""
        return self.futures.get(underlying, self.futures["default"])


# ----------------------------------------------------------------------------- portfolio margin
class VolShockParams(_Frozen):
    """Term-scaled volatility shock ``1 +/- range * (pivot / max(DTE, floor)) ** p``."""

    kind: Literal["multiplicative", "additive"]
    up: float = Field(ge=0.0)
    down: float = Field(ge=0.0)
    short_power: float
    long_power: float
    floor_days: float = Field(gt=0.0)
    pivot_days: float = Field(gt=0.0)
    short_inclusive: bool
    min_vol_up: float = Field(ge=0.0)
    """Floor on the up-shocked volatility (Deribit 0.5)."""
    min_vol: float = Field(gt=0.0)
    """Floor on any shocked volatility (keeps Black-76 away from zero vol)."""


class ScenarioSpec(_Frozen):
    """One explicit scenario: relative price move, vol direction and weight."""

    price_shock: float = Field(gt=-1.0)
    vol: VolMode
    weight: float = Field(gt=0.0)
    name: str | None = None


class ExtendedParams(_Frozen):
    """Extended (tail) moves weighted by ``factor * range / |move|`` and dampened in USD."""

    moves: list[float]
    factor: float = Field(gt=0.0)
    dampener_usd: float = Field(ge=0.0)
    vol: VolMode
    range_edge_conversion: bool
    """Re-express coin P&L at the range-edge price (Deribit); no effect for USD margin."""


class GridParams(_Frozen):
    """Scenario grid of one underlying."""

    price_range: float = Field(gt=0.0, lt=1.0)
    buckets: int | None = Field(default=None, ge=1)
    """Symmetric grid ``k * range / buckets`` for ``k = -buckets..buckets``."""
    vol_scenarios: list[VolMode] = []
    """Vol directions at each bucket of a ``buckets`` grid (required there, refused with
    ``explicit``, whose scenarios carry their own)."""
    explicit: list[ScenarioSpec] | None = None
    """Scenarios given one by one (used instead of ``buckets``)."""
    extended: ExtendedParams | None = None
    skew: SkewShockParams | None = None
    """Two wing-rotation scenarios (LINEAR and ABS, spot unchanged) with Derive's skew rule."""
    horizon_days: float = Field(ge=0.0)
    """Time shift applied to every scenario (theta over the horizon)."""

    @model_validator(mode="after")
    def _one_grid(self) -> GridParams:
        if (self.buckets is None) == (self.explicit is None):
            raise ValueError("give exactly one of 'buckets' or 'explicit'")
        if self.buckets is not None and not self.vol_scenarios:
            raise ValueError("a 'buckets' grid needs 'vol_scenarios'")
        if self.explicit is not None and self.vol_scenarios:
            raise ValueError("'vol_scenarios' is not used by an 'explicit' grid; remove it")
        return self


class RollShockParams(_Frozen):
    """Roll (basis) shock: ``|net delta per expiry| * max(floor, f(rate, T))``."""

    annualised_move_risk: float = Field(ge=0.0)
    min_annualised_move: float = Field(ge=0.0)
    form: Literal["exp", "linear"]
    """``exp``: ``exp(rate*T) - 1`` (third-party replica); ``linear``: ``rate*T``."""


class DeltaShockParams(_Frozen):
    """Delta (liquidity) shock above a USD threshold of net delta."""

    max_delta_shock: float = Field(ge=0.0)
    threshold_usd: float = Field(ge=0.0)
    m_inc: float = Field(ge=0.0)


class NakedShortParams(_Frozen):
    """Contingency per net short option contract per strike (calls and puts netted)."""

    rate: float = Field(ge=0.0)
    """Fraction of the index per net short contract."""


class PerpContingencyParams(_Frozen):
    """Contingency on the gross notional of futures and perpetuals."""

    rate: float = Field(ge=0.0)


class MinDeltaParams(_Frozen):
    """Paradex minimum delta requirement ``(net_rate |net delta| + hedged_rate hedged) S``."""

    net_rate: float = Field(ge=0.0)
    hedged_rate: float = Field(ge=0.0)


class MinChargeParams(_Frozen):
    """OKX MR7-style minimum charge on |delta| notional, scaled by tiers."""

    rate: float = Field(ge=0.0)
    tiers: list[tuple[float, float]]
    """``(upper bound in USD, multiplier)`` for the raw charge falling in each tier."""


class UnderlyingPMParams(_Frozen):
    """Portfolio-margin parameters of one underlying (risk unit)."""

    grid: GridParams
    vol_shock: VolShockParams
    roll_shock: RollShockParams | None = None
    delta_shock: DeltaShockParams | None = None
    naked_short: NakedShortParams | None = None
    perp_contingency: PerpContingencyParams | None = None
    min_delta: MinDeltaParams | None = None
    min_charge: MinChargeParams | None = None


class DynamicParams(_Frozen):
    """Dynamic overlay: every grid's price range times a vol-regime scale.

    See :mod:`pmargin.models.dynamic`; off in the venue presets.
    """

    reference_vol: float = Field(gt=0.0)
    """ATM implied vol (decimal) at which the preset's ranges apply unscaled."""
    tenor_days: float = Field(default=30.0, gt=0.0)
    """Tenor of the ATM implied vol of the regime."""
    floor: float = Field(gt=0.0)
    """Smallest scale (calm markets never take ranges below ``floor`` x preset)."""
    cap: float = Field(gt=0.0)
    """Largest scale (also used when the market has no implied vol)."""
    max_increase: float = Field(ge=0.0)
    """Largest relative rise of the scale from one step (day) to the next."""

    @model_validator(mode="after")
    def _floor_below_cap(self) -> DynamicParams:
        if self.cap < self.floor:
            raise ValueError(f"cap {self.cap} is below floor {self.floor}")
        return self


class ConcentrationParams(_Frozen):
    """Concentration / liquidity add-on: the cost of closing each position at once.

    Per position of ``q`` units of instrument ``i`` (docs/models/liquidity-risk.md), the cost of
    :func:`pmargin.liquidity_cost.cost_rule` (half-spread + ``k`` x linear impact) with the depth
    of the instrument itself::

        L_i = oi_share * OI_i + volume_share * V_i        (units that move the price by 1 %)
        D_i = max(min_depth_fraction * D_kind, min(D_kind, L_i * mark_i))   (USD per 1 %)

    Open interest ``OI_i`` and 24-hour volume ``V_i`` (contracts = units of underlying) come from
    the market; a missing figure counts as 0, so it can only lower the depth (raise the cost).
    Off in the venue presets.
    """

    impact_coefficient: float = Field(ge=0.0)
    """``k`` of the impact term (``liquidity.toml`` uses 1)."""
    oi_share: float = Field(ge=0.0)
    """Units of depth per 1 % of impact per unit of open interest."""
    volume_share: float = Field(ge=0.0)
    """Units of depth per 1 % of impact per unit of 24-hour traded volume."""
    min_depth_fraction: float = Field(gt=0.0, le=1.0)
    """Floor of an instrument's depth as a fraction of its kind's (also the depth of an
    instrument without open interest or volume)."""
    mm_fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of the add-on also added to MM (1: the whole closing cost, which is paid when the
    account is liquidated, at MM)."""
    kinds: dict[InstrumentKind, KindLiquidity] = Field(min_length=1)
    """Charged kinds, each with its depth (``D_kind``, the cap of ``D_i``) and half-spread floors;
    a kind not listed pays no add-on."""


class LiquidationPeriodParams(_Frozen):
    """Liquidation-period scaling: the margin period of risk grows with position size.

    ``MPOR_eff = MPOR * min(max_multiple, max(1, max_i |q_i| / (participation * V_i)))`` over the
    account's positions of the listed kinds (``V_i``: 24-hour volume, contracts), and the risk
    measure is scaled by ``sqrt(MPOR_eff / MPOR)`` (docs/models/liquidity-risk.md): ``var-fhs``
    multiplies its ES by it; the grid presets widen the account's scenario price moves and vol
    shocks by it (rounded up to ``grid_scale_step``). A position whose volume is missing or 0
    takes ``max_multiple``. Off in every shipped preset.
    """

    participation: float = Field(gt=0.0, le=1.0)
    """Share of an instrument's daily volume a liquidator can trade per day."""
    max_multiple: float = Field(ge=1.0)
    """Cap of ``MPOR_eff / MPOR`` (and its value for positions without volume)."""
    kinds: list[InstrumentKind] = Field(default=[InstrumentKind.OPTION, InstrumentKind.FUTURE,
                                                 InstrumentKind.PERPETUAL], min_length=1)
    """Kinds whose size lengthens the period (others never do)."""
    grid_scale_step: float = Field(default=0.25, gt=0.0)
    """Grid presets only: ``sqrt(MPOR_eff / MPOR)`` is rounded up to a multiple of this step (a
    book is revalued once per level; rounding up never lowers margin). ``var-fhs`` scales its ES
    by the exact root."""


class CompositionParams(_Frozen):
    """How IM and MM follow from the risk: ``mm_from_im`` (MM = factor x IM) or ``im_from_mm``."""

    mode: Literal["mm_from_im", "im_from_mm"]
    factor: float = Field(gt=0.0)


class PMParams(_Frozen):
    """Parameters of the portfolio (risk-array) margin model."""

    schema_version: int = 1
    name: str
    model: Literal["portfolio"]
    source: str
    assumptions: list[str] = []
    composition: CompositionParams
    underlyings: dict[str, UnderlyingPMParams]
    haircuts: dict[str, CollateralHaircut] = {}
    stable_depeg: float = Field(ge=0.0, lt=1.0)
    """De-peg scenario of stablecoin collateral other than the margin currency: the loss of this
    fraction of its value is added to IM and MM (0 disables it)."""
    dynamic: DynamicParams | None = None
    """Vol-regime scaling of the price ranges (None: static ranges, as every venue preset)."""
    concentration: ConcentrationParams | None = Field(default=None,
                                                      exclude_if=lambda v: v is None)
    """Concentration / liquidity add-on (None: off, as every venue preset; left out of the
    digest when off, so the digests of presets without it are unchanged)."""
    liquidation_period: LiquidationPeriodParams | None = Field(default=None,
                                                               exclude_if=lambda v: v is None)
    """Grids of accounts holding positions large against their volume widened by
    ``sqrt(MPOR_eff / MPOR)`` (None: off, as every venue preset; left out of the digest when
    off)."""

    @model_validator(mode="after")
    def _has_default(self) -> PMParams:
        if "default" not in self.underlyings:
            raise ValueError("underlyings needs a 'default' entry")
        return self

    def for_underlying(self, underlying: str) -> UnderlyingPMParams:
        """Return the parameters of an underlying (or the default)."""
        return self.underlyings.get(underlying, self.underlyings["default"])


# ----------------------------------------------------------------------------- loading
PRESETS = Shipped("pmargin.models", "presets", "preset")
"""The shipped presets (``pmargin/models/presets/*.toml``)."""

_SCHEMAS: dict[str, type[SMParams] | type[PMParams]] = {"standard": SMParams,
                                                        "portfolio": PMParams}
STANDARD_KINDS: frozenset[str] = frozenset(_SCHEMAS)
"""Model kinds of :func:`load_params` (the other kinds have their own loader)."""


def list_presets() -> list[str]:
    """Return the names of the shipped presets."""
    return PRESETS.names()


def read_preset(name_or_path: str | Path) -> dict[str, Any]:
    """Read a preset TOML file (shipped name or path) into a plain dictionary.

    Parameters
    ----------
    name_or_path : str or Path
        Shipped preset name (``"deribit-pm"``) or a path to a TOML file.

    Returns
    -------
    dict
        Raw parameters.

    Raises
    ------
    ParamsError
        If the preset does not exist, cannot be read or is not valid TOML.
    """
    return read_params_file(name_or_path, PRESETS)[1]


def load_params(
    name_or_path: str | Path, overrides: Mapping[str, Any] | None = None
) -> SMParams | PMParams:
    """Load and validate a preset with optional overrides.

    Parameters
    ----------
    name_or_path : str or Path
        Preset name or TOML path.
    overrides : mapping, optional
        Parameter overrides (see :func:`deep_merge`).

    Returns
    -------
    SMParams or PMParams
        Frozen, validated parameters.

    Raises
    ------
    ParamsError
        If a parameter is missing, unknown (the message names the nearest valid key) or out of
        range; the field is the dotted key.
    """
    label, raw = read_params_file(name_or_path, PRESETS)
    if overrides:
        raw = deep_merge(raw, overrides)
    kind = raw.get("model")
    schema = _SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        hint = nearest(str(kind), _SCHEMAS) if isinstance(kind, str) else None
        reason = f"must be one of {sorted(_SCHEMAS)}"
        if hint:
            reason += f"; did you mean '{hint}'?"
        raise ParamsError("model", kind, f"{reason} (in {label})")
    return validate_params(schema, raw, label)
