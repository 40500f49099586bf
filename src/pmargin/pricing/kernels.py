"""Black-76 kernel selector: the Numba twin when available, else the NumPy reference.

``from pmargin.pricing import kernels`` and call ``kernels.price(...)`` etc. The functions have the
signatures, units and broadcasting rules of :mod:`pmargin.pricing.black76`:

* when the package's Numba switch (:mod:`pmargin._numba`) is on, they come from
  :mod:`pmargin.pricing._black76_numba` and :data:`NUMBA_ENABLED` is True;
* otherwise (``PMARGIN_DISABLE_NUMBA=1``, silently, or numba missing, with one
  :class:`pmargin.errors.PerformanceWarning` from the switch) they come from
  :mod:`pmargin.pricing.black76`.

The choice is the switch's, made once per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pmargin._numba import NUMBA_ENABLED

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
