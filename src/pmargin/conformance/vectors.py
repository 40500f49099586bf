"""Runner of the venue-neutral vectors (conformance README section 2) and Derive cases."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pmargin.conformance.outcome import CaseOutcome
from pmargin.errors import InvalidInput
from pmargin.market.loaders import load_market_json
from pmargin.models.registry import load_model
from pmargin.portfolio import portfolio_from_dict

__all__ = ["close_enough", "expand_paths", "run_case_file", "run_paths", "run_vector"]


def close_enough(value: float, expected: float, rel_tol: float, abs_tol: float) -> bool:
    """Whether ``value`` matches ``expected`` within a relative or absolute tolerance."""
    return math.isfinite(value) and (
        abs(value - expected) <= abs_tol or abs(value - expected) <= rel_tol * abs(expected)
    )


def run_vector(case: Mapping[str, Any], name: str = "vector") -> CaseOutcome:
    """Run one venue-neutral vector.

    Parameters
    ----------
    case : mapping
        The parsed JSON object (``model``, ``params``, ``valuation_time``, ``market``,
        ``portfolio``, ``expect``).
    name : str
        Fallback name.

    Returns
    -------
    CaseOutcome
        Pass/fail with the computed and expected margins and a detail line naming every
        mismatching figure.
    """
    for key in ("model", "market", "portfolio", "expect"):
        if key not in case:
            raise InvalidInput(key, None, f"vector {name} has no {key!r}")
    exp = case["expect"]
    rel = float(exp.get("rel_tol", 1e-9))
    abs_ = float(exp.get("abs_tol", 1e-9))
    model = load_model(case["model"], case.get("params") or {})
    market = load_market_json(case, mark_unit="USD")  # the vector format fixes USD marks
    portfolio = portfolio_from_dict(case["portfolio"])
    res = model.margin(portfolio, market)
    problems: list[str] = []
    checks: list[tuple[str, float, float]] = [
        ("initial_margin", res.initial_margin, float(exp["initial_margin"])),
        ("maintenance_margin", res.maintenance_margin, float(exp["maintenance_margin"])),
    ]
    for k, v in (exp.get("components") or {}).items():
        checks.append((k, res.components.get(k, math.nan), float(v)))
    for label, got, want in checks:
        if not close_enough(got, want, rel, abs_):
            problems.append(f"{label} {got:.12g} != {want:.12g}")
    return CaseOutcome(
        name=str(case.get("name", name)),
        passed=not problems,
        model=str(case["model"]),
        initial_margin=res.initial_margin,
        maintenance_margin=res.maintenance_margin,
        expected_im=float(exp["initial_margin"]),
        expected_mm=float(exp["maintenance_margin"]),
        detail="; ".join(problems) if problems else "ok",
    )


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories into their ``*.json`` files (sorted), keep files as given."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.glob("*.json")))
        elif p.exists():
            out.append(p)
        else:
            raise InvalidInput("path", str(p), "does not exist")
    return out


def run_case_file(path: Path) -> CaseOutcome:
    """Run one file, auto-detecting the Derive PMRM_2 format.

    Parameters
    ----------
    path : Path
        A vector or a Derive case.

    Returns
    -------
    CaseOutcome
        Outcome; an error inside a case becomes a failed outcome whose detail is the message.

    Raises
    ------
    InvalidInput
        When the file is not a JSON object at all (bad input, not a failed case).
    """
    from pmargin.conformance.derive import is_derive_case, run_derive_case

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(str(path), f"byte {exc.start}", "is not UTF-8 text (not a conformance "
                           "case file)") from None
    try:
        case = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(str(path), f"line {exc.lineno}", f"is not JSON ({exc.msg}): not a "
                           "conformance case file") from None
    if not isinstance(case, dict):
        raise InvalidInput(str(path), type(case).__name__, "must hold a JSON object (a case)")
    try:
        if is_derive_case(case):
            return run_derive_case(path)
        return run_vector(case, path.stem)
    except (InvalidInput, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return CaseOutcome(path.stem, False, "?", math.nan, math.nan, math.nan, math.nan,
                           f"error: {exc}")


def run_paths(paths: Iterable[str | Path]) -> list[CaseOutcome]:
    """Run every case under ``paths`` (files or directories)."""
    return [run_case_file(p) for p in expand_paths(paths)]
