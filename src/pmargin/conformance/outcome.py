"""Outcome of one conformance case, shared by every conformance runner."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CaseOutcome"]


@dataclass(frozen=True)
class CaseOutcome:
    """Result of running one conformance case.

    Attributes
    ----------
    name : str
        Case name (usually the file stem).
    passed : bool
        Whether every checked figure matched within the case's tolerance.
    model : str
        Model or preset that produced the figures (``"derive-pm2"``, ``"deribit-pm"`` ...).
    initial_margin, maintenance_margin : float
        Computed figures, in the convention of the case format (NaN when the case errored).
    expected_im, expected_mm : float
        Expected figures read from the case.
    detail : str
        ``"ok"``, or a human-readable list of the mismatching figures or the error message.
    """

    name: str
    passed: bool
    model: str
    initial_margin: float
    maintenance_margin: float
    expected_im: float
    expected_mm: float
    detail: str
