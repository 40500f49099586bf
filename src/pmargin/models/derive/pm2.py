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

Signs. Derive's ``IM`` and ``MM`` (:attr:`DerivePM2Result.im`, :attr:`DerivePM2Result.mm`)
are the portfolio value *after* the requirement (> 0 excess, < 0 shortfall).
:attr:`DerivePM2Result.initial_margin` and :attr:`DerivePM2Result.maintenance_margin` have the
meaning they have in every pmargin model: the requirement, a non-negative amount compared
against equity (``PortfolioMTM - IM`` and ``PortfolioMTM - MM``).

Source: derivexyz/v2-core @ 7736900d, PMRM_2 portfolio cases (test data only) and
``reference/methodologies.md`` section 6.3; see ``docs/models/derive-pm2.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from pmargin._typing import BoolArray, FloatArray, IntArray
from pmargin.errors import InvalidInput
from pmargin.models.derive.params import (
    DerivePM2Params,
    DeriveScenario,
    MarginParams,
    OtherContingencyParams,
)
from pmargin.pricing.black76 import price
from pmargin.scenarios import skew_multipliers, term_scale, vol_multiplier_down, vol_multiplier_up
from pmargin.validation import finite_number, non_negative_number, positive_number, unit_interval

__all__ = [
    "FORWARD_SETTLEMENT_SECONDS",
    "SECONDS_PER_DAY",
    "SECONDS_PER_YEAR",
    "DeriveCollateral",
    "DeriveExpiryFeed",
    "DeriveOption",
    "DerivePM2Inputs",
    "DerivePM2Result",
    "DerivePerp",
    "compute_derive_pm2",
    "forward_portions",
    "static_discounts",
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


# ============================================================================ inputs
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
    """

    expiry_seconds: float
    strike: float
    is_call: bool
    amount: float
    mark_vol: float

    def __post_init__(self) -> None:
        non_negative_number(self.expiry_seconds, "option.expiry_seconds")
        positive_number(self.strike, "option.strike")
        finite_number(self.amount, "option.amount")
        non_negative_number(self.mark_vol, "option.mark_vol")


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
        non_negative_number(self.expiry_seconds, "feed.expiry_seconds")
        positive_number(self.forward, "feed.forward")
        finite_number(self.rate, "feed.rate")
        unit_interval(self.forward_confidence, "feed.forward_confidence")
        unit_interval(self.rate_confidence, "feed.rate_confidence")
        unit_interval(self.vol_confidence, "feed.vol_confidence")
        if self.forward_fixed is not None:
            finite_number(self.forward_fixed, "feed.forward_fixed")
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
        finite_number(self.amount, "perp.amount")
        non_negative_number(self.price, "perp.price")
        unit_interval(self.confidence, "perp.confidence")
        finite_number(self.unrealised_pnl, "perp.unrealised_pnl")
        finite_number(self.unrealised_funding, "perp.unrealised_funding")


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
        non_negative_number(self.amount, "collateral.amount")
        non_negative_number(self.price, "collateral.price")
        unit_interval(self.im_haircut, "collateral.im_haircut")
        unit_interval(self.mm_haircut, "collateral.mm_haircut")
        unit_interval(self.confidence, "collateral.confidence")


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
        positive_number(self.spot, "spot")
        finite_number(self.cash, "cash")
        unit_interval(self.spot_confidence, "spot_confidence")
        positive_number(self.stable_price, "stable_price")
        unit_interval(self.stable_confidence, "stable_confidence")
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

    im: float
    """Derive's ``IM``: portfolio value after the initial requirement (< 0 = shortfall)."""
    mm: float
    """Derive's ``MM``: portfolio value after the maintenance requirement."""
    initial_margin: float
    """Initial margin in pmargin's convention: the requirement ``PortfolioMTM - IM`` (USD),
    ``-(W imLossFactor + MM and IM contingencies + oracle contingency)``; never negative with
    non-negative loss factors. The account meets it when ``portfolio_mtm >= initial_margin``
    (equivalently ``im >= 0``)."""
    maintenance_margin: float
    """Maintenance margin in pmargin's convention: ``PortfolioMTM - MM`` (USD),
    ``-(W MM_LOSS_FACTOR + MM contingencies)``."""
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
        Derive's ``IM`` and ``MM`` (value after the requirement), the requirements in pmargin's
        convention and every intermediate.

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

    # skew multipliers (pmargin.scenarios), k = ln(K / F) with the unshocked forward
    log_k = np.log(strike / (fixed_e + var_e)[idx]) if n_o else np.zeros(0)
    lin_mult, abs_mult = skew_multipliers(tau_o, log_k, params.skew_shock)
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
    # the same terms without the MtM: pmargin's requirement (computed directly, not as a
    # difference of two large numbers)
    mm_req = -(worst * mp.mm_loss_factor + mm_opt + mm_base + mm_perp)
    im_req = -(worst * im_lf + (mm_opt + im_opt) + (mm_base + im_base) + (mm_perp + im_perp)
               + oracle)

    return DerivePM2Result(
        im=float(im),
        mm=float(mm),
        initial_margin=float(im_req),
        maintenance_margin=float(mm_req),
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
