"""Black-76 kernel selector: the Numba twin when available, else the NumPy reference.

``from pmargin.pricing import kernels`` and call ``kernels.price(...)`` etc. The functions have the
signatures, units and broadcasting rules of :mod:`pmargin.pricing.black76`:

* when numba imports and the environment variable ``PMARGIN_DISABLE_NUMBA`` is not ``"1"``, they
  come from :mod:`pmargin.pricing._black76_numba` and :data:`NUMBA_ENABLED` is True;
* when ``PMARGIN_DISABLE_NUMBA=1`` they come from :mod:`pmargin.pricing.black76` silently;
* when numba cannot be imported they come from :mod:`pmargin.pricing.black76` and one
  :class:`pmargin.errors.PerformanceWarning` is emitted at import.

The choice is made once, at first import.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

from pmargin.errors import PerformanceWarning

__all__ = [
    "NUMBA_ENABLED",
    "delta",
    "gamma",
    "greeks",
    "inverse_delta",
    "inverse_price",
    "price",
    "rho",
    "theta",
    "vega",
]

DISABLE_ENV_VAR = "PMARGIN_DISABLE_NUMBA"


def _select() -> tuple[bool, bool]:
    """Return ``(use_numba, numba_missing)`` from the environment and the numba import."""
    if os.environ.get(DISABLE_ENV_VAR) == "1":
        return False, False
    try:
        import pmargin.pricing._black76_numba  # noqa: F401
    except ImportError:
        return False, True
    return True, False


NUMBA_ENABLED: bool
_NUMBA_ENABLED, _NUMBA_MISSING = _select()
NUMBA_ENABLED = _NUMBA_ENABLED
"""True when the kernels below are the compiled Numba twins."""

if TYPE_CHECKING:
    from pmargin.pricing.black76 import (
        delta,
        gamma,
        greeks,
        inverse_delta,
        inverse_price,
        price,
        rho,
        theta,
        vega,
    )
elif NUMBA_ENABLED:
    from pmargin.pricing._black76_numba import (
        delta,
        gamma,
        greeks,
        inverse_delta,
        inverse_price,
        price,
        rho,
        theta,
        vega,
    )
else:
    from pmargin.pricing.black76 import (
        delta,
        gamma,
        greeks,
        inverse_delta,
        inverse_price,
        price,
        rho,
        theta,
        vega,
    )

if _NUMBA_MISSING:
    warnings.warn(
        "numba is not installed: pmargin.pricing.kernels uses the NumPy reference Black-76 "
        "kernel (install the 'fast' extra for the compiled path)",
        PerformanceWarning,
        stacklevel=2,
    )
