"""Parameters of the VaR/ES margin model by filtered historical simulation (``var-fhs``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pmargin.errors import ParamsError
from pmargin.models.params import ConcentrationParams, LiquidationPeriodParams
from pmargin.overrides import deep_merge
from pmargin.paramfiles import validate_params

__all__ = ["MODEL_NAME", "ApcParams", "StressedPeriod", "VarFhsParams", "load_var_fhs_params"]

MODEL_NAME: Literal["var-fhs"] = "var-fhs"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class StressedPeriod(_Frozen):
    """Days whose raw (unfiltered) moves are kept as extra scenarios, whatever today's regime."""

    name: str
    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> StressedPeriod:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class ApcParams(_Frozen):
    """EMIR Article 28 anti-procyclicality tools (all off by default; docs/models/var-fhs.md).

    (a) ``buffer``: IM = ES x (1 + buffer), released (IM = ES) while the current volatility of
    some underlying is above the ``stress_quantile`` quantile of the same measure over the
    look-back (gradually up to the ``release_full_quantile`` quantile when it is set); (b)
    ``stressed_weight``: the stressed-period scenarios carry at least this total weight in a
    weighted ES; (c) ``lookback_floor_years``: a look-back shorter than this is refused
    (``lookback_floor_action = "refuse"``) or margined and flagged (``"flag"``: component
    ``lookback_floor_shortfall_years``).
    """

    buffer: float = Field(default=0.0, ge=0.0, le=1.0)
    """Buffer as a fraction of ES (EMIR: 0.25); 0 disables it."""
    stress_quantile: float = Field(default=0.9, gt=0.0, lt=1.0)
    """Quantile of the look-back's volatility above which the buffer is released."""
    release_full_quantile: float | None = Field(default=None, gt=0.0, lt=1.0)
    """Quantile at which the whole buffer is released, the release linear in the volatility
    from ``stress_quantile`` up to it (a gradual draw-down); None: all at ``stress_quantile``."""
    stressed_weight: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Minimum total weight of the stressed scenarios in the ES (EMIR: 0.25); 0 = plain ES."""
    lookback_floor_years: float = Field(default=0.0, ge=0.0, le=50.0)
    """Minimum look-back in years (EMIR: 10); 0 disables it."""
    lookback_floor_action: Literal["refuse", "flag"] = "flag"
    """What a shorter look-back does: refuse to margin, or margin and flag the shortfall."""

    @model_validator(mode="after")
    def _release_above_stress(self) -> ApcParams:
        full = self.release_full_quantile
        if full is not None and full <= self.stress_quantile:
            raise ValueError(f"release_full_quantile {full} must be above stress_quantile "
                             f"{self.stress_quantile}")
        return self


class VarFhsParams(_Frozen):
    """Expected-shortfall margin over filtered historical scenarios.

    IM = ES at ``confidence`` of the account's loss over ``horizon_days`` across every scenario
    (filtered days rescaled to the current volatility, plus the raw days of the stressed
    periods), floored at 0, plus open orders; MM = ``mm_fraction`` x IM.
    """

    schema_version: int = 1
    name: str
    model: Literal["var-fhs"]
    source: str
    assumptions: list[str] = []
    confidence: float = Field(gt=0.5, lt=1.0)
    """ES level (0.99: the mean of the worst 1 % of scenario losses)."""
    horizon_days: float = Field(gt=0.0, le=30.0)
    """Margin period of risk; daily moves are scaled by sqrt(horizon) and options age by it."""
    mm_fraction: float = Field(gt=0.0, le=1.0)
    filter: Literal["ewma", "garch"]
    """Volatility filter of daily log returns and log-DVOL changes (fitted with ``arch``)."""
    ewma_lambda: float = Field(gt=0.0, lt=1.0)
    current_vol: Literal["filter", "implied", "max"]
    """Volatility the filtered returns are rescaled to: the filter's one-day forecast, the
    market's 30-day ATM implied vol (daily: / sqrt(365)), or the larger of the two."""
    max_history_gap_days: float = Field(gt=0.0)
    """The filter's forecast counts only if the last known day closed at most this long before
    the valuation time; otherwise ``filter`` is refused and ``max`` uses implied vol alone."""
    history_start: date
    """First day of the look-back (the history is kept whole from here: no rolling window)."""
    min_scenarios: int = Field(ge=100)
    """Fewer known days than this (before the valuation time) is an error, not a thin ES."""
    min_vol: float = Field(gt=0.0)
    """Floor of any scenario implied vol (decimal)."""
    stressed_periods: list[StressedPeriod] = []
    apc: ApcParams = ApcParams()
    """Anti-procyclicality tools (EMIR Art. 28), off by default."""
    concentration: ConcentrationParams | None = Field(default=None,
                                                      exclude_if=lambda v: v is None)
    """Concentration / liquidity add-on (None: off; docs/models/liquidity-risk.md)."""
    liquidation_period: LiquidationPeriodParams | None = Field(default=None,
                                                               exclude_if=lambda v: v is None)
    """ES scaled by sqrt(MPOR_eff / MPOR) for positions large against their volume (None: off)."""


def load_var_fhs_params(name_or_path: str | Path = MODEL_NAME,
                        overrides: Mapping[str, Any] | None = None) -> VarFhsParams:
    """Load ``var-fhs`` parameters from the shipped preset or a TOML file.

    Parameters
    ----------
    name_or_path : str or Path, default ``"var-fhs"``
        Shipped preset name or path to a TOML file (read by the project's preset reader).
    overrides : mapping, optional
        Nested or dotted-key overrides (``{"confidence": 0.995}``).

    Returns
    -------
    VarFhsParams
        Validated, frozen parameters.

    Raises
    ------
    ParamsError
        If the file is missing, its ``model`` is not ``var-fhs``, or a value is missing, unknown
        or out of range (the message names the key).
    """
    from pmargin.models.params import read_preset

    raw = read_preset(name_or_path)
    if raw.get("model") != MODEL_NAME:
        raise ParamsError("model", raw.get("model"), f"must be '{MODEL_NAME}'")
    if overrides:
        raw = deep_merge(raw, overrides)
    return validate_params(VarFhsParams, raw, str(name_or_path))
