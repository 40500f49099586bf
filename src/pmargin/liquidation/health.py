"""Health classification of accounts (the rule lives in :mod:`pmargin.models.health`).

Re-exported here so liquidation code reads ``pmargin.liquidation.health``; there is no second
rule.
"""

from __future__ import annotations

from pmargin.models.health import HEALTH_NAMES, HealthState, classify, classify_one

__all__ = ["HEALTH_NAMES", "HealthState", "classify", "classify_one"]
