"""The package's one Numba switch: decided once, at first import, and asked by every kernel.

Numba is used when it imports and the environment variable ``PMARGIN_DISABLE_NUMBA`` is not
``"1"``. Every compiled path (:mod:`pmargin.pricing.kernels`, :mod:`pmargin.models._pm_kernels`)
reads :data:`NUMBA_ENABLED` from here and nowhere else decides, so one process never mixes the
compiled and the NumPy reference paths. When numba is missing (the core install without the
``fast`` extra) one :class:`pmargin.errors.PerformanceWarning` is emitted here; disabling it
with the environment variable is silent.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import Any

from pmargin.errors import PerformanceWarning

__all__ = ["DISABLE_ENV_VAR", "NUMBA_ENABLED", "REASON", "numba"]

DISABLE_ENV_VAR = "PMARGIN_DISABLE_NUMBA"
"""Set to ``"1"`` to use the NumPy reference paths even when numba is installed."""


def _decide() -> tuple[ModuleType | None, str]:
    """Return the numba module (or None) and the reason for the choice."""
    if os.environ.get(DISABLE_ENV_VAR) == "1":
        return None, f"disabled by {DISABLE_ENV_VAR}=1"
    try:
        import numba as nb
    except ImportError:
        return None, "numba is not installed"
    return nb, "enabled"


_module, REASON = _decide()
numba: Any = _module
"""The imported numba module when enabled, else None."""
NUMBA_ENABLED: bool = _module is not None
"""True when the compiled Numba kernels are used."""

if _module is None and REASON == "numba is not installed":
    warnings.warn(
        "numba is not installed: pmargin uses the NumPy reference kernels (same results, "
        "slower; install the 'fast' extra for the compiled path)",
        PerformanceWarning,
        stacklevel=2,
    )
