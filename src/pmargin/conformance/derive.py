"""Runner for Derive PMRM_2 portfolio cases (``derivexyz/v2-core`` JSON format).

A case is a JSON object with ``Scenario`` (portfolio and market), ``Parameters`` (the model
configuration) and ``Result`` (expected ``IM``/``MM`` and intermediates). Numbers may be JSON
numbers or decimal strings. The field reference is in
``../shared/conformance/derive-pm2/README.md``; the case files are test data under BUSL-1.1 and are
never shipped with pmargin.

Hygiene: the inputs and parameters come from ``Scenario`` and ``Parameters`` only; nothing of
``Result`` enters the computation (the lengths of ``reg_losses``/``tail_losses`` only label the
scenario families for reporting). A case passes when Derive's native ``IM`` and ``MM`` match
within Derive's own tolerance, 1e-8 relative (:data:`REL_TOL`).

Signs. The outcome reports margins in pmargin's convention, the requirement
``PortfolioMTM - IM`` (a positive amount compared against the account value), computed and
expected alike (the expected one from the file's ``PortfolioMTM`` and ``IM``); Derive's native
figures (portfolio value after the requirement) are named as such in ``detail``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmargin.conformance.outcome import CaseOutcome
from pmargin.errors import InvalidInput
from pmargin.models.derive.params import (
    MODEL_NAME,
    DerivePM2Params,
    scenario_families,
    validate_derive_pm2_params,
)
from pmargin.models.derive.pm2 import (
    DeriveCollateral,
    DeriveExpiryFeed,
    DeriveOption,
    DerivePerp,
    DerivePM2Inputs,
    compute_derive_pm2,
)
from pmargin.validation import finite_number

__all__ = [
    "MODEL_NAME",
    "DeriveExpected",
    "is_derive_case",
    "load_derive_case",
    "margins_match",
    "run_derive_case",
]

REL_TOL = 1e-8
"""Pass rule: relative tolerance on IM and MM (Derive's harness, ``assertApproxEqRel`` 1e-8) ..."""
ABS_TOL = 1e-8
"""... or absolute tolerance when the expected value is below :data:`TINY` in magnitude."""
TINY = 1e-10
"""Magnitude below which a relative comparison is meaningless (Derive's harness threshold)."""

_UNUSED_PARAMETER_KEYS = {
    "OtherContingency": ("IM_PERP_PERCENT_NORMAL", "IM_OPTION_PERCENT_NORMAL"),
}


@dataclass(frozen=True)
class DeriveExpected:
    """Expected figures of a Derive case (``Result`` block), numbers parsed.

    Attributes
    ----------
    im, mm : float
        Expected ``IM`` and ``MM`` (value after the requirement).
    intermediates : dict of str to float
        Scalar intermediates present in the file (``worst_reg_loss``, ``ForwardContingency``,
        ``OptionMTM``, ``PortfolioMTM``, contingencies ...).
    reg_losses, tail_losses, skew_losses : tuple of float
        Scenario P&L lists.
    worst_all_scenarios : str or None
        Label of the binding term.
    notes : tuple of str
        Remarks from loading.
    """

    im: float
    mm: float
    intermediates: dict[str, float] = field(default_factory=dict)
    reg_losses: tuple[float, ...] = ()
    tail_losses: tuple[float, ...] = ()
    skew_losses: tuple[float, ...] = ()
    worst_all_scenarios: str | None = None
    notes: tuple[str, ...] = ()


def is_derive_case(obj: Any) -> bool:
    """Whether a parsed JSON object is a Derive PMRM_2 case (has Scenario, Parameters, Result).

    Parameters
    ----------
    obj : Any
        Parsed JSON.

    Returns
    -------
    bool
        True for a Derive case.
    """
    return isinstance(obj, Mapping) and all(k in obj for k in ("Scenario", "Parameters", "Result"))


def _num(value: Any, where: str) -> float:
    """Parse a JSON number or decimal string (the case format) into a finite float."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError as exc:
            raise InvalidInput(where, value, "is not a decimal number") from exc
    return finite_number(value, where)


def _get(obj: Mapping[str, Any], key: str, where: str, default: Any = None) -> Any:
    if key in obj:
        return obj[key]
    if default is not None:
        return default
    raise InvalidInput(f"{where}.{key}", None, "is missing")


def _numbers(obj: Any) -> Any:
    """Recursively parse numeric strings of a parameter block (keeps other strings)."""
    if isinstance(obj, Mapping):
        return {k: _numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_numbers(v) for v in obj]
    if isinstance(obj, str):
        try:
            return float(obj)
        except ValueError:
            return obj
    return obj


def _parse_inputs(scen: Mapping[str, Any]) -> DerivePM2Inputs:
    w = "Scenario"
    feeds = []
    for i, f in enumerate(scen.get("OptionFeeds") or []):
        wf = f"{w}.OptionFeeds[{i}]"
        feeds.append(
            DeriveExpiryFeed(
                expiry_seconds=_num(_get(f, "FeedExpiry", wf), f"{wf}.FeedExpiry"),
                forward=_num(_get(f, "Forward", wf), f"{wf}.Forward"),
                rate=_num(f.get("Rate", 0.0), f"{wf}.Rate"),
                forward_confidence=_num(f.get("ForwardConfidence", 1.0), f"{wf}.ForwardConfidence"),
                rate_confidence=_num(f.get("RateConfidence", 1.0), f"{wf}.RateConfidence"),
                vol_confidence=_num(f.get("OptionVolConfidences", 1.0),
                                    f"{wf}.OptionVolConfidences"),
            )
        )
    options = []
    for i, o in enumerate(scen.get("Options") or []):
        wo = f"{w}.Options[{i}]"
        options.append(
            DeriveOption(
                expiry_seconds=_num(_get(o, "Expiry", wo), f"{wo}.Expiry"),
                strike=_num(_get(o, "Strike", wo), f"{wo}.Strike"),
                is_call=_num(_get(o, "IsCall", wo), f"{wo}.IsCall") != 0.0,
                amount=_num(_get(o, "Amount", wo), f"{wo}.Amount"),
                mark_vol=_num(_get(o, "MarkVol", wo), f"{wo}.MarkVol"),
            )
        )
    collaterals = []
    for i, c in enumerate(scen.get("Collaterals") or []):
        wc = f"{w}.Collaterals[{i}]"
        collaterals.append(
            DeriveCollateral(
                amount=_num(_get(c, "Amount", wc), f"{wc}.Amount"),
                price=_num(_get(c, "Price", wc), f"{wc}.Price"),
                im_haircut=_num(c.get("IMHaircut", 0.0), f"{wc}.IMHaircut"),
                mm_haircut=_num(c.get("MMHaircut", 0.0), f"{wc}.MMHaircut"),
                is_risk_cancelling=bool(c.get("IsRiskCancelling", False)),
                confidence=_num(c.get("Confidence", 1.0), f"{wc}.Confidence"),
                name=str(c.get("Name", "")),
            )
        )
    perp = DerivePerp(
        amount=_num(scen.get("NumPerps", 0.0), f"{w}.NumPerps"),
        price=_num(scen.get("PerpPrice", 0.0), f"{w}.PerpPrice"),
        confidence=_num(scen.get("PerpConfidence", 1.0), f"{w}.PerpConfidence"),
        unrealised_pnl=_num(scen.get("UnrealisedPerpPNL", 0.0), f"{w}.UnrealisedPerpPNL"),
        unrealised_funding=_num(scen.get("UnrealisedFunding", 0.0), f"{w}.UnrealisedFunding"),
    )
    return DerivePM2Inputs(
        spot=_num(_get(scen, "SpotPrice", w), f"{w}.SpotPrice"),
        options=tuple(options),
        feeds=tuple(feeds),
        collaterals=tuple(collaterals),
        perp=perp,
        cash=_num(scen.get("Cash", 0.0), f"{w}.Cash"),
        spot_confidence=_num(scen.get("SpotConfidence", 1.0), f"{w}.SpotConfidence"),
        stable_price=_num(scen.get("StablePrice", 1.0), f"{w}.StablePrice"),
        stable_confidence=_num(scen.get("StableConfidence", 1.0), f"{w}.StableConfidence"),
    )


def _parse_params(raw: Mapping[str, Any], result: Mapping[str, Any], name: str) -> DerivePM2Params:
    data: dict[str, Any] = _numbers(dict(raw))
    for group, keys in _UNUSED_PARAMETER_KEYS.items():
        if isinstance(data.get(group), dict):
            data[group] = {k: v for k, v in data[group].items() if k not in keys}
    scenarios = data.get("Scenarios")
    n_reg = len(result.get("reg_losses") or [])
    n_tail = len(result.get("tail_losses") or [])
    if isinstance(scenarios, list) and n_reg + n_tail <= len(scenarios) and (n_reg or n_tail):
        tagged = dict(data, Scenarios=scenario_families(scenarios, n_reg, n_tail))
        try:
            return validate_derive_pm2_params(tagged, name)
        except InvalidInput:
            pass  # lists do not line up with the scenarios: infer the families instead
    return validate_derive_pm2_params(data, name)


def _parse_expected(result: Mapping[str, Any], notes: tuple[str, ...]) -> DeriveExpected:
    scalars = (
        "worst_reg_loss", "worst_tail_loss", "worst_skew_loss", "ForwardContingency", "OptionMTM",
        "PortfolioMTM", "CollateralMTM", "PerpMTM", "MMLossFactor", "IMLossFactor",
        "MMOptionCont", "IMOptionCont", "MMPerpCont", "IMPerpCont", "MMBaseCont", "IMBaseCont",
        "OracleCont",
    )
    inter = {k: _num(result[k], f"Result.{k}") for k in scalars if k in result}
    reg = tuple(_num(x[2], "Result.reg_losses") for x in result.get("reg_losses") or [])
    tail = tuple(_num(x[2], "Result.tail_losses") for x in result.get("tail_losses") or [])
    skew = tuple(_num(x[1], "Result.skew_losses") for x in result.get("skew_losses") or [])
    label = result.get("worst_all_scenarios")
    return DeriveExpected(
        im=_num(_get(result, "IM", "Result"), "Result.IM"),
        mm=_num(_get(result, "MM", "Result"), "Result.MM"),
        intermediates=inter,
        reg_losses=reg,
        tail_losses=tail,
        skew_losses=skew,
        worst_all_scenarios=str(label) if label is not None else None,
        notes=notes,
    )


def load_derive_case(
    path: str | Path,
) -> tuple[DerivePM2Inputs, DerivePM2Params, DeriveExpected]:
    """Read a Derive PMRM_2 case file.

    Inputs come from the case's ``Scenario`` block and every parameter from its ``Parameters``
    block; the pre-computed skew terms of ``Scenario.Options`` (``k``, ``k_star``,
    ``linear_multiplier`` ...) are outputs of Derive's generator and are ignored, like
    everything in ``Result`` (which is only parsed into ``expected``).

    Parameters
    ----------
    path : str or Path
        JSON case file.

    Returns
    -------
    inputs : DerivePM2Inputs
        Portfolio and market.
    params : DerivePM2Params
        Model parameters of the case.
    expected : DeriveExpected
        Expected margins and intermediates.

    Raises
    ------
    InvalidInput
        If the file is not a Derive case or a field is missing or invalid.
    """
    p = Path(path)
    try:
        case = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInput("path", str(path), f"cannot read JSON: {exc}") from exc
    if not is_derive_case(case):
        raise InvalidInput("path", str(path),
                           "is not a Derive case (needs Scenario, Parameters, Result)")
    scen, raw_params, result = case["Scenario"], case["Parameters"], case["Result"]
    inputs = _parse_inputs(scen)
    params = _parse_params(raw_params, result, p.stem)
    return inputs, params, _parse_expected(result, ())


def margins_match(
    value: float, expected: float, rel: float = REL_TOL, abs_: float = ABS_TOL
) -> bool:
    """Pass rule: within ``rel`` relative (``abs_`` absolute when ``|expected| < TINY``).

    A relative test is meaningless for figures within :data:`TINY` of zero.

    Parameters
    ----------
    value, expected : float
        Computed and expected figure.
    rel, abs_ : float
        Tolerances (Derive's: 1e-8 relative).

    Returns
    -------
    bool
        Whether the figures match.
    """
    if not math.isfinite(value):
        return False
    if abs(expected) < TINY:
        return abs(value - expected) <= abs_
    return abs(value - expected) <= rel * abs(expected)


def run_derive_case(path: str | Path) -> CaseOutcome:
    """Run one Derive PMRM_2 case file.

    Parameters
    ----------
    path : str or Path
        JSON case file.

    Returns
    -------
    CaseOutcome
        ``passed`` when Derive's native IM and MM both match (:func:`margins_match`, 1e-8
        relative). ``initial_margin``/``maintenance_margin`` and the expected ones are in
        pmargin's convention (requirement ``PortfolioMTM - IM``; the expected requirement uses
        the file's ``PortfolioMTM``, NaN when the file has none); ``detail`` gives the native
        figures and names any mismatch with its relative error.
    """
    p = Path(path)
    inputs, params, exp = load_derive_case(p)
    res = compute_derive_pm2(inputs, params)
    problems: list[str] = []
    for label, got, want in (("IM", res.im, exp.im), ("MM", res.mm, exp.mm)):
        if not margins_match(got, want):
            err = abs(got - want) / max(abs(want), 1e-300)
            problems.append(f"Derive {label} {got:.12g} != {want:.12g} (rel {err:.2e})")
    native = (f"Derive native (portfolio value after the requirement): IM {res.im:.12g}, "
              f"MM {res.mm:.12g}")
    detail = "; ".join(problems + list(exp.notes) + [native]) if problems else f"ok; {native}"
    mtm = exp.intermediates.get("PortfolioMTM", math.nan)
    return CaseOutcome(
        name=p.stem,
        passed=not problems,
        model=MODEL_NAME,
        initial_margin=res.initial_margin,
        maintenance_margin=res.maintenance_margin,
        expected_im=mtm - exp.im,
        expected_mm=mtm - exp.mm,
        detail=detail,
    )
