"""The package's one Numba switch: decided once, on first use, and asked by every kernel.

Numba is used when it imports and the environment variable ``PMARGIN_DISABLE_NUMBA`` is not
``"1"``. Every compiled path (:mod:`pmargin.pricing.kernels`, :mod:`pmargin.models._pm_kernels`)
reads :data:`NUMBA_ENABLED` (and the :data:`numba` module) from here and nowhere else decides, so
one process never mixes the compiled and the NumPy reference paths.

The decision is taken the first time :data:`NUMBA_ENABLED`, :data:`numba` or :data:`REASON` is
read, not when this module is imported: a caller may import :data:`DISABLE_ENV_VAR` and set the
variable before any kernel module asks (the CLI does so for single-account commands). When numba
is missing (the core install without the ``fast`` extra) one
:class:`pmargin.errors.PerformanceWarning` is emitted at the decision; disabling it with the
environment variable is silent.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from pmargin.errors import PerformanceWarning

__all__ = ["DISABLE_ENV_VAR", "NUMBA_ENABLED", "REASON", "numba"]

DISABLE_ENV_VAR = "PMARGIN_DISABLE_NUMBA"
"""Set to ``"1"`` to use the NumPy reference paths even when numba is installed."""

NUMBA_ENABLED: bool
"""True when the compiled Numba kernels are used (decided on first read)."""
numba: Any
"""The imported numba module when enabled, else None (decided on first read)."""
REASON: str
"""Why: ``"enabled"``, ``"disabled by PMARGIN_DISABLE_NUMBA=1"`` or ``"numba is not installed"``."""

_DECIDED = ("NUMBA_ENABLED", "numba", "REASON")


def _decide() -> dict[str, Any]:
    """Take the decision from the environment and the numba import."""
    if os.environ.get(DISABLE_ENV_VAR) == "1":
        return {"NUMBA_ENABLED": False, "numba": None, "REASON": f"disabled by {DISABLE_ENV_VAR}=1"}
    try:
        import numba as nb
    except ImportError:
        warnings.warn(
            "numba is not installed: pmargin uses the NumPy reference kernels (same results, "
            "slower; install the 'fast' extra for the compiled path)",
            PerformanceWarning,
            stacklevel=3,
        )
        return {"NUMBA_ENABLED": False, "numba": None, "REASON": "numba is not installed"}
    return {"NUMBA_ENABLED": True, "numba": nb, "REASON": "enabled"}


def __getattr__(name: str) -> Any:
    if name not in _DECIDED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals().update(_decide())  # once: later reads find the module attributes
    return globals()[name]
